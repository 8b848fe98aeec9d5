from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsnode.storage.store import StudyStore
from tests.plugins.example_package import (  # for every suite's plugin contracts
    example_plugins,  # noqa: F401
    example_plugins_importable,  # noqa: F401
)
from tests.s3_server import BUCKET, SeaweedFS


@pytest.fixture(autouse=True)
def _quiet_pydicom() -> Iterator[None]:
    # pydicom warns about every odd value in its own test corpus; the tests check outcomes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StudyStore]:
    study_store = StudyStore(tmp_path / "data")
    study_store.open()
    yield study_store
    study_store.close()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One real S3 server (SeaweedFS) for the session, started when a test first asks,
    with the bucket :data:`tests.s3_server.BUCKET`; tests take a prefix each."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()
