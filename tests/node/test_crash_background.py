"""SIGKILL of a real ``pacsnode serve`` while its background work and deletions run.

Each round starts the node on the same data directory and drives it over REST from
threads in this process: senders store small CT instances (the storage limit is low,
so nearly every store first recycles the patient updated longest ago), a deleter
deletes instances, series, studies and patients it was told about, a third thread
asks for archives and DICOM media as jobs, and the sealer seals studies quiet for a
fraction of a second. The node is killed at a random instant, then the data
directory is opened here (start-up recovery, as ``serve`` runs it) and checked:

- ``verify`` finds nothing (every study ZIP reads, index and ZIPs agree), also after
  every pending study has been sealed (recovery leaves nothing a seal chokes on);
- every acknowledged instance is there with the very bytes sent, unless a deletion
  asked after it was stored, recycling or a reconciliation of an interrupted
  deletion removed it (the feed names those); a protected patient's are all there;
- a deletion answered 200 stayed done (nothing came back at recovery);
- no temporary file is left, and the next ``serve`` leaves no half-written archive.

``PACSNODE_CRASH_ROUNDS`` raises the number of rounds for a longer run by hand.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.node.core import NodeCore
from pacsnode.node.settings import CoreSettings
from pacsnode.node.verify import verify
from pacsnode.storage.layout import TEMP_SUFFIX
from tests.node.server import REPO, NodeProcess

pytestmark = pytest.mark.e2e  # real node processes, killed

ROUNDS = int(os.environ.get("PACSNODE_CRASH_ROUNDS", "6"))
STORAGE_MB = 1
STABLE_AGE_S = 0.3
PROTECTED = 99  # the protected patient: never recycled, never deleted by the driver
PATIENTS = 6  # the others, recycled in turn
LEVELS = ("instances", "series", "studies", "patients")


def instance_bytes(key: tuple[int, int, int, int, int]) -> bytes:
    patient, study, series, index, size = key
    return p10(make_instance(SeriesSpec(patient, study, series, 1000, size), index))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Ack:
    key: tuple[int, int, int, int, int]
    ids: tuple[str, str, str, str]  # instance, series, study, patient
    sha256: str  # of the file sent: the node gives back the very bytes
    sent_at: float
    acked_at: float

    @classmethod
    def of(
        cls, key: tuple[int, int, int, int, int], data: bytes, answer: dict, sent_at: float
    ) -> Ack:
        ids = (answer["ID"], answer["ParentSeries"], answer["ParentStudy"], answer["ParentPatient"])
        return cls(key, ids, digest(data), sent_at, time.monotonic())


@dataclass
class Deletion:
    resource_id: str
    sent_at: float
    answered: int | None = None
    answered_at: float = float("inf")


@dataclass
class Driver:
    """REST traffic against one node process until it is killed."""

    node: NodeProcess
    round_number: int
    acked: dict[str, Ack]
    deletions: list[Deletion]
    protected_id: str
    killed: threading.Event = field(default_factory=threading.Event)
    problems: list[str] = field(default_factory=list)
    jobs: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)

    def request(self, method: str, path: str, body: object = None) -> tuple[int, object] | None:
        """The answer's status and JSON, or None once the node is gone."""
        try:
            answer = self.node.request(method, path, body)  # type: ignore[arg-type]
        except OSError:
            if not self.killed.is_set():
                self.problems.append(f"{method} {path}: the node stopped answering before the kill")
            return None
        if answer.status >= 500 and not self.killed.is_set():
            self.problems.append(f"{method} {path}: {answer.status} {answer.body[:300]!r}")
        try:
            return answer.status, answer.json()
        except ValueError:
            return answer.status, None

    def send(self, thread: int) -> None:
        rng = random.Random(self.round_number * 100 + thread)
        studies = 0
        while not self.killed.is_set():
            studies += 1
            protected = rng.random() < 0.1
            patient = PROTECTED if protected else 1 + rng.randrange(PATIENTS)
            study = self.round_number * 1000 + thread * 100 + studies
            for index in range(rng.randrange(2, 9)):
                key = (patient, study, 1 + index % 2, index, 32 if protected else 128)
                data, sent_at = instance_bytes(key), time.monotonic()
                answer = self.request("POST", "/instances", data)
                if answer is None:
                    return
                status, body = answer
                if status == 200 and isinstance(body, dict):
                    with self.guard:
                        self.acked[body["ID"]] = Ack.of(key, data, body, sent_at)
                elif not self.killed.is_set():
                    self.problems.append(f"store refused: {status} {body}")

    def delete(self) -> None:
        rng = random.Random(self.round_number)
        while not self.killed.wait(rng.uniform(0.02, 0.1)):
            with self.guard:
                choices = [a for a in self.acked.values() if a.key[0] != PROTECTED]
            if not choices:
                continue
            ack = rng.choice(choices)
            level = rng.choices(range(4), weights=(5, 3, 3, 1))[0]
            deletion = Deletion(ack.ids[level], time.monotonic())
            with self.guard:
                self.deletions.append(deletion)
            answer = self.request("DELETE", f"/{LEVELS[level]}/{deletion.resource_id}")
            if answer is None:
                return
            deletion.answered, deletion.answered_at = answer[0], time.monotonic()

    def make_jobs(self) -> None:
        rng = random.Random(self.round_number + 7)
        while not self.killed.wait(rng.uniform(0.05, 0.2)):
            with self.guard:
                studies = list({a.ids[2] for a in self.acked.values()})
            if not studies:
                continue
            chosen = rng.sample(studies, min(len(studies), 3))
            if rng.random() < 0.5:
                path, body = "/tools/create-archive", {"Resources": chosen, "Synchronous": False}
            else:
                path, body = f"/studies/{chosen[0]}/media", {"Synchronous": False}
            answer = self.request("POST", path, body)
            if answer is None:
                return
            self.jobs += answer[0] == 200

    def run_and_kill(self, delay: float) -> None:
        work = [(self.send, (0,)), (self.send, (1,)), (self.delete, ()), (self.make_jobs, ())]
        threads = [threading.Thread(target=t, args=a, daemon=True) for t, a in work]
        for thread in threads:
            thread.start()
        time.sleep(delay)
        self.killed.set()
        assert self.node.process is not None
        self.node.process.kill()
        self.node.process.wait()
        for thread in threads:
            thread.join(timeout=30)


