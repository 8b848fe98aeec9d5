"""The audit log: one JSON line per event, who did what, from where, to which resource.

Edges call the named functions below (``rest_request``, ``login_failed``, ``dicom_refused``,
``dicom_store``, ``dicom_operation``, ``peer_request``, ``peer_sync``, ``deleted``). They only
build a dict and hand it to the ``pacsnode.audit`` logger, whose QueueHandler puts it on a
queue: a QueueListener thread formats and writes it to a rotating file, so the file's
writes (and rotation) never run on the event loop or in a DICOM association's thread.
Until :func:`start` runs (tests, CLI commands) the records go nowhere.

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
import queue
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

from pacsnode.node.settings import NodeConfig

LOGGER_NAME = "pacsnode.audit"
KEY_FILE = "audit.key"
_MB = 1024 * 1024
#: events queued for the writer at most; beyond, ``dropped`` counts them (never blocks)
_QUEUE_SIZE = 100_000
_PATIENT_ID_TAG = "00100020"

_logger = logging.getLogger(LOGGER_NAME)
_logger.propagate = False  # never into the node's own log
_logger.addHandler(logging.NullHandler())
_logger.setLevel(logging.INFO)

#: the patient id as written: the id itself until start() installs the keyed hash
_patient: Callable[[str], str] = str
#: the running writer's queue handler (``None``: events are not even built)
_handler: _Dropping | None = None


class _Dropping(QueueHandler):
    """A QueueHandler that never blocks the caller: a full queue drops the event and
    counts it (the next written line says how many were lost)."""

    dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # the message is a dict, formatted by the writer thread

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            type(self).dropped += 1


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = dict(record.msg) if isinstance(record.msg, dict) else {"message": record.msg}
        if "time" not in event:
            stamp = datetime.fromtimestamp(record.created, UTC)
            event = {"time": stamp.isoformat(timespec="milliseconds"), **event}
        if _Dropping.dropped:
            event["dropped_before"], _Dropping.dropped = _Dropping.dropped, 0
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
    global _patient, _handler
    settings = config.audit
    if not settings.enabled:
        return lambda: None
    _patient = patient_hasher(key_for(config.data_dir)) if settings.hash_patient_ids else str
    path = log_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = RotatingFileHandler(
        path,
        maxBytes=settings.max_size_mb * _MB,
        backupCount=settings.backup_count,
        encoding="utf-8",
    )
    writer.setFormatter(_JsonLines())
    events: queue.Queue[logging.LogRecord] = queue.Queue(_QUEUE_SIZE)
    handler = _Dropping(events)
    listener = QueueListener(events, writer)
    listener.start()
    _logger.addHandler(handler)  # events logged by name (peer/, which cannot import this)
    _handler = handler

    def stop() -> None:
        global _handler
        _handler = None
        _logger.removeHandler(handler)
        listener.stop()
        writer.close()

    return stop


def _write(action: str, who: dict[str, Any], outcome: str, **resource: Any) -> None:
    handler = _handler
    if handler is None:
        return
    event = {"action": action, **who, "outcome": outcome}
    event.update({key: value for key, value in resource.items() if value not in ("", None)})
    # Straight onto the writer's queue: a Logger call would look up its caller's frame and
    # format a time on every REST request (a third of a small request's cost); the writer
    # thread stamps the time from ``created``.
    handler.enqueue(logging.makeLogRecord({"msg": event, "created": time.time()}))


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
