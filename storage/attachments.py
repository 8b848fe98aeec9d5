"""Attachment blobs: opaque bytes by id, optionally zlib-compressed, written crash-safely.

The same semantics as Orthanc's attachments: each blob has an uncompressed
size and MD5 and, when compressed, a compressed size and MD5. The store knows
nothing of what the blobs mean; the index keeps which resource owns which id.

Layout: ``root/attachments/{id[:2]}/{id}``; a compressed blob is a zlib stream.
"""

from __future__ import annotations

import hashlib
import re
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from pacsnode.storage.durable import (
    is_temp,
    make_dirs_durable,
    remove_durable,
    remove_leftover,
    write_atomic,
)
from pacsnode.storage.errors import InvalidAttachmentId, NotFound, StorageError

_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class AttachmentInfo:
    id: str
    compressed: bool
    size: int
    md5: str
    compressed_size: int
    compressed_md5: str


def _check_id(attachment_id: str) -> str:
    if not isinstance(attachment_id, str) or not _ID_PATTERN.fullmatch(attachment_id):
        raise InvalidAttachmentId(f"{attachment_id!r} is not an attachment id")
    return attachment_id


class AttachmentStore:
    def __init__(self, root: Path, *, compression_level: int = 6) -> None:
        self.directory = Path(root) / "attachments"
        self.level = compression_level

    def _path(self, attachment_id: str) -> Path:
        _check_id(attachment_id)
        return self.directory / attachment_id[:2] / attachment_id

    def recover(self) -> int:
        """Remove temp files left by a crash; return how many."""
        removed = 0
        if not self.directory.is_dir():
            return 0
        for bucket in self.directory.iterdir():
            for entry in bucket.iterdir():
                if is_temp(entry):
                    remove_leftover(entry)
                    removed += 1
        return removed

    def put(
        self, data: bytes, *, compress: bool = False, attachment_id: str | None = None
    ) -> AttachmentInfo:
        """Store ``data`` durably under a new (or the given) id."""
        attachment_id = _check_id(attachment_id or uuid.uuid4().hex)
        stored = zlib.compress(data, self.level) if compress else data
        path = self._path(attachment_id)
        make_dirs_durable(path.parent, self.directory.parent)
        write_atomic(path, stored)
        md5 = hashlib.md5(data).hexdigest()
        stored_md5 = hashlib.md5(stored).hexdigest() if compress else md5
        return AttachmentInfo(attachment_id, compress, len(data), md5, len(stored), stored_md5)

    def get(self, attachment_id: str, *, compressed: bool, raw: bool = False) -> bytes:
        """The blob's bytes; with ``raw`` as stored (compressed if it was), else uncompressed."""
        try:
            stored = self._path(attachment_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no attachment {attachment_id}") from None
        if raw or not compressed:
            return stored
        try:
            return zlib.decompress(stored)
        except zlib.error as exc:
            raise StorageError(f"attachment {attachment_id} is damaged: {exc}") from exc

    def delete(self, attachment_id: str) -> bool:
        return remove_durable(self._path(attachment_id))

    def verify(self, info: AttachmentInfo) -> bool:
        """Whether the stored blob still has the MD5 it was stored with."""
        data = self.get(info.id, compressed=info.compressed)
        return hashlib.md5(data).hexdigest() == info.md5
