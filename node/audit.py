"""The audit log: one JSON line per event, who did what, from where, to which resource.

Edges call the named functions below (``rest_request``, ``login_failed``, ``dicom_refused``,
``dicom_store``, ``dicom_operation``, ``peer_request``, ``peer_sync``, ``deleted``; peer/
logs to the ``pacsnode.audit`` logger by name). They only build a dict and hand it to the
writer, whose thread formats and writes what has piled up to a rotating file a few times a
second, so the file's writes (and rotation) never run on the event loop or in a DICOM
association's thread. Until :func:`start` runs (tests, CLI commands) events go nowhere.

Patient ids are written as ``hmac-sha256(key, id)`` truncated to 16 hex digits when
``[audit] hash_patient_ids`` is on (the default): the same patient has the same token in
every line, so a trail can be followed, but without the key (``data_dir/audit.key``,
0600, made at first start) a dictionary of plausible ids does not reverse it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from pacsnode.node.settings import NodeConfig

LOGGER_NAME = "pacsnode.audit"
KEY_FILE = "audit.key"
_MB = 1024 * 1024
#: events waiting for the writer at most; beyond, they are dropped and counted (never blocks)
_QUEUE_SIZE = 100_000
#: how often the writer thread writes what has piled up (seconds)
_FLUSH_S = 0.2
_PATIENT_ID_TAG = "00100020"

log = logging.getLogger(__name__)
_logger = logging.getLogger(LOGGER_NAME)
_logger.propagate = False  # never into the node's own log
_logger.addHandler(logging.NullHandler())
_logger.setLevel(logging.INFO)

#: the patient id as written: the id itself until start() installs the keyed hash
_patient: Callable[[str], str] = str
#: the running writer (``None``: events are not even built)
_writer: _Writer | None = None


class _Writer:
    """Events waiting for the writer thread, and that thread.

    An event is a (dict, time) pair appended to a deque: an append is atomic and costs a
    fraction of a ``Queue.put`` (no lock, no condition to notify), which matters because
    every REST request adds one. The thread wakes every ``_FLUSH_S`` (or at stop), formats
    what has piled up and writes it in one call, rotating the file as
    ``RotatingFileHandler`` does. A full backlog drops events and counts them (the next
    written line says how many were lost): the caller never waits for the disk.
    """

    def __init__(self, file: RotatingFileHandler) -> None:
        self._file = file
        self._events: deque[tuple[dict[str, Any], float]] = deque()
        self._dropped = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def add(self, event: dict[str, Any], created: float) -> None:
        if len(self._events) >= _QUEUE_SIZE:
            self._dropped += 1
            return
        self._events.append((event, created))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._flush()
        self._file.close()

    def _run(self) -> None:
        failing = False
        while not self._stopping.wait(_FLUSH_S):
            try:
                self._flush()
            except OSError as exc:
                if not failing:  # once per spell of failures (a full disk lasts)
                    log.warning("the audit log cannot be written: %s; events are lost", exc)
                failing = True
            else:
                failing = False

    def _flush(self) -> None:
        lines = []
        while self._events:
            event, created = self._events.popleft()
            if self._dropped:
                event = {**event, "dropped_before": self._dropped}
                self._dropped = 0
            lines.append(_json_line(event, created))
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        file = self._file
        try:
            if file.maxBytes and file.stream.tell() + len(text) >= file.maxBytes:
                file.doRollover()
            file.stream.write(text)
            file.stream.flush()
        except OSError:
            self._dropped += len(lines)  # the next line written says so
            raise


class _ByName(logging.Handler):
    """Events logged to the ``pacsnode.audit`` logger by name (peer/, which cannot import
    this module) go the same way."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        event = dict(record.msg) if isinstance(record.msg, dict) else {"message": record.msg}
        self._writer.add(event, record.created)


def _json_line(event: dict[str, Any], created: float) -> str:
    if "time" not in event:
        stamp = datetime.fromtimestamp(created, UTC)
        event = {"time": stamp.isoformat(timespec="milliseconds"), **event}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)


def key_for(data_dir: Path) -> bytes:
    """The audit key, made (32 random bytes, 0600) when the data directory has none."""
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key)
        return key


def patient_hasher(key: bytes) -> Callable[[str], str]:
    def hashed(patient_id: str) -> str:
        if not patient_id:
            return ""
        digest = hmac.new(key, patient_id.encode("utf-8", "replace"), hashlib.sha256)
        return "hmac:" + digest.hexdigest()[:16]

    return hashed


