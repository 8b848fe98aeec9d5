"""The pure recycling decision."""

from __future__ import annotations

from pacsnode.node.recycling import Limits, StorageMode, Usage, choose_victims


def test_nothing_to_do_below_limits() -> None:
    assert choose_victims(Usage(10, 1), 5, True, Limits(100, 5), []) == []


def test_oldest_first_until_it_fits_by_size() -> None:
    candidates = [("old", 30), ("middle", 30), ("new", 30)]
    assert choose_victims(Usage(95, 3), 30, False, Limits(100, 0), candidates) == ["old"]
    assert choose_victims(Usage(95, 3), 60, False, Limits(100, 0), candidates) == ["old", "middle"]


def test_by_patient_count() -> None:
    candidates = [("old", 1), ("new", 1)]
    assert choose_victims(Usage(2, 2), 1, True, Limits(0, 2), candidates) == ["old"]
    assert choose_victims(Usage(2, 2), 1, False, Limits(0, 2), candidates) == []


def test_none_when_candidates_run_out() -> None:
    assert choose_victims(Usage(95, 1), 30, False, Limits(100, 0), []) is None
    assert choose_victims(Usage(0, 0), 300, False, Limits(100, 0), []) is None


def test_reject_mode_never_chooses() -> None:
    limits = Limits(100, 0, StorageMode.REJECT)
    assert choose_victims(Usage(95, 2), 30, False, limits, [("old", 50)]) is None
    assert choose_victims(Usage(50, 2), 30, False, limits, [("old", 50)]) == []


def test_already_over_the_count_recycles_down_to_it() -> None:
    candidates = [("old", 1), ("older", 1), ("new", 1)]
    assert choose_victims(Usage(3, 4), 0, False, Limits(0, 2), candidates) == ["old", "older"]
