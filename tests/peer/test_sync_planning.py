"""The pure parts of a sync pass: what to send, how cursors move, what is queued."""

from __future__ import annotations

import pytest

from pacsnode.peer.sync import follow_feed, plan_missing, queued_studies


def test_plan_missing_sends_only_what_the_other_side_lacks() -> None:
    mine = {"1.1": "a", "1.2": "b", "1.3": "c"}
    theirs = {"1.1": "a", "1.2": "different"}  # a conflict is not resent
    assert plan_missing(mine, theirs) == {"1.3"}
    assert plan_missing({}, theirs) == set()


class Cursors:
    """Only the cursor part of a node (the rest of the interface is not used here)."""

    def __init__(self) -> None:
        self.saved: dict[str, int] = {}
        self.history: list[int] = []

    def load_cursor(self, name: str) -> int:
        return self.saved.get(name, 0)

    def save_cursor(self, name: str, value: int) -> None:
        self.saved[name] = value
        self.history.append(value)


FEED = list(range(1, 8))  # sequence numbers 1..7


def fetch(cursor: int) -> tuple[list[int], int, bool]:
    page = [seq for seq in FEED if seq > cursor][:3]
    last = page[-1] if page else cursor
    return page, last, last >= FEED[-1]


def test_follow_feed_saves_after_each_item_and_resumes() -> None:
    node = Cursors()
    seen: list[int] = []

    def failing_at_five(seq: int) -> int:
        if seq == 5:
            raise ConnectionError("cut")
        seen.append(seq)
        return seq

    with pytest.raises(ConnectionError):
        follow_feed(node, "p:push", fetch, failing_at_five)  # type: ignore[arg-type]
    assert node.saved["p:push"] == 4
    seen.clear()
    follow_feed(node, "p:push", fetch, lambda seq: seen.append(seq) or seq)  # type: ignore[arg-type, func-returns-value]
    assert seen == [5, 6, 7] and node.saved["p:push"] == 7


STUDY_FEED = [(1, "1.1"), (2, "1.2"), (3, "1.1"), (4, "1.3"), (5, "1.1"), (6, "1.2")]


def study_fetch(cursor: int) -> tuple[list[tuple[int, str]], int, bool]:
    page = [change for change in STUDY_FEED if change[0] > cursor][:2]
    last = page[-1][0] if page else cursor
    return page, last, last >= STUDY_FEED[-1][0]


def test_queued_studies_counts_each_study_once_across_pages() -> None:
    assert queued_studies(study_fetch, 0) == {"1.1", "1.2", "1.3"}


def test_queued_studies_starts_after_the_cursor() -> None:
    assert queued_studies(study_fetch, 4) == {"1.1", "1.2"}
    assert queued_studies(study_fetch, 6) == set()