def asked_to_delete(ack: Ack, deletions: list[Deletion]) -> bool:
    """Whether a deletion of the instance (or of a parent) may have run after it was
    stored: answered (but not 404) after the instance was sent, or never answered."""
    return any(
        d.resource_id in ack.ids and d.answered != 404 and d.answered_at > ack.sent_at
        for d in deletions
    )


def deleted_after(ack: Ack, deletions: list[Deletion]) -> bool:
    """Whether a deletion of the instance (or a parent) sent after it was acknowledged
    was answered 200."""
    return any(
        d.resource_id in ack.ids and d.answered == 200 and d.sent_at > ack.acked_at
        for d in deletions
    )


@dataclass
class Feed:
    """What the node's change feed says it removed on its own, by resource id."""

    added: dict[str, int]  # instance id -> Seq of its (last) NewInstance
    removed: dict[str, list[tuple[int, str]]]  # id -> (Seq, Reason) of its Deleted changes

    @classmethod
    def of(cls, core: NodeCore) -> Feed:
        added: dict[str, int] = {}
        removed: dict[str, list[tuple[int, str]]] = {}
        for change in core.changes(0, 1_000_000).changes:
            if change["ChangeType"] == "NewInstance":
                added[change["ID"]] = change["Seq"]
            elif change["ChangeType"] == "Deleted":
                removed.setdefault(change["ID"], []).append((change["Seq"], change["Reason"]))
        return cls(added, removed)

    def removed_after(self, ack: Ack, reason: str, since: int = 0) -> bool:
        """Whether the node logged removing the instance (or a parent) for ``reason``
        after it was indexed (ids come back with their UIDs: a patient recycled before
        this instance came excuses nothing)."""
        indexed = max(self.added.get(ack.ids[0], 0), since)
        return any(
            seq > indexed and why == reason
            for resource_id in ack.ids
            for seq, why in self.removed.get(resource_id, [])
        )


