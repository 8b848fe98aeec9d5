"""The few object-store requests the ``s3`` backend makes, over obstore, with its errors
turned into the store's.

obstore (Rust's ``object_store`` behind a small Python API) was chosen by measuring, against
SeaweedFS on loopback (2 cores): importing it and building a client adds 7.5 MiB to a fresh
interpreter's RSS (9.6 MiB after a first request), minio 16.5 (17.0) and boto3 35.7 (35.9);
64 KiB ranged GETs with ``If-Match`` take 1.40 ms p50 / 5.3 ms p99 with obstore, 2.08 / 7.1
with minio, 3.47 / 9.4 with boto3, and four threads reach 980 reads/s against 415 and 298
(obstore leaves the interpreter lock while it waits). It is imported only here, when an
``s3`` backend is built, so a node on local disk never loads it.

Errors: a missing object is ``FileNotFoundError``; an object that is no longer the version
a reader pinned (deleted, or replaced by someone else) is :class:`ObjectGone`, also a
``FileNotFoundError``; anything else (refused connection, time-out, 5xx, refused
credentials, no such bucket) is :class:`~pacsnode.storage.errors.BackendUnavailable`.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pacsnode.storage.backends.s3_settings import S3Settings
from pacsnode.storage.errors import BackendUnavailable

#: the longest single ranged GET: larger reads are split, so that one request's time
#: stays bounded by the time-out whatever the caller asks for
MAX_GET = 8 << 20


class ObjectGone(FileNotFoundError):
    """The version of an object a reader pinned is no longer there."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int


class Counters:
    """Requests made, for tests and benchmarks (how many GETs a read cost)."""

    def __init__(self) -> None:
        self.gets = 0
        self.bytes_read = 0
        self._guard = threading.Lock()

    def count_get(self, size: int) -> None:
        with self._guard:
            self.gets += 1
            self.bytes_read += size


