"""The LMDB environment's own guarantees: map growth, nested jobs, schema version."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsnode.node.ids import Level
from pacsnode.node.index.environment import Environment, Txn


def test_map_grows_instead_of_failing(tmp_path: Path) -> None:
    index = Environment(tmp_path / "index", map_size=256 * 1024)
    before = index.env.info()["map_size"]
    for batch in range(20):
        index.write(
            lambda txn, b=batch: [txn.set_global(f"key-{b}-{n}", "x" * 200) for n in range(100)]
        )
    assert index.env.info()["map_size"] > before
    assert index.read(lambda txn: txn.get_global("key-19-99")) == "x" * 200
    index.close()


def test_a_failing_job_is_rolled_back_alone(tmp_path: Path) -> None:
    index = Environment(tmp_path / "index")

    def good(txn: Txn) -> str:
        txn.set_global("good", "1")
        return "ok"

    def bad(txn: Txn) -> None:
        txn.set_global("bad", "1")
        raise ValueError("refused")

    outcomes = index.write_batch([good, bad, good])
    assert [ok for ok, _ in outcomes] == [True, False, True]
    assert isinstance(outcomes[1][1], ValueError)
    assert index.read(lambda txn: (txn.get_global("good"), txn.get_global("bad"))) == ("1", None)
    index.close()


def test_unknown_schema_is_refused(tmp_path: Path) -> None:
    index = Environment(tmp_path / "index")
    index.write(lambda txn: txn.set_global("schema_version", "99"))
    index.close()
    with pytest.raises(RuntimeError, match="schema 99"):
        Environment(tmp_path / "index")


def test_lookups_scan_ranges_and_prefixes(tmp_path: Path) -> None:
    index = Environment(tmp_path / "index")

    def fill(txn: Txn) -> None:
        for day, rid in (("20260101", "a"), ("20260115", "b"), ("20260201", "c")):
            txn.add_lookup(Level.STUDY, "StudyDate", day, rid)

    index.write(fill)
    in_january = index.read(
        lambda txn: list(txn.lookup_scan(Level.STUDY, "StudyDate", "20260101", "20260131"))
    )
    assert [rid for _, rid in in_january] == ["a", "b"]
    prefixed = index.read(
        lambda txn: list(txn.lookup_scan(Level.STUDY, "StudyDate", "202602", prefix=True))
    )
    assert [rid for _, rid in prefixed] == ["c"]
    index.close()
