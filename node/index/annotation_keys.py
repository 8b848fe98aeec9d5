"""Resource metadata keys: core keys the node writes, user keys (>= 1024) users write.

Core key numbers follow Orthanc's where Orthanc has the same key, so scripts
that read ``/instances/{id}/metadata/ReceptionDate`` keep working.
"""

from __future__ import annotations

from enum import IntEnum

from pacsnode.node.errors import BadRequest, ReadOnlyMetadata

FIRST_USER_KEY = 1024
LAST_USER_KEY = 65535
MAX_VALUE_BYTES = 1024


class CoreKey(IntEnum):
    INDEX_IN_SERIES = 1
    RECEPTION_DATE = 2
    REMOTE_AET = 3
    EXPECTED_NUMBER_OF_INSTANCES = 4
    LAST_UPDATE = 7
    ORIGIN = 8
    TRANSFER_SYNTAX = 9
    SOP_CLASS_UID = 10
    REMOTE_IP = 11
    CALLED_AET = 12
    HTTP_USERNAME = 13
    PIXEL_DATA_OFFSET = 14
    PEER = 100


_CORE_NAMES = {
    CoreKey.INDEX_IN_SERIES: "IndexInSeries",
    CoreKey.RECEPTION_DATE: "ReceptionDate",
    CoreKey.REMOTE_AET: "RemoteAET",
    CoreKey.EXPECTED_NUMBER_OF_INSTANCES: "ExpectedNumberOfInstances",
    CoreKey.LAST_UPDATE: "LastUpdate",
    CoreKey.ORIGIN: "Origin",
    CoreKey.TRANSFER_SYNTAX: "TransferSyntax",
    CoreKey.SOP_CLASS_UID: "SopClassUid",
    CoreKey.REMOTE_IP: "RemoteIP",
    CoreKey.CALLED_AET: "CalledAET",
    CoreKey.HTTP_USERNAME: "HttpUsername",
    CoreKey.PIXEL_DATA_OFFSET: "PixelDataOffset",
    CoreKey.PEER: "Peer",
}


class MetadataNames:
    """Symbolic names of core keys and of the configured user keys."""

    def __init__(self, user_names: dict[str, int] | None = None) -> None:
        self._by_name: dict[str, int] = {name: int(key) for key, name in _CORE_NAMES.items()}
        for name, key in (user_names or {}).items():
            if not FIRST_USER_KEY <= key <= LAST_USER_KEY:
                raise ValueError(f"user metadata {name!r} must be {FIRST_USER_KEY}..65535")
            if name in self._by_name:
                raise ValueError(f"metadata name {name!r} is already a core key")
            self._by_name[name] = key
        self._by_key = {key: name for name, key in self._by_name.items()}

    def key_of(self, name_or_number: str) -> int:
        """Resolve ``ReceptionDate``, ``SampleName`` or ``1024`` to a key number."""
        if name_or_number in self._by_name:
            return self._by_name[name_or_number]
        try:
            key = int(name_or_number)
        except ValueError:
            raise BadRequest(f"unknown metadata {name_or_number!r}") from None
        if not 0 < key <= LAST_USER_KEY:
            raise BadRequest(f"metadata key {key} is out of range")
        return key

    def name_of(self, key: int) -> str:
        return self._by_key.get(key, str(key))


def check_user_write(key: int, value: str | None = None) -> None:
    """Refuse writes to core keys and values over 1 KiB (attachments are for that)."""
    if key < FIRST_USER_KEY:
        raise ReadOnlyMetadata(f"metadata {key} is written by the node only")
    if value is not None and len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise BadRequest("metadata values are limited to 1 KiB; use an attachment")
