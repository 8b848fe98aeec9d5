"""A seal that fails (its storage backend is down) is retried every round and said once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pacsnode.storage.backends.base import Filler
from pacsnode.storage.backends.local import LocalBackend
from pacsnode.storage.errors import BackendUnavailable
from pacsnode.storage.store import StudyStore
from tests.storage.helpers import ct_bytes


class SwitchedBackend(LocalBackend):
    """The local backend, with puts refused while ``down``."""

    down = False

    def put(self, study_uid: str, fill: Filler) -> None:
        if self.down:
            raise BackendUnavailable("the bucket does not answer")
        super().put(study_uid, fill)


def test_a_failing_seal_is_said_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = SwitchedBackend(tmp_path)
    with StudyStore(tmp_path, stable_age_s=0, backend=backend) as store:
        study_uid = store.put_instance(ct_bytes(0)).instance.study_uid
        backend.down = True
        with caplog.at_level(logging.INFO, logger="pacsnode.storage.store"):
            for _ in range(5):
                assert store.seal_quiet() == []
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1
            assert "the bucket does not answer" in errors[0].getMessage()
            assert store.pending_studies() == [study_uid]
            backend.down = False
            assert store.seal_quiet() == [study_uid]
        assert any("sealed after all" in r.getMessage() for r in caplog.records)
        assert store.pending_studies() == []
        assert len(store.instances(study_uid)) == 1
