"""Crash safety: SIGKILL a child that stores and seals, many times; recover; check."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest

from pacsnode.storage.layout import study_zip_path
from pacsnode.storage.store import StudyStore
from tests.crash import run_and_kill

ROUNDS = 30


def acknowledged(log: Path) -> dict[str, tuple[str, str, str]]:
    """SOP UID -> (study, series, digest) of every instance that must still exist."""
    alive: dict[str, tuple[str, str, str]] = {}
    for line in log.read_text().splitlines():
        words = line.split()
        if words and words[0] == "stored":
            alive[words[3]] = (words[1], words[2], words[4])
        elif words and words[0] == "deleting":
            alive.pop(words[1], None)
    return alive


@pytest.mark.e2e
def test_sigkill_during_store_and_seal_loses_no_acknowledged_instance(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "acks.log"
    rng = random.Random(1234)
    cut_conversions = 0
    for round_number in range(ROUNDS):
        log.write_text("")  # the previous rounds' acks are kept in `history`
        run_and_kill(
            "tests.storage.crash_worker", data_dir, log, round_number, rng.uniform(0.0, 0.6)
        )
        with (tmp_path / "history.log").open("a") as history:
            history.write(log.read_text())
        store = StudyStore(data_dir)
        report = store.open()
        try:
            # received files the kill left unconverted, or whose conversion it cut short
            cut_conversions += report.received + report.removed_converted
            check_everything_is_there(store, acknowledged(tmp_path / "history.log"))
            for study in store.study_uids():
                store.inventory(study)  # reading a study converts what it received
            assert store.received_instances() == [], "reading left files unconverted"
        finally:
            store.close()
        assert not [p for p in data_dir.rglob("*.tmp")], "recovery left temp files"
    assert cut_conversions, "no kill landed before a conversion: the test tests too little"


def check_everything_is_there(store: StudyStore, alive: dict[str, tuple[str, str, str]]) -> None:
    for study in store.study_uids():
        zip_path = study_zip_path(store.root, study)
        if zip_path.exists():
            with zipfile.ZipFile(zip_path) as archive:
                assert archive.testzip() is None
    inventories: dict[str, dict[str, str]] = {}
    for sop_uid, (study, _series, digest) in alive.items():
        if study not in inventories:
            inventories[study] = store.inventory(study)
        assert inventories[study].get(sop_uid) == digest, f"lost {sop_uid}"
    for sop_uid, (study, series, _) in list(alive.items())[-5:]:
        assert store.instance_p10(study, series, sop_uid)
