"""The pure parts of a sync pass: what to send, how cursors move, what is queued."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from pacsnode.peer.cursors import Direction, cursor_name
from pacsnode.peer.errors import PeerError, PeerRefused, PeerUnreachable, UntrustedPeer
from pacsnode.peer.interface import (
    ChangeBatch,
    Deletion,
    DeletionBatch,
    MergeSummary,
    StudyChange,
)
from pacsnode.peer.sync import (
    SyncResult,
    follow_feed,
    plan_missing,
    push_deletions,
    queued_studies,
    sync_once,
)


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


def test_cursor_names_are_the_ones_stored_on_disk() -> None:
    names = {direction: cursor_name("siteb", direction) for direction in Direction}
    assert names == {
        Direction.PUSH: "siteb:push",
        Direction.PULL: "siteb:pull",
        Direction.PUSH_DELETIONS: "siteb:push-deletions",
        Direction.PULL_DELETIONS: "siteb:pull-deletions",
    }


class Side(Cursors):
    """One side's studies (Study UID -> SOP UID -> digest) and a study feed over them."""

    def __init__(self, studies: dict[str, dict[str, str]]) -> None:
        super().__init__()
        self.studies = studies

    def study_changes(
        self, since: int, limit: int, query: dict[str, str] | None = None
    ) -> ChangeBatch:
        feed = [StudyChange(seq, uid) for seq, uid in enumerate(sorted(self.studies), 1)]
        page = [change for change in feed if change.seq > since][:limit]
        last = page[-1].seq if page else since
        return ChangeBatch(page, last, last >= len(feed))

    def inventory(self, study_uid: str, named: Collection[str] | None = None) -> dict[str, str]:
        held = self.studies.get(study_uid, {})
        return {uid: held[uid] for uid in (held if named is None else named) if uid in held}

    def annotations(self, study_uid: str) -> dict[str, object]:
        return {}

    def take(self, study_uid: str, instances: dict[str, str]) -> MergeSummary:
        held = self.studies.setdefault(study_uid, {})
        added = sorted(set(instances) - set(held))
        held.update({uid: instances[uid] for uid in added})
        return MergeSummary(study_uid, added, sorted(set(instances) - set(added)))


class FakeReplica(Side):
    """The far end of a pass, in memory: the ReplicaClient calls a pass makes."""

    bytes_sent = bytes_received = 0

    def push_instances(self, node: Side, study_uid: str, sop_uids: set[str]) -> MergeSummary:
        mine = node.inventory(study_uid)
        return self.take(study_uid, {uid: mine[uid] for uid in sop_uids})

    def pull_instances(
        self, node: Side, study_uid: str, sop_uids: set[str], peer_name: str
    ) -> MergeSummary:
        return node.take(study_uid, {uid: self.studies[study_uid][uid] for uid in sop_uids})


def test_a_pass_moves_only_what_each_side_lacks_and_then_nothing() -> None:
    near = Side({"1.1": {"1.1.1": "a", "1.1.2": "b"}, "1.2": {"1.2.1": "c"}})
    far = FakeReplica({"1.1": {"1.1.1": "a"}, "1.3": {"1.3.1": "d"}})
    first = sync_once(near, far, "far", do_push=True, do_pull=True)  # type: ignore[arg-type]
    assert (first.pushed_instances, first.pulled_instances) == (2, 1)
    assert near.studies == far.studies
    assert near.saved["far:push"] == 2 and near.saved["far:pull"] == 3
    again = sync_once(near, far, "far", do_push=True, do_pull=True)  # type: ignore[arg-type]
    assert (again.pushed_instances, again.pulled_instances) == (0, 0)


class DeletingSide(Side):
    """A side whose user deleted one study: its deletion feed has one entry."""

    def deletions(self, since: int, limit: int) -> DeletionBatch:
        feed = [Deletion(1, "study-id", "Study")]
        return DeletionBatch([d for d in feed if d.seq > since][:limit], 1, True)


class RefusingReplica(FakeReplica):
    def __init__(self, refusal: PeerError) -> None:
        super().__init__({})
        self.refusal = refusal

    def send_deletions(self, resource_ids: list[str]) -> int:
        raise self.refusal


def test_a_peer_refusing_our_deletions_leaves_their_cursor_and_the_pass_goes_on() -> None:
    near = DeletingSide({"1.1": {"1.1.1": "a"}})
    far = RefusingReplica(PeerRefused("POST /peer/v1/deletions: 403", 403))
    result = SyncResult()
    push_deletions(near, far, "far", result)  # type: ignore[arg-type]
    assert result.deletions == 0 and "far:push-deletions" not in near.saved


@pytest.mark.parametrize(
    "failure", [UntrustedPeer("presented certificate AB", "AB"), PeerUnreachable("cut")]
)
def test_other_failures_of_sending_deletions_end_the_pass(failure: PeerError) -> None:
    near = DeletingSide({})
    with pytest.raises(type(failure)):
        push_deletions(near, RefusingReplica(failure), "far", SyncResult())  # type: ignore[arg-type]