def log_path(config: NodeConfig) -> Path:
    return config.audit.path or config.data_dir / "audit" / "audit.log"


def start(config: NodeConfig) -> Callable[[], None]:
    """Start writing the audit log as ``config`` says; returns the function that stops it
    (flushing what is queued)."""
    global _patient, _writer
    settings = config.audit
    if not settings.enabled:
        return lambda: None
    _patient = patient_hasher(key_for(config.data_dir)) if settings.hash_patient_ids else str
    path = log_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    file = RotatingFileHandler(
        path,
        maxBytes=settings.max_size_mb * _MB,
        backupCount=settings.backup_count,
        encoding="utf-8",
    )
    writer = _Writer(file)
    handler = _ByName(writer)
    _logger.addHandler(handler)
    _writer = writer

    def stop() -> None:
        global _writer
        _writer = None
        _logger.removeHandler(handler)
        writer.stop()

    return stop


def _write(action: str, who: dict[str, Any], outcome: str, **resource: Any) -> None:
    writer = _writer
    if writer is None:
        return
    event = {"action": action, **who, "outcome": outcome}
    event.update({key: value for key, value in resource.items() if value not in ("", None)})
    # Straight to the writer, not through a Logger: a log record looks up its caller's
    # frame and more on every REST request; the writer thread formats the time.
    writer.add(event, time.time())


def patient_of(metadata: dict[str, Any]) -> str:
    """The patient id of an instance's DICOM JSON metadata ("" when it has none)."""
    values = (metadata.get(_PATIENT_ID_TAG) or {}).get("Value") or [""]
    return str(values[0])


def _patient_fields(patient_id: str) -> dict[str, str]:
    return {"patient": _patient(patient_id)} if patient_id else {}


# --- REST -------------------------------------------------------------------------------


def rest_request(
    user: str | None, address: str | None, method: str, path: str, status: int, seconds: float
) -> None:
    """One REST request as answered (the access log)."""
    _write(
        "rest-request",
        {"user": user or "", "address": address or ""},
        str(status),
        method=method,
        path=path[:512],
        ms=round(seconds * 1000, 1),
    )


def login_failed(user: str, address: str | None) -> None:
    _write("rest-login", {"user": user[:64], "address": address or ""}, "failed")


def deleted(
    user: str | None, address: str | None, level: str, resource_id: str, outcome: str
) -> None:
    _write(
        "delete",
        {"user": user or "", "address": address or ""},
        outcome,
        level=level,
        resource=resource_id,
    )


# --- DICOM ------------------------------------------------------------------------------


def dicom_refused(calling_aet: str, address: str, called_aet: str, reason: str) -> None:
    _write(
        "dicom-associate",
        {"aet": calling_aet, "address": address},
        "refused",
        called_aet=called_aet,
        reason=reason,
    )


def dicom_store(
    calling_aet: str, address: str, sop_uid: str, study_uid: str, patient_id: str, outcome: str
) -> None:
    _write(
        "dicom-c-store",
        {"aet": calling_aet, "address": address},
        outcome,
        sop_instance_uid=sop_uid,
        study_instance_uid=study_uid,
        **_patient_fields(patient_id),
    )


def dicom_operation(
    operation: str, calling_aet: str, address: str, outcome: str, **resource: Any
) -> None:
    """C-FIND, C-GET, C-MOVE: what was asked, by whom (patient ids in a query hashed too)."""
    query = resource.pop("query", None)
    if query:
        query = dict(query)
        if "PatientID" in query:
            query["PatientID"] = _patient(str(query["PatientID"]))
        resource["query"] = query
    _write(
        f"dicom-{operation.lower()}", {"aet": calling_aet, "address": address}, outcome, **resource
    )


# --- peers ------------------------------------------------------------------------------


def peer_request(peer: str, address: str | None, method: str, path: str, status: int) -> None:
    _write(
        "peer-request",
        {"peer": peer, "address": address or ""},
        str(status),
        method=method,
        path=path[:512],
    )


def peer_sync(peer: str, outcome: str, started: float, **counts: Any) -> None:
    """One replication pass with a peer (``started`` as ``time.monotonic()``)."""
    _write(
        "peer-sync",
        {"peer": peer},
        outcome,
        seconds=round(time.monotonic() - started, 3),
        **counts,
    )
