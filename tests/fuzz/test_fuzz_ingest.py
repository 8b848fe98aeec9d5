"""Mutated DICOM files and ZIPs fed to the one ingest path: each is stored or refused with a
domain error (a DIMSE/HTTP status and a message), never a crash; a refused file stores
nothing, and what was stored before stays readable.

Hypothesis drives the mutations (bit flips, truncations, insertions, deletions, byte
overwrites) of real files: pydicom's CT, a JPEG multi-frame, an RLE image, and a ZIP of two.
The run is derandomized so CI sees the same cases every time; set ``PACSNODE_FUZZ_EXAMPLES``
(and ``PACSNODE_FUZZ_RANDOM=1``) for a longer, fresh search by hand.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import DomainError
from pacsnode.node.index import Origin, OriginKind
from pacsnode.node.settings import CoreSettings
from pacsnode.node.uploads import ingest_zip
from tests.node.dicomweb.conftest import corpus_path

_EXAMPLES = int(os.environ.get("PACSNODE_FUZZ_EXAMPLES", "150"))
_SETTINGS = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("PACSNODE_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
_SEEDS = ("CT_small.dcm", "examples_ybr_color.dcm", "SC_rgb_rle_2frame.dcm")


def _seed_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("MR_small.dcm", "CT_small.dcm"):
            archive.writestr(name, corpus_path(name).read_bytes())
    return buffer.getvalue()


@st.composite
def mutated(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
    return bytes(data)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> NodeCore:
    node = NodeCore(CoreSettings(data_dir=tmp_path_factory.mktemp("fuzz") / "data"))
    node.open(background=False)
    baseline = corpus_path("MR_small.dcm").read_bytes()  # stored before any mutant
    node.ingest(baseline, Origin())
    yield node
    node.close()


def _stored_uids(core: NodeCore) -> set[str]:
    return {ref.sop_uid for ref in core.instances_of(core.list_ids(_level("Instance")))}


def _level(name: str):
    from pacsnode.node.ids import Level

    return Level(name)


def _still_readable(core: NodeCore) -> None:
    for ref in core.instances_of(core.list_ids(_level("Instance"))):
        assert core.instance_p10(ref)[128:132] == b"DICM"


@given(data=mutated(tuple(corpus_path(name).read_bytes() for name in _SEEDS)))
@_SETTINGS
def test_a_mutated_file_is_stored_or_refused_cleanly(core: NodeCore, data: bytes) -> None:
    before = _stored_uids(core)
    try:
        result = core.ingest(data, Origin())
    except DomainError as exc:
        assert exc.message and 400 <= exc.http_status < 600 and exc.code
        assert _stored_uids(core) == before, "a refused file stored something"
    else:
        assert result.instance.sop_uid in _stored_uids(core)
    _still_readable(core)


@given(data=mutated((_seed_zip(),)))
@_SETTINGS
def test_a_mutated_zip_is_unpacked_or_refused_cleanly(core: NodeCore, data: bytes) -> None:
    try:
        outcomes = list(ingest_zip(core, io.BytesIO(data), Origin()))
    except DomainError as exc:
        assert exc.message and exc.code
        return
    for outcome in outcomes:
        assert (outcome.result is None) != (outcome.error is None)
        if outcome.error is not None:
            assert outcome.error.message and outcome.error.code
    _still_readable(core)


def test_the_seeds_themselves_are_stored(tmp_path: Path) -> None:
    """The mutations start from files the node takes (else the fuzz tests prove little)."""
    with NodeCore(CoreSettings(data_dir=tmp_path / "data")) as node:
        for name in _SEEDS:
            node.ingest(corpus_path(name).read_bytes(), Origin())
        assert len(node.list_ids(_level("Instance"))) == len(_SEEDS)


def _study_zip() -> bytes:
    """A peer's study ZIP as a node writes it (one CT instance)."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        with NodeCore(CoreSettings(data_dir=Path(directory) / "data")) as source:
            result = source.ingest(corpus_path("CT_small.dcm").read_bytes(), Origin())
            buffer = io.BytesIO()
            source.write_study_zip(result.instance.study_uid, None, buffer)
            return buffer.getvalue()


@given(data=mutated((_study_zip(),)))
@_SETTINGS
def test_a_mutated_peer_study_zip_is_merged_or_refused_whole(
    core: NodeCore, data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = _stored_uids(core)
    received = tmp_path_factory.mktemp("received") / "study.zip"
    received.write_bytes(data)
    try:
        core.merge_study_zip(received, Origin(kind=OriginKind.PEER, peer="fuzzer"))
    except DomainError as exc:
        assert exc.message and exc.code
        assert _stored_uids(core) == before, "a refused study ZIP stored something"
    _still_readable(core)
