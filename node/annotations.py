"""What users attach to resources: metadata, attachments, and patient protection.

Every write is one index transaction with its change entry. Attachment blobs
are written (durably) before the index points at them, and deleted only
after the index has let go of them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pacsnode.node import changes
from pacsnode.node.errors import BadRequest, NotFound, UnknownResource
from pacsnode.node.hierarchy import TOTAL_SIZE
from pacsnode.node.ids import Level
from pacsnode.node.index import Index, Txn, now_string
from pacsnode.node.metadata import FIRST_USER_KEY, LAST_USER_KEY, MetadataNames, check_user_write
from pacsnode.node.writer import IndexWriter
from pacsnode.storage.attachments import AttachmentInfo, AttachmentStore


def _record(txn: Txn, resource_id: str) -> dict[str, Any]:
    record = txn.resource(resource_id)
    if record is None:
        raise UnknownResource(f"no resource {resource_id}")
    return record


def _metadata_of(txn: Txn, resource_id: str) -> dict[int, str]:
    _record(txn, resource_id)
    return txn.metadata(resource_id)


def _attachments_of(txn: Txn, resource_id: str) -> dict[int, dict[str, Any]]:
    _record(txn, resource_id)
    return txn.attachments(resource_id)


def _log_update(txn: Txn, record: dict[str, Any], change_type: changes.ChangeType) -> None:
    changes.append(txn, change_type, Level(record["level"]), record["id"], now_string())


class Annotations:
    def __init__(
        self,
        index: Index,
        writer: IndexWriter,
        blobs: AttachmentStore,
        names: MetadataNames,
        attachment_types: dict[str, tuple[int, str]],
    ) -> None:
        self._index = index
        self._writer = writer
        self._blobs = blobs
        self.names = names
        self._types = attachment_types

    # --- metadata ----------------------------------------------------------------------

    def metadata(self, resource_id: str) -> dict[str, str]:
        values = self._index.read(lambda txn: _metadata_of(txn, resource_id))
        return {self.names.name_of(key): value for key, value in sorted(values.items())}

    def get_metadata(self, resource_id: str, name: str) -> str:
        key = self.names.key_of(name)
        value = self._index.read(lambda txn: _metadata_of(txn, resource_id).get(key))
        if value is None:
            raise NotFound(f"resource {resource_id} has no metadata {name}")
        return value

    def set_metadata(self, resource_id: str, name: str, value: str) -> None:
        key = self.names.key_of(name)
        check_user_write(key, value)

        def write(txn: Txn) -> None:
            record = _record(txn, resource_id)
            txn.set_metadata(resource_id, key, value)
            _log_update(txn, record, changes.ChangeType.UPDATED_METADATA)

        self._writer.run(write)

    def delete_metadata(self, resource_id: str, name: str) -> None:
        key = self.names.key_of(name)
        check_user_write(key)

        def write(txn: Txn) -> None:
            record = _record(txn, resource_id)
            if not txn.delete_metadata(resource_id, key):
                raise NotFound(f"resource {resource_id} has no metadata {name}")
            _log_update(txn, record, changes.ChangeType.UPDATED_METADATA)

        self._writer.run(write)

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
        found = self._index.read(lambda txn: _attachments_of(txn, resource_id))
        return [names.get(number, str(number)) for number in sorted(found)]

    def attachment_info(self, resource_id: str, name: str) -> AttachmentInfo:
        content_type = self.content_type_of(name)
        info = self._index.read(lambda txn: _attachments_of(txn, resource_id)).get(content_type)
        if info is None:
            raise NotFound(f"resource {resource_id} has no attachment {name}")
        fields = {k: v for k, v in info.items() if k != "uuid"}
        return AttachmentInfo(id=info["uuid"], **fields)

    def attachment_data(self, resource_id: str, name: str, *, raw: bool = False) -> bytes:
        info = self.attachment_info(resource_id, name)
        return self._blobs.get(info.id, compressed=info.compressed, raw=raw)

    def put_attachment(
        self, resource_id: str, name: str, data: bytes, compress: bool = True
    ) -> AttachmentInfo:
        content_type = self.content_type_of(name)
        self._index.read(lambda txn: _record(txn, resource_id))
        info = self._blobs.put(data, compress=compress)

        def write(txn: Txn) -> str | None:
            record = _record(txn, resource_id)
            old = txn.attachments(resource_id).get(content_type)
            stored = asdict(info)
            stored["uuid"] = stored.pop("id")
            txn.set_attachment(resource_id, content_type, stored)
            txn.add_to_counter(
                TOTAL_SIZE, info.compressed_size - (old["compressed_size"] if old else 0)
            )
            _log_update(txn, record, changes.ChangeType.UPDATED_ATTACHMENT)
            return old["uuid"] if old else None

        try:
            replaced = self._writer.run(write)
        except Exception:
            self._blobs.delete(info.id)
            raise
        if replaced:
            self._blobs.delete(replaced)
        return info

    def delete_attachment(self, resource_id: str, name: str) -> None:
        content_type = self.content_type_of(name)

        def write(txn: Txn) -> str:
            record = _record(txn, resource_id)
            old = txn.attachments(resource_id).get(content_type)
            if old is None:
                raise NotFound(f"resource {resource_id} has no attachment {name}")
            txn.delete_attachment(resource_id, content_type)
            txn.add_to_counter(TOTAL_SIZE, -old["compressed_size"])
            _log_update(txn, record, changes.ChangeType.UPDATED_ATTACHMENT)
            return str(old["uuid"])

        self._blobs.delete(self._writer.run(write))

    # --- protection --------------------------------------------------------------------

    def is_protected(self, patient_id: str) -> bool:
        return self._index.read(
            lambda txn: self._patient(txn, patient_id) is not None and txn.is_protected(patient_id)
        )

    def set_protected(self, patient_id: str, protected: bool) -> None:
        def write(txn: Txn) -> None:
            self._patient(txn, patient_id)
            if txn.is_protected(patient_id) != protected:
                txn.set_protected(patient_id, protected)
                changes.append(
                    txn,
                    changes.ChangeType.NEW_PROTECTION,
                    Level.PATIENT,
                    patient_id,
                    now_string(),
                    Protected=protected,
                )

        self._writer.run(write)

    @staticmethod
    def _patient(txn: Txn, patient_id: str) -> dict[str, Any]:
        record = _record(txn, patient_id)
        if record["level"] != Level.PATIENT.value:
            raise BadRequest("protection is set on patients only")
        return record