def check_after_crash(
    data_dir: Path,
    acked: dict[str, Ack],
    gone: set[str],
    deletions: list[Deletion],
    round_start: int,
) -> int:
    """Recover the data directory and check it (see the module docstring). Acknowledged
    instances found gone (and excused) move from ``acked`` to ``gone``, where they must
    stay. Answers the feed's last Seq."""
    settings = CoreSettings(data_dir, stable_age_s=STABLE_AGE_S, maximum_storage_size_mb=STORAGE_MB)
    core = NodeCore(settings)
    core.open(background=False)  # start-up recovery, as `pacsnode serve` runs it
    try:
        assert verify(core) == []
        feed = Feed.of(core)
        reconciled_patients: set[int] = set()
        for instance_id, ack in list(acked.items()):
            if core.exists(instance_id):
                ref = core.instance_ref(instance_id)
                assert digest(core.instance_p10(ref)) == ack.sha256, f"{ack.key} changed"
                assert not deleted_after(ack, deletions), f"deleted {ack.key} came back"
                continue
            assert ack.key[0] != PROTECTED, f"protected instance {ack.key} lost"
            del acked[instance_id]
            gone.add(instance_id)
            if asked_to_delete(ack, deletions) or feed.removed_after(ack, "Recycled"):
                continue
            # Storage deleted it, the index did not hear of it: only a deletion cut off by
            # the kill does that, and the one in flight besides the driver's is recycling's
            # (one patient at a time: deciding what to recycle is serialised).
            assert feed.removed_after(ack, "Reconcile", round_start), (
                f"acknowledged {ack.key} lost",
                {i: (feed.added.get(i), feed.removed.get(i)) for i in ack.ids},
                [d for d in deletions if d.resource_id in ack.ids],
            )
            reconciled_patients.add(ack.key[0])
        assert acked, "nothing acknowledged survived: the check checks nothing"
        assert len(reconciled_patients) <= 1, reconciled_patients
        # Ids derive from UIDs, and each instance was sent once: one gone stays gone.
        # (A study deleted while its sender went on is there again, with later instances.)
        assert [i for i in gone if core.exists(i)] == [], "a removed instance came back"
        core.seal_quiet_studies(now=time.monotonic() + 3600)
        assert core.pending_studies() == set()
        assert verify(core) == []
        last = core.last_change()
    finally:
        core.close()
    leftovers = [p for p in data_dir.rglob(f"*{TEMP_SUFFIX}")]
    assert leftovers == [], "recovery left temp files"
    return last


def no_half_archives(data_dir: Path) -> None:
    archives = data_dir / "archives"
    if archives.is_dir():
        assert [p.name for p in archives.iterdir() if not p.name.endswith(".zip")] == []


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(
        tmp_path,
        extra_toml=(
            f"[storage]\nstable_age_s = {STABLE_AGE_S}\nmaximum_storage_size_mb = {STORAGE_MB}\n"
        ),
    )
    yield process
    process.stop()  # one a failed check left running


def test_sigkill_during_recycling_sealing_jobs_and_deletions(
    tmp_path: Path, node: NodeProcess
) -> None:
    data_dir = tmp_path / "data"
    acked: dict[str, Ack] = {}
    gone: set[str] = set()
    deletions: list[Deletion] = []
    rng = random.Random(2026)
    recycled = jobs = last_seq = 0
    for round_number in range(1, ROUNDS + 1):
        node.start()
        no_half_archives(data_dir)
        # the protected patient: its instances must all survive every crash
        first = (PROTECTED, round_number * 1000, 1, 999, 32)
        stored = node.request("POST", "/instances", instance_bytes(first)).json()
        acked[stored["ID"]] = Ack.of(first, instance_bytes(first), stored, 0.0)
        assert node.request("PUT", f"/patients/{stored['ParentPatient']}/protected", "1").status
        driver = Driver(node, round_number, acked, deletions, stored["ParentPatient"])
        driver.run_and_kill(rng.uniform(0.3, 1.5))
        assert driver.problems == []
        jobs += driver.jobs
        last_seq = check_after_crash(data_dir, acked, gone, deletions, last_seq)
    with NodeCore(CoreSettings(data_dir)) as core:
        recycled = sum(
            1
            for c in core.changes(0, 1_000_000).changes
            if c["ChangeType"] == "Deleted" and c.get("Reason") == "Recycled"
        )
    assert recycled and jobs, (recycled, jobs)  # the background work did run
    # The CLI's verdict on the final state, then the instances as a client reads them.
    verified = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "--config", str(node.config), "verify"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    node.start()
    no_half_archives(data_dir)
    protected = [a for a in acked.values() if a.key[0] == PROTECTED]
    for ack in protected:
        answer = node.request("GET", f"/instances/{ack.ids[0]}/file")
        assert answer.status == 200 and digest(answer.body) == ack.sha256
    assert node.request("GET", f"/patients/{protected[0].ids[3]}/protected").body == b"1"
