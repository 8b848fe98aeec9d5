"""The LMDB index: one environment per node for everything that is not pixel data.

:class:`Environment` owns the LMDB environment and its named databases; every read and
write goes through a :class:`Txn`, which offers the index's primitive
operations (records, children, lookups, metadata, attachments, change feed,
recycling order, protection, global properties). What those operations mean
together (adding an instance, deleting a resource) lives in
:mod:`.hierarchy`.

The map grows on ``MapFullError`` instead of failing: the transaction is
retried after the map size doubles.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from pacsnode.node.ids import Level
from pacsnode.storage.errors import StorageFull

T = TypeVar("T")

SCHEMA_VERSION = 1
# Virtual address space, not disk: the data file grows only as pages are used.
_INITIAL_MAP_SIZE = 1 << 35
# free bytes under which a failed commit is taken for a full disk (LMDB writes whole pages)
_FULL_DISK_MARGIN = 1 << 20
_MAX_KEY = 480  # LMDB's default key limit is 511 bytes
_SEPARATOR = "\x1f"
_ALL = "*"
_SEQ = struct.Struct(">Q")
#: feed database -> the global counter holding its last sequence number
_LAST_OF_FEED = {"changes": "last_change", "exports": "last_export"}

_DATABASES = {
    "resources": False,  # id -> JSON record
    "children": True,  # parent id -> child ids (dupsort)
    "lookup": True,  # level/keyword/value -> ids (dupsort)
    "metadata": False,  # id \x1f key -> value
    "attachments": False,  # id \x1f content type -> JSON attachment info
    "changes": False,  # seq -> JSON change
    "exports": False,  # seq -> JSON exported resource (Orthanc's /exports)
    "recycle_order": False,  # seq -> patient id
    "recycle_position": False,  # patient id -> seq
    "protected": False,  # patient id -> b"1"
    "globals": False,  # name -> value
    "dirty": False,  # study UID -> b"" while a deletion is under way
    "removed_at": False,  # resource id -> seq of the change feed when it was last removed
    # Orthanc's number of a change -> its seq in the feed (Orthanc numbers no deletions)
    "orthanc_numbers": False,
    "revisions": False,  # id \x1f metadata key -> revision of its value
}


def _key(*parts: str) -> bytes:
    return _SEPARATOR.join(parts).encode("utf-8")[:_MAX_KEY]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class Txn:
    """One LMDB transaction and the index's primitive operations on it."""

    def __init__(self, environment: Environment, txn: lmdb.Transaction) -> None:
        self._txn = txn
        self._db = environment.databases

    # --- resources and hierarchy -----------------------------------------------------

    def resource(self, resource_id: str) -> dict[str, Any] | None:
        raw = self._txn.get(resource_id.encode(), db=self._db["resources"])
        return json.loads(raw) if raw is not None else None

    def put_resource(self, record: dict[str, Any]) -> None:
        self._txn.put(record["id"].encode(), _dumps(record), db=self._db["resources"])

    def delete_resource(self, resource_id: str) -> None:
        self._txn.delete(resource_id.encode(), db=self._db["resources"])

    def children(self, parent_id: str) -> list[str]:
        cursor = self._txn.cursor(db=self._db["children"])
        if not cursor.set_key(parent_id.encode()):
            return []
        return [value.decode() for value in cursor.iternext_dup()]

    def add_child(self, parent_id: str, child_id: str) -> None:
        self._txn.put(parent_id.encode(), child_id.encode(), db=self._db["children"], dupdata=True)

    def remove_child(self, parent_id: str, child_id: str) -> None:
        self._txn.delete(parent_id.encode(), child_id.encode(), db=self._db["children"])

    # --- secondary lookups -----------------------------------------------------------

    def add_lookup(self, level: Level, keyword: str, value: str, resource_id: str) -> None:
        self._txn.put(
            _key(level.value, keyword, value),
            resource_id.encode(),
            db=self._db["lookup"],
            dupdata=True,
        )

    def remove_lookup(self, level: Level, keyword: str, value: str, resource_id: str) -> None:
        self._txn.delete(
            _key(level.value, keyword, value), resource_id.encode(), db=self._db["lookup"]
        )

    def add_to_level(self, level: Level, resource_id: str) -> None:
        self.add_lookup(level, _ALL, "", resource_id)

    def remove_from_level(self, level: Level, resource_id: str) -> None:
        self.remove_lookup(level, _ALL, "", resource_id)

    def level_ids(self, level: Level) -> Iterator[str]:
        yield from self.lookup_exact(level, _ALL, "")

    def lookup_exact(self, level: Level, keyword: str, value: str) -> Iterator[str]:
        cursor = self._txn.cursor(db=self._db["lookup"])
        if cursor.set_key(_key(level.value, keyword, value)):
            for raw in cursor.iternext_dup():
                yield raw.decode()

    def lookup_scan(
        self,
        level: Level,
        keyword: str,
        low: str = "",
        high: str | None = None,
        *,
        prefix: bool = False,
    ) -> Iterator[tuple[str, str]]:
        """(value, id) for values from ``low`` to ``high`` (inclusive), or with prefix ``low``."""
        head = _key(level.value, keyword, "")
        start = _key(level.value, keyword, low)
        cursor = self._txn.cursor(db=self._db["lookup"])
        if not cursor.set_range(start):
            return
        for raw_key, raw_id in cursor:
            if not raw_key.startswith(head):
                return
            value = raw_key[len(head) :].decode("utf-8", "replace")
            if prefix and not value.startswith(low):
                return
            if high is not None and value > high:
                return
            yield value, raw_id.decode()

    def lookup_values(self, level: Level, keyword: str) -> Iterator[bytes]:
        """Each distinct indexed value of a keyword, as stored (UTF-8), once per value."""
        head = _key(level.value, keyword, "")
        cursor = self._txn.cursor(db=self._db["lookup"])
        if not cursor.set_range(head):
            return
        for raw_key in cursor.iternext_nodup(keys=True, values=False):
            if not raw_key.startswith(head):
                return
            yield raw_key[len(head) :]

    # --- metadata and attachments ----------------------------------------------------

    def metadata(self, resource_id: str) -> dict[int, str]:
        found: dict[int, str] = {}
        head = _key(resource_id, "")
        cursor = self._txn.cursor(db=self._db["metadata"])
        if cursor.set_range(head):
            for raw_key, raw_value in cursor:
                if not raw_key.startswith(head):
                    break
                found[int(raw_key[len(head) :])] = raw_value.decode("utf-8")
        return found

    def metadata_value(self, resource_id: str, key: int) -> str | None:
        raw = self._txn.get(_key(resource_id, f"{key:05d}"), db=self._db["metadata"])
        return raw.decode("utf-8") if raw is not None else None

    def set_metadata(self, resource_id: str, key: int, value: str) -> None:
        self._txn.put(_key(resource_id, f"{key:05d}"), value.encode(), db=self._db["metadata"])

    def delete_metadata(self, resource_id: str, key: int) -> bool:
        return bool(self._txn.delete(_key(resource_id, f"{key:05d}"), db=self._db["metadata"]))

    def metadata_revision(self, resource_id: str, key: int) -> int:
        raw = self._txn.get(_key(resource_id, f"{key:05d}"), db=self._db["revisions"])
        return int(raw) if raw is not None else 0

    def set_metadata_revision(self, resource_id: str, key: int, revision: int) -> None:
        if revision:
            self._txn.put(
                _key(resource_id, f"{key:05d}"), str(revision).encode(), db=self._db["revisions"]
            )
        else:
            self._txn.delete(_key(resource_id, f"{key:05d}"), db=self._db["revisions"])

    def attachments(self, resource_id: str) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        head = _key(resource_id, "")
        cursor = self._txn.cursor(db=self._db["attachments"])
        if cursor.set_range(head):
            for raw_key, raw_value in cursor:
                if not raw_key.startswith(head):
                    break
                found[int(raw_key[len(head) :])] = json.loads(raw_value)
        return found

    def set_attachment(self, resource_id: str, content_type: int, info: dict[str, Any]) -> None:
        self._txn.put(
            _key(resource_id, f"{content_type:05d}"), _dumps(info), db=self._db["attachments"]
        )

    def delete_attachment(self, resource_id: str, content_type: int) -> bool:
        return bool(
            self._txn.delete(_key(resource_id, f"{content_type:05d}"), db=self._db["attachments"])
        )

    # --- change feed -----------------------------------------------------------------

    def append_change(self, change: dict[str, Any]) -> int:
        return self.append_to_feed("changes", change)

    def changes_after(self, since: int, limit: int) -> list[dict[str, Any]]:
        return self.feed_after("changes", since, limit)

    def last_change(self) -> int:
        return self.counter("last_change")

    # Numbered feeds: the change feed, and the log of exported resources. Sequence
    # numbers keep growing when a feed is cleared, so a client's cursor stays valid.

    def append_to_feed(self, feed: str, entry: dict[str, Any]) -> int:
        seq = self.counter(_LAST_OF_FEED[feed]) + 1
        self.set_global(_LAST_OF_FEED[feed], str(seq))
        self._txn.put(_SEQ.pack(seq), _dumps({"Seq": seq, **entry}), db=self._db[feed])
        return seq

    def feed_after(self, feed: str, since: int, limit: int) -> list[dict[str, Any]]:
        cursor = self._txn.cursor(db=self._db[feed])
        found: list[dict[str, Any]] = []
        if not cursor.set_range(_SEQ.pack(max(since, 0) + 1)):
            return found
        for _, raw in cursor:
            if len(found) >= limit:
                break
            found.append(json.loads(raw))
        return found

    def map_orthanc_number(self, number: int, seq: int) -> None:
        self._txn.put(_SEQ.pack(number), _SEQ.pack(seq), db=self._db["orthanc_numbers"])

    def seq_of_orthanc_number_after(self, number: int) -> int | None:
        """The feed seq of the first change Orthanc numbers above ``number``, if any."""
        cursor = self._txn.cursor(db=self._db["orthanc_numbers"])
        if not cursor.set_range(_SEQ.pack(number + 1)):
            return None
        return int(_SEQ.unpack(cursor.value())[0])

    def clear_orthanc_numbers(self) -> None:
        self._txn.drop(self._db["orthanc_numbers"], delete=False)

    def feed_last_seq(self, feed: str) -> int:
        return self.counter(_LAST_OF_FEED[feed])

    def feed_newest_first(self, feed: str) -> Iterator[dict[str, Any]]:
        cursor = self._txn.cursor(db=self._db[feed])
        if not cursor.last():
            return
        for _, raw in cursor.iterprev():
            yield json.loads(raw)

    def clear_feed(self, feed: str) -> None:
        self._txn.drop(self._db[feed], delete=False)

    def mark_removed(self, resource_id: str, seq: int) -> None:
        self._txn.put(resource_id.encode(), _SEQ.pack(seq), db=self._db["removed_at"])

    def removed_at(self, resource_id: str) -> int:
        """The feed's sequence number when the resource was last removed (0: never)."""
        raw = self._txn.get(resource_id.encode(), db=self._db["removed_at"])
        return int(_SEQ.unpack(raw)[0]) if raw is not None else 0

    # --- recycling order and protection ---------------------------------------------

    def touch_patient(self, patient_id: str) -> None:
        """Make the patient the most recently updated one."""
        self.forget_patient(patient_id)
        seq = self.counter("last_recycle") + 1
        self.set_global("last_recycle", str(seq))
        self._txn.put(_SEQ.pack(seq), patient_id.encode(), db=self._db["recycle_order"])
        self._txn.put(patient_id.encode(), _SEQ.pack(seq), db=self._db["recycle_position"])

    def forget_patient(self, patient_id: str) -> None:
        old = self._txn.pop(patient_id.encode(), db=self._db["recycle_position"])
        if old is not None:
            self._txn.delete(old, db=self._db["recycle_order"])

    def patients_oldest_first(self) -> Iterator[str]:
        cursor = self._txn.cursor(db=self._db["recycle_order"])
        for _, raw in cursor:
            yield raw.decode()

    def is_protected(self, patient_id: str) -> bool:
        return self._txn.get(patient_id.encode(), db=self._db["protected"]) is not None

    def set_protected(self, patient_id: str, protected: bool) -> None:
        if protected:
            self._txn.put(patient_id.encode(), b"1", db=self._db["protected"])
        else:
            self._txn.delete(patient_id.encode(), db=self._db["protected"])

    # --- deletions under way ---------------------------------------------------------

    def mark_dirty(self, study_uid: str) -> None:
        self._txn.put(study_uid.encode(), b"", db=self._db["dirty"])

    def clear_dirty(self, study_uid: str) -> None:
        self._txn.delete(study_uid.encode(), db=self._db["dirty"])

    def dirty_studies(self) -> list[str]:
        return [key.decode() for key, _ in self._txn.cursor(db=self._db["dirty"])]

    # --- global properties -----------------------------------------------------------

    def get_global(self, name: str) -> str | None:
        raw = self._txn.get(name.encode(), db=self._db["globals"])
        return raw.decode() if raw is not None else None

    def set_global(self, name: str, value: str) -> None:
        self._txn.put(name.encode(), value.encode(), db=self._db["globals"])

    def globals_with_prefix(self, prefix: str) -> Iterator[tuple[str, str]]:
        cursor = self._txn.cursor(db=self._db["globals"])
        head = prefix.encode()
        if not cursor.set_range(head):
            return
        for raw_key, raw_value in cursor:
            if not raw_key.startswith(head):
                return
            yield raw_key.decode(), raw_value.decode()

    def counter(self, name: str) -> int:
        return int(self.get_global(name) or 0)

    def add_to_counter(self, name: str, delta: int) -> None:
        self.set_global(name, str(self.counter(name) + delta))


