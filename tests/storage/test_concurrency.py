"""Concurrent writers, sealers and readers on one study; file-descriptor limits."""

from __future__ import annotations

import resource
import threading
import time
import zipfile
from pathlib import Path

import pytest

from pacsnode.storage.layout import study_zip_path
from pacsnode.storage.store import StudyStore
from tests.storage.helpers import ct_bytes, ct_instance

STUDY = ct_instance(0).StudyInstanceUID


def test_readers_never_miss_acknowledged_instances_while_sealing(store: StudyStore) -> None:
    acked: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def writer(offset: int) -> None:
        for index in range(offset, offset + 40):
            instance = store.put_instance(ct_bytes(index, size=32)).instance
            with lock:
                acked.append((instance.series_uid, instance.sop_uid))

    def sealer() -> None:
        while not stop.is_set():
            store.seal(STUDY)

    def reader() -> None:
        while not stop.is_set():
            with lock:
                known = list(acked)
            if not known:
                continue
            try:
                inventory = store.inventory(STUDY)
                missing = [sop for _, sop in known if sop not in inventory]
                assert not missing, f"inventory missed {missing[:3]}"
                series, sop = known[-1]
                assert store.instance_p10(STUDY, series, sop)
                assert store.frames(STUDY, series, sop)
            except BaseException as exc:  # reported below, with the first one
                errors.append(exc)
                return

    threads = [threading.Thread(target=writer, args=(n * 1000,)) for n in range(2)]
    helpers = [
        threading.Thread(target=sealer),
        threading.Thread(target=reader),
        threading.Thread(target=reader),
    ]
    for thread in threads + helpers:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.2)
    stop.set()
    for thread in helpers:
        thread.join()
    assert not errors, errors[0]
    store.seal(STUDY)
    with zipfile.ZipFile(study_zip_path(store.root, STUDY)) as archive:
        assert archive.testzip() is None
    assert set(store.inventory(STUDY)) == {sop for _, sop in acked}


def test_sealing_more_staged_files_than_the_descriptor_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(list(Path("/proc/self/fd").iterdir()))
    limit = in_use + 100
    if limit > soft:
        pytest.skip("the descriptor limit is already lower than this test needs")
    with StudyStore(tmp_path / "data") as store:
        for index in range(150):
            store.put_instance(ct_bytes(index, size=8))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        try:
            assert len(store.instances(STUDY)) == 150
            assert store.seal(STUDY)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert len(store.inventory(STUDY)) == 150