class ObjectClient:
    """One bucket, through obstore. Thread-safe: obstore's store is shared by threads."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.counters = Counters()
        #: the last request found the server unavailable
        self.failing = False
        self._obstore, self._errors, self._store = _connect(settings)

    def describe(self) -> str:
        return self.settings.describe()

    def get_range(self, key: str, etag: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object's version ``etag`` (``start < end``, within
        the object). ``ObjectGone`` when that version is no longer there."""
        parts = []
        for low in range(start, end, MAX_GET):
            high = min(end, low + MAX_GET)
            with self._translated(f"reading {key}", missing="gone"):
                result = self._obstore.get(
                    self._store, key, options={"range": (low, high), "if_match": etag}
                )
                data = bytes(result.bytes())
            self.counters.count_get(len(data))
            if len(data) != high - low:
                raise ObjectGone(f"{key}: the object is shorter than its listing said")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def download(self, key: str, etag: str, handle: Any) -> None:
        """The whole version ``etag`` of the object, written to ``handle``."""
        with self._translated(f"reading {key}", missing="gone"):
            result = self._obstore.get(self._store, key, options={"if_match": etag})
            for chunk in result:
                handle.write(chunk)
        self.counters.count_get(0)

    def put_file(self, key: str, path: Path) -> str:
        """Upload a file as the object (in parts when larger than one); its ETag. Once
        this returns the server has it durably (it answered 200)."""
        part = self.settings.part_mb << 20
        with self._translated(f"writing {key}", missing="unavailable"):
            # Two parts in flight, each held in memory while it goes: an 80 MB ZIP to
            # SeaweedFS took 0.7 s with 2 or 4 at once (1.4 s with 1), and 4 held 16 MiB
            # more at the peak (+40 MiB against +24).
            result = self._obstore.put(self._store, key, path, chunk_size=part, max_concurrency=2)
        etag = result.get("e_tag")
        if not etag:
            raise BackendUnavailable(f"{self.describe()}: writing {key}: no ETag in the answer")
        return str(etag)

    def delete(self, key: str) -> None:
        """Remove the object (no error if it is already gone)."""
        with self._translated(f"removing {key}"), contextlib.suppress(FileNotFoundError):
            self._obstore.delete(self._store, key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, page by page."""
        with self._translated(f"listing {prefix or 'the bucket'}", missing="unavailable"):
            for page in self._obstore.list(self._store, prefix=prefix, chunk_size=1000):
                for meta in page:
                    yield ObjectInfo(meta["path"], str(meta.get("e_tag") or ""), meta["size"])

    def probe(self, prefix: str) -> None:
        """One small request (a listing of at most one key): ``BackendUnavailable`` if the
        server does not answer."""
        with self._translated(f"listing {prefix}", missing="unavailable"):
            next(iter(self._obstore.list(self._store, prefix=prefix, chunk_size=1)), None)

    @contextlib.contextmanager
    def _translated(self, what: str, *, missing: str = "absent") -> Iterator[None]:
        """obstore's errors as ours; ``missing`` says what a 404 means here: the object is
        ``absent``, the version a reader pinned is ``gone``, or (writing, listing) the
        bucket itself is missing, which leaves the backend ``unavailable``."""
        errors = self._errors
        try:
            yield
            self.failing = False
        except errors.PreconditionError as exc:
            raise ObjectGone(f"{what}: the version being read was replaced or deleted") from exc
        except FileNotFoundError as exc:  # obstore's NotFoundError is one
            if missing == "gone":
                raise ObjectGone(f"{what}: the version being read was deleted") from exc
            if missing == "unavailable":
                raise BackendUnavailable(
                    f"{self.describe()}: {what}: no such bucket: {_first_line(exc)}"
                ) from exc
            raise FileNotFoundError(f"{what}: no such object") from exc
        except (errors.BaseError, OSError) as exc:
            self.failing = True
            raise BackendUnavailable(self._unavailable(what, exc)) from exc

    def _unavailable(self, what: str, exc: BaseException) -> str:
        """What went wrong, for the operator: the likely causes of 401, 403 and 404 said."""
        errors = self._errors
        status = _status(exc)
        refused = isinstance(exc, errors.PermissionDeniedError | errors.UnauthenticatedError)
        if refused or status in (401, 403):
            return f"{self.describe()} refused the credentials while {what}: {_first_line(exc)}"
        if status == 404:
            return f"{self.describe()}: {what}: no such bucket: {_first_line(exc)}"
        return f"{self.describe()}: {what} failed: {_first_line(exc)}"


def _status(exc: BaseException) -> int | None:
    """The HTTP status in an obstore message, if any: its generic errors (a refused
    listing, a missing bucket) carry no other trace of it."""
    found = re.search(r"status code: (\d{3})", str(exc))
    return int(found.group(1)) if found else None


def _first_line(exc: BaseException) -> str:
    """obstore's messages carry a long debug dump after the first line, whose end is the
    start of the server's XML answer."""
    text = str(exc).strip().splitlines()
    line = text[0].split(": <?xml", 1)[0] if text else type(exc).__name__
    return line[:300]


def _connect(settings: S3Settings) -> tuple[Any, Any, Any]:
    """obstore's module, its exceptions, and a store for the bucket; imported here, on
    first use, so that nodes without an s3 backend never load it."""
    try:
        import obstore
        import obstore.exceptions
        from obstore.store import S3Store
    except ImportError as exc:
        raise ValueError(
            "needs the obstore package (pip install 'pacsnode[s3]'): " + str(exc)
        ) from exc
    config: dict[str, Any] = {
        "region": settings.region,
        "access_key_id": settings.access_key,
        "secret_access_key": settings.secret_key,
    }
    if settings.session_token:
        config["session_token"] = settings.session_token
    if settings.endpoint:
        config["endpoint"] = settings.endpoint
    timeout = timedelta(seconds=settings.timeout_s)
    try:
        store = S3Store(
            settings.bucket,
            config=config,
            client_options={
                "allow_http": bool(settings.endpoint and settings.endpoint.startswith("http:")),
                "timeout": timeout,
                "connect_timeout": timedelta(seconds=settings.connect_timeout_s),
            },
            retry_config={
                "max_retries": settings.retries,
                # A server that is down should be said quickly, not after minutes of retries.
                "retry_timeout": timeout,
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2,
                },
            },
        )
    except obstore.exceptions.BaseError as exc:
        raise ValueError(f"{settings.describe()}: {_first_line(exc)}") from exc
    return obstore, obstore.exceptions, store
