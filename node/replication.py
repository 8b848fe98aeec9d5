"""Replication with configured peers: the peering listener, sync jobs and their schedule."""

from __future__ import annotations

import datetime
import functools
import logging
import threading
import time
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from pacsnode.node import audit
from pacsnode.node.core import NodeCore
from pacsnode.node.dates import now_string
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.jobs import Job, JobContext, JobRegistry
from pacsnode.node.peering import NodePeering
from pacsnode.node.registry import Registry
from pacsnode.node.settings import NodeConfig, PeerSettings
from pacsnode.peer.clients import open_replica
from pacsnode.peer.cursors import Direction, cursor_name
from pacsnode.peer.errors import PeerError
from pacsnode.peer.grants import PeerGrant
from pacsnode.peer.identity import Identity, load_or_create
from pacsnode.peer.orthanc import OrthancClient
from pacsnode.peer.replica import ReplicaClient
from pacsnode.peer.retry import with_retries
from pacsnode.peer.schedule import in_window, parse_window, trigger_for
from pacsnode.peer.spool import TransferLimits
from pacsnode.peer.sync import (
    SyncResult,
    queued_studies,
    send_study,
    study_feed,
    sync_once,
)

log = logging.getLogger(__name__)


class PeerUnavailable(DomainError):
    """The peer could not be reached, or refused what we sent it."""

    code = "peer-unavailable"
    http_status = 502


def node_identity(config: NodeConfig) -> Identity:
    return load_or_create(config.data_dir / "identity")


def transfer_limits(config: NodeConfig) -> TransferLimits:
    settings = config.peering
    return TransferLimits(
        max_upload_bytes=settings.max_upload_mb * 1024 * 1024,
        idle_s=float(settings.spool_idle_s),
        per_peer=settings.max_transfers_per_peer,
    )