@contextlib.contextmanager
def _disk_full_as_storage_full(path: str | None = None) -> Iterator[None]:
    try:
        yield
    except lmdb.MapFullError:
        raise
    except lmdb.Error as exc:
        if "No space left" in str(exc) or "ENOSPC" in str(exc) or _short_of_space(exc, path):
            raise StorageFull("disk full while writing the index") from exc
        raise


def _short_of_space(exc: lmdb.Error, path: str | None) -> bool:
    """LMDB reports a write cut short by a full disk as EIO, not ENOSPC."""
    if path is None or "Input/output error" not in str(exc):
        return False
    try:
        return shutil.disk_usage(path).free < _FULL_DISK_MARGIN
    except OSError:
        return False


class Environment:
    """The LMDB environment under ``path``: transactions, map growth, size."""

    def __init__(self, path: Path, *, map_size: int = _INITIAL_MAP_SIZE) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path), map_size=map_size, max_dbs=len(_DATABASES) + 2, subdir=True, max_readers=256
        )
        self.databases = {
            name: self.env.open_db(name.encode(), dupsort=dupsort)
            for name, dupsort in _DATABASES.items()
        }
        self._grow_lock = threading.Lock()
        self.write(self._initialise)

    @staticmethod
    def _initialise(txn: Txn) -> None:
        version = txn.get_global("schema_version")
        if version is None:
            txn.set_global("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise RuntimeError(f"index schema {version} is not supported (need {SCHEMA_VERSION})")

    def close(self) -> None:
        self.env.close()

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read-only snapshot; readers never block writers or each other."""
        with self.env.begin(buffers=False) as txn:
            return fn(Txn(self, txn))

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in one write transaction, committed (and fsynced) before returning."""
        while True:
            try:
                with _disk_full_as_storage_full(self.env.path()), self.env.begin(write=True) as txn:
                    return fn(Txn(self, txn))
            except lmdb.MapFullError:
                self._grow()

    def write_batch(self, jobs: list[Callable[[Txn], Any]]) -> list[tuple[bool, Any]]:
        """Run several jobs in one committed transaction, each in a nested one.

        A job that raises is rolled back alone; its exception is returned in
        place of its result. One commit (one fsync) serves every job.
        """
        while True:
            try:
                outcomes: list[tuple[bool, Any]] = []
                with (
                    _disk_full_as_storage_full(self.env.path()),
                    self.env.begin(write=True) as parent,
                ):
                    for job in jobs:
                        child = self.env.begin(write=True, parent=parent)
                        try:
                            result = job(Txn(self, child))
                        except lmdb.MapFullError:
                            child.abort()
                            raise
                        except Exception as exc:  # reported to that job's caller
                            child.abort()
                            outcomes.append((False, exc))
                        else:
                            child.commit()
                            outcomes.append((True, result))
                return outcomes
            except lmdb.MapFullError:
                self._grow()

    def _grow(self) -> None:
        with self._grow_lock:
            self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def disk_size(self) -> int:
        info = self.env.info()
        return int(info["last_pgno"] + 1) * int(self.env.stat()["psize"])
