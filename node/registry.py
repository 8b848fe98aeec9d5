"""The modalities and peers a running node knows: one registry shared by REST, DICOM
and replication.

Seeded from the configuration's ``[[modalities]]`` and ``[[peers]]``;
``PUT``/``DELETE /modalities/{name}`` and ``/peers/{name}`` edit it. The DICOM server
reads it for each C-MOVE destination and (when unknown callers are refused) for the
calling AE titles it accepts; replication reads each peer from it and follows its
changes (pins, schedules), so an edit applies at once. Edits last until the node
restarts too: they are kept in the index (``Index.registry_entries``) and laid over the
TOML file's entries at start; deleting an entry the file has is kept as well.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from typing import Any

from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.settings import Modality, NodeConfig, PeerSettings, peer_problem

#: kept edits: (kind "modality" or "peer", name, its settings as JSON, or None if deleted)
Persist = Callable[[str, str, dict[str, Any] | None], None]


class Registry:
    """Thread-safe: REST handlers edit it on the event loop's worker threads while DICOM
    associations read it on theirs."""

    def __init__(
        self,
        modalities: Iterable[Modality] = (),
        peers: Iterable[PeerSettings] = (),
        persist: Persist | None = None,
    ) -> None:
        # Reentrant: a listener may read the registry while it is being told of a change.
        self._lock = threading.RLock()
        self._modalities = {modality.name: modality for modality in modalities}
        self._peers = {peer.name: peer for peer in peers}
        self._listeners: list[Callable[[], None]] = []
        self._peer_listeners: list[Callable[[str], None]] = []
        self._persist = persist

    @classmethod
    def from_config(
        cls,
        config: NodeConfig,
        saved: dict[tuple[str, str], dict[str, Any] | None] | None = None,
        persist: Persist | None = None,
    ) -> Registry:
        """The configuration's entries, with the edits ``saved`` earlier laid over them."""
        modalities = {m.name: m for m in config.modalities}
        peers = {p.name: p for p in config.peers}
        for (kind, name), document in (saved or {}).items():
            table: dict[str, Any] = modalities if kind == "modality" else peers
            if document is None:
                table.pop(name, None)
                continue
            try:
                table[name] = (Modality if kind == "modality" else PeerSettings)(**document)
            except TypeError:  # written by another version: the TOML's entry stands
                continue
        return cls(modalities.values(), peers.values(), persist)

    def _kept(self, kind: str, name: str, entry: Modality | PeerSettings | None) -> None:
        if self._persist is not None:
            self._persist(kind, name, dataclasses.asdict(entry) if entry is not None else None)

    def modalities(self) -> dict[str, Modality]:
        """A copy, by name in sorted order."""
        with self._lock:
            return dict(sorted(self._modalities.items()))

    def modality(self, name: str) -> Modality:
        with self._lock:
            modality = self._modalities.get(name)
        if modality is None:
            raise NotFound(f"no modality {name}")
        return modality

    def modality_with_aet(self, aet: str) -> Modality | None:
        """The modality a C-MOVE names by its AE title (the first by name when several share
        it)."""
        wanted = aet.strip()
        with self._lock:
            return next(
                (m for _, m in sorted(self._modalities.items()) if m.aet.strip() == wanted), None
            )

    def calling_aets(self) -> list[str]:
        with self._lock:
            return sorted({modality.aet for modality in self._modalities.values()})

    def put_modality(self, modality: Modality) -> None:
        with self._lock:
            self._kept("modality", modality.name, modality)
            self._modalities[modality.name] = modality
            self._changed()

    def delete_modality(self, name: str) -> None:
        with self._lock:
            if self._modalities.pop(name, None) is None:
                raise NotFound(f"no modality {name}")
            self._kept("modality", name, None)
            self._changed()

    def watch(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change, under the lock, so listeners see changes in
        the order they were made."""
        with self._lock:
            self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    # --- peers -------------------------------------------------------------------------

    def peers(self) -> dict[str, PeerSettings]:
        """A copy, by name in sorted order."""
        with self._lock:
            return dict(sorted(self._peers.items()))

    def peer(self, name: str) -> PeerSettings:
        with self._lock:
            peer = self._peers.get(name)
        if peer is None:
            raise NotFound(f"no peer {name}")
        return peer

    def put_peer(self, peer: PeerSettings) -> None:
        """Add or replace a peer; BadRequest when its settings do not fit its kind."""
        problem = peer_problem(peer)
        if problem:
            raise BadRequest(f"peer {peer.name}: {problem}")
        with self._lock:
            self._kept("peer", peer.name, peer)
            self._peers[peer.name] = peer
            self._peer_changed(peer.name)

    def delete_peer(self, name: str) -> None:
        with self._lock:
            if self._peers.pop(name, None) is None:
                raise NotFound(f"no peer {name}")
            self._kept("peer", name, None)
            self._peer_changed(name)

    def watch_peers(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` after a peer is put or deleted, under the lock."""
        with self._lock:
            self._peer_listeners.append(listener)

    def _peer_changed(self, name: str) -> None:
        for listener in self._peer_listeners:
            listener(name)
