"""What users attach to resources: metadata, attachments, and patient protection.

Every write is one index transaction with its change entry. Attachment blobs
are written (durably) before the index points at them, and deleted only
after the index has let go of them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.index import Index
from pacsnode.node.index.annotation_keys import (
    FIRST_USER_KEY,
    LAST_USER_KEY,
    MetadataNames,
    check_user_write,
)
from pacsnode.node.revisions import Revision
from pacsnode.storage.attachments import AttachmentInfo, AttachmentStore


class Annotations:
    def __init__(
        self,
        index: Index,
        blobs: AttachmentStore,
        names: MetadataNames,
        attachment_types: dict[str, tuple[int, str]],
    ) -> None:
        self._index = index
        self._blobs = blobs
        self.names = names
        self._types = attachment_types

    # --- metadata ----------------------------------------------------------------------

    def metadata(self, resource_id: str) -> dict[str, str]:
        values = self._index.metadata(resource_id)
        return {self.names.name_of(key): value for key, value in sorted(values.items())}

    def get_metadata(self, resource_id: str, name: str) -> str:
        return self.get_metadata_revision(resource_id, name)[0]

    def get_metadata_revision(self, resource_id: str, name: str) -> tuple[str, Revision]:
        """The value and its revision (see :mod:`pacsnode.node.revisions`)."""
        entry = self._index.metadata_entry(resource_id, self.names.key_of(name))
        if entry is None:
            raise NotFound(f"resource {resource_id} has no metadata {name}")
        return entry

    def set_metadata(
        self,
        resource_id: str,
        name: str,
        value: str,
        if_match: str | None = None,
        check: bool = False,
    ) -> Revision:
        key = self.names.key_of(name)
        check_user_write(key, value)
        return self._index.set_metadata(resource_id, key, value, if_match, check)

    def delete_metadata(
        self, resource_id: str, name: str, if_match: str | None = None, check: bool = False
    ) -> None:
        key = self.names.key_of(name)
        check_user_write(key)
        self._index.delete_metadata(resource_id, key, if_match, check)

    # --- attachments -------------------------------------------------------------------

    def content_type_of(self, name: str) -> int:
        if name in self._types:
            return self._types[name][0]
        try:
            number = int(name)
        except ValueError:
            raise BadRequest(f"unknown attachment {name!r}") from None
        if not FIRST_USER_KEY <= number <= LAST_USER_KEY:
            raise BadRequest("user attachments are numbered 1024..65535")
        return number

    def mime_type_of(self, content_type: int) -> str:
        for number, mime in self._types.values():
            if number == content_type:
                return mime
        return "application/octet-stream"

    def attachment_names(self, resource_id: str) -> list[str]:
        names = {number: name for name, (number, _) in self._types.items()}
        found = self._index.attachments(resource_id)
        return [names.get(number, str(number)) for number in sorted(found)]

    def attachment_info(self, resource_id: str, name: str) -> AttachmentInfo:
        content_type = self.content_type_of(name)
        info = self._index.attachments(resource_id).get(content_type)
        if info is None:
            raise NotFound(f"resource {resource_id} has no attachment {name}")
        fields = {k: v for k, v in info.items() if k not in ("uuid", "revision")}
        return AttachmentInfo(id=info["uuid"], **fields)

    def attachment_revision(self, resource_id: str, name: str) -> Revision:
        content_type = self.content_type_of(name)
        info = self._index.attachments(resource_id).get(content_type)
        if info is None:
            raise NotFound(f"resource {resource_id} has no attachment {name}")
        return Revision(int(info.get("revision", 0)), info["md5"])

    def attachment_data(self, resource_id: str, name: str, *, raw: bool = False) -> bytes:
        info = self.attachment_info(resource_id, name)
        return self._blobs.get(info.id, compressed=info.compressed, raw=raw)

    def blob(self, info: dict[str, Any]) -> bytes:
        """The (uncompressed) content of an attachment, by the info the index keeps."""
        return self._blobs.get(info["uuid"], compressed=info["compressed"])

    def put_attachment(
        self,
        resource_id: str,
        name: str,
        data: bytes,
        compress: bool = True,
        if_match: str | None = None,
        check: bool = False,
    ) -> AttachmentInfo:
        content_type = self.content_type_of(name)
        self._index.attachments(resource_id)  # UnknownResource before a blob is written
        info = self._blobs.put(data, compress=compress)
        stored = asdict(info)
        stored["uuid"] = stored.pop("id")
        try:
            replaced = self._index.set_attachment(
                resource_id, content_type, stored, if_match, check
            )
        except Exception:
            self._blobs.delete(info.id)
            raise
        if replaced:
            self._blobs.delete(replaced)
        return info

    def delete_attachment(
        self, resource_id: str, name: str, if_match: str | None = None, check: bool = False
    ) -> None:
        content_type = self.content_type_of(name)
        blob = self._index.delete_attachment(resource_id, content_type, if_match, check)
        self._blobs.delete(blob)

    # --- protection --------------------------------------------------------------------

    def is_protected(self, patient_id: str) -> bool:
        return self._index.is_protected(patient_id)

    def set_protected(self, patient_id: str, protected: bool) -> None:
        self._index.set_protected(patient_id, protected)