class Replicator:
    """Sync jobs, their schedule and the pins of the peering listener, for the peers of
    the node's registry (followed as it changes)."""

    def __init__(
        self, core: NodeCore, config: NodeConfig, jobs: JobRegistry, registry: Registry
    ) -> None:
        self._core = core
        self._config = config
        self._jobs = jobs
        self._registry = registry
        self.identity = node_identity(config)
        self.peering = NodePeering(core, transfer_limits(config))
        self._running: dict[str, threading.Lock] = {}
        self._state: dict[str, dict[str, Any]] = {}
        # name -> ((push cursor, last change), queued studies): a GET repeated while
        # nothing changed walks no feed
        self._queued: dict[str, tuple[tuple[int, int], int]] = {}
        self._scheduler: BackgroundScheduler | None = None
        #: what the peering listener accepts; shared with it, so changes apply at once
        self.pins: dict[str, PeerGrant] = {}
        for name in registry.peers():
            self._follow(name)
        registry.watch_peers(self._follow)

    def _follow(self, name: str) -> None:
        """Bring pins, schedule and caches in line with the registry's entry for ``name``."""
        self.pins.pop(name, None)
        self._queued.pop(name, None)  # its filter may have changed
        peer = self._registry.peers().get(name)
        if peer is None:
            if self._scheduler is not None and self._scheduler.get_job(name) is not None:
                self._scheduler.remove_job(name)
            return
        self._running.setdefault(name, threading.Lock())
        self._state.setdefault(name, {})
        if peer.kind == "pacsnode":
            self.pins[name] = PeerGrant(
                peer.fingerprint, peer.push, peer.pull, peer.mirror_deletions, peer.filter
            )
        self._schedule(peer)

    def peer(self, name: str) -> PeerSettings:
        return self._registry.peer(name)

    def names(self) -> list[str]:
        return list(self._registry.peers())

    def describe(self, name: str) -> dict[str, Any]:
        peer = self.peer(name)
        return {
            "Name": peer.name,
            "Url": peer.url,
            # Orthanc's fields for a peer; secrets are never shown
            "Username": peer.username,
            "Password": None,
            "Pkcs11": False,
            "RemoteSelf": peer.remote_self or None,
            "Kind": peer.kind,
            "Fingerprint": peer.fingerprint,
            "Push": peer.push,
            "Pull": peer.pull,
            "IntervalSeconds": peer.interval_s,
            "PushCursor": self.peering.load_cursor(cursor_name(name, Direction.PUSH)),
            "PullCursor": self.peering.load_cursor(cursor_name(name, Direction.PULL)),
            "QueuedStudies": self.queued(peer),
            "LastContact": None,
            **self._state[name],
        }

    def queued(self, peer: PeerSettings) -> int | None:
        """How many studies our next push to the peer will consider; ``None`` when we
        never push to it (pull-only, or passive: it pulls from us on its own cursor)."""
        if peer.url is None or not peer.push:
            return None
        # Read before walking: a change landing during the walk then misses the cache.
        key = (
            self.peering.load_cursor(cursor_name(peer.name, Direction.PUSH)),
            self._core.last_change(),
        )
        cached = self._queued.get(peer.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        count = len(queued_studies(study_feed(self.peering, peer.filter), key[0]))
        self._queued[peer.name] = (key, count)
        return count

    def heard_from(self, name: str) -> None:
        """A peer answered us, or made a request we answered, successfully."""
        state = self._state.get(name)
        if state is not None:
            state["LastContact"] = now_string()

    def store(self, name: str, resource_ids: list[str]) -> Job:
        """Send these resources to a peer now, as a job (Orthanc's POST /peers/{id}/store)."""
        peer = self.peer(name)
        if peer.url is None:
            raise BadRequest(f"peer {name} is passive (no url): it connects to us")
        by_study: dict[str, set[str]] = {}
        for ref in self._core.instances_of(resource_ids):
            by_study.setdefault(ref.study_uid, set()).add(ref.sop_uid)
        return self._jobs.submit(
            "PeerStore",
            {"Peer": name, "Resources": resource_ids},
            lambda context: self._store(peer, resource_ids, by_study, context),
        )

    def _store(
        self,
        peer: PeerSettings,
        resource_ids: list[str],
        by_study: dict[str, set[str]],
        context: JobContext,
    ) -> dict[str, Any]:
        assert peer.url is not None
        started = time.monotonic()
        result = SyncResult()
        client = self._client_for(peer)
        try:
            for done, (study_uid, sops) in enumerate(sorted(by_study.items())):
                context.progress(done, len(by_study))
                send = functools.partial(send_study, self.peering, client, study_uid, sops, result)
                with_retries(send, lambda _: None)
        finally:
            client.close()
        self.heard_from(peer.name)
        self._core.log_exports(resource_ids, peer.name)
        audit.peer_sync(
            peer.name, "stored", started, pushed=result.pushed_instances, studies=len(by_study)
        )
        return {
            "Instances": sum(len(s) for s in by_study.values()),
            "PushedInstances": result.pushed_instances,
            "Conflicts": result.conflicts,
            # Orthanc's fields for a peer store (the password is never reported)
            "Peer": [peer.url, peer.username or "", ""],
            "Compress": False,
            "Size": str(client.bytes_sent),
        }

    # --- Orthanc peers: their own REST API, reached through us --------------------------

    def _orthanc(self, name: str) -> OrthancClient:
        peer = self.peer(name)
        if peer.kind != "orthanc" or peer.url is None:
            raise BadRequest(f"peer {name} is not an Orthanc server: use its sync and store")
        return OrthancClient(peer.url, peer.username, peer.password, peer.ca_file)

    def peer_system(self, name: str) -> dict[str, Any]:
        """The peer's ``/system`` (Orthanc's ``GET /peers/{name}/system``)."""
        try:
            return dict(self._orthanc(name).json("GET", "/system"))
        except PeerError as exc:
            raise PeerUnavailable(f"peer {name}: {exc}") from exc

    def store_straight(self, name: str, data: bytes) -> dict[str, Any]:
        """POST one DICOM file to the peer as it is, and answer what it answered."""
        client = self._orthanc(name)
        try:
            answer = client.json_body("POST", "/instances", data, "application/dicom")
        except PeerError as exc:
            raise PeerUnavailable(f"peer {name}: {exc}") from exc
        self.heard_from(name)
        return dict(answer)

    def sync(self, name: str) -> Job:
        peer = self.peer(name)
        if peer.url is None:
            raise BadRequest(f"peer {name} is passive (no url): it connects to us")
        return self._jobs.submit(
            "PeerSync", {"Peer": name}, lambda context: self._sync(peer, context)
        )

    def _sync(self, peer: PeerSettings, context: JobContext) -> dict[str, Any]:
        lock = self._running[peer.name]
        if not lock.acquire(blocking=False):
            return {"Skipped": "a sync with this peer is already running"}
        started = time.monotonic()
        retries: list[str] = []
        traffic = {"sent": 0, "received": 0}
        try:
            result = with_retries(lambda: self._sync_once(peer, context, traffic), retries.append)
            now = now_string()
            # Updated in place: the peering listener records contacts in the same dict.
            state = self._state[peer.name]
            state.pop("LastErrorTime", None)
            state.update(LastSuccess=now, LastContact=now, LastError=None)
            moved = traffic["sent"] + traffic["received"]
            audit.peer_sync(
                peer.name,
                "done",
                started,
                pushed=result.pushed_instances,
                pulled=result.pulled_instances,
                deletions=result.deletions,
            )
            return {
                "PushedInstances": result.pushed_instances,
                "PulledInstances": result.pulled_instances,
                "StudiesChecked": result.studies_checked,
                "Annotations": result.annotations,
                "Deletions": result.deletions,
                "Conflicts": result.conflicts,
                "BytesSent": traffic["sent"],
                "BytesReceived": traffic["received"],
                "RateMBps": round(moved / 1e6 / max(time.monotonic() - started, 1e-3), 2),
                "Retries": retries,
            }
        except Exception as exc:
            self._state[peer.name].update(LastError=str(exc), LastErrorTime=now_string())
            audit.peer_sync(peer.name, f"failed: {type(exc).__name__}", started)
            raise
        finally:
            lock.release()

    def _sync_once(
        self, peer: PeerSettings, context: JobContext, traffic: dict[str, int]
    ) -> SyncResult:
        client = self._client_for(peer)

        def progress(phase: str, count: int) -> None:
            context.progress(
                0,
                1,
                Phase=phase,
                Instances=count,
                BytesSent=traffic["sent"] + client.bytes_sent,
                BytesReceived=traffic["received"] + client.bytes_received,
            )

        try:
            return sync_once(
                self.peering,
                client,
                peer.name,
                do_push=peer.push,
                do_pull=peer.pull,
                query=peer.filter,
                mirror_deletions=peer.mirror_deletions,
                progress=progress,
            )
        finally:
            client.close()
            traffic["sent"] += client.bytes_sent
            traffic["received"] += client.bytes_received

    def _client_for(self, peer: PeerSettings) -> ReplicaClient:
        return open_replica(peer, self.identity, self._config.peering.shared_ca)

    def start_schedule(self) -> None:
        self._scheduler = BackgroundScheduler()
        self._scheduler.start()
        for peer in self._registry.peers().values():
            self._schedule(peer)

    def _schedule(self, peer: PeerSettings) -> None:
        if self._scheduler is None:
            return
        if self._scheduler.get_job(peer.name) is not None:
            self._scheduler.remove_job(peer.name)
        trigger = trigger_for(peer.interval_s, peer.schedule)
        if peer.url and trigger is not None:
            self._scheduler.add_job(
                self._scheduled_sync,
                trigger,
                args=[peer.name],
                id=peer.name,
                max_instances=1,
                coalesce=True,
            )

    def _scheduled_sync(self, name: str) -> None:
        window = self.peer(name).window
        if window and not in_window(datetime.datetime.now().time(), parse_window(window)):
            return
        self.sync(name)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
