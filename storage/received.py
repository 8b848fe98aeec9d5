"""An instance acknowledged on the minimum: its bytes as they came, and the few facts the
index needs, before it is converted to archive-direct entries.

Converting an instance (DICOM JSON of every element, frames split out and deflated, the
P10 layout, a staging ZIP) is most of the CPU an ingest costs, and a sender waits for
it before it sends the next instance. So the store can take an instance in two steps:

1. :func:`receive_instance` parses the file whole (a damaged or truncated file, a
   missing or malformed UID, an unknown transfer syntax are refused here, as before)
   but converts only the top-level elements the caller names; the store writes the
   bytes durably as ``staging/{I}.dcm`` (:meth:`StudyStore.put_received`), and the
   caller indexes the facts and acknowledges.
2. Later, and in another process when there is a core for it, the file is converted
   into its staging ZIP (:meth:`StudyStore.convert_received`). Any read of the study
   before then converts it first, so nothing else ever sees a received file.

Until it is converted, the instance's digest is :data:`RECEIVED_DIGEST_PREFIX` and a
token unique to the file received (the content digest needs the converted entries), and
its stored size is the file's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pacsnode.storage.convert import (
    AVAILABLE_TRANSFER_SYNTAX_KEY,
    BULK_THRESHOLD_BASE64,
    PIXEL_DATA,
    check_pixel_data,
    instance_identity,
    read_p10_located,
)
from pacsnode.storage.deflated import check_inflated_size
from pacsnode.storage.dicom_json import top_level_entries
from pacsnode.storage.errors import InvalidDicom
from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.results import StoredInstance

RECEIVED_DIGEST_PREFIX = "received:"


@dataclass(frozen=True)
class ReceivedInstance:
    """An instance parsed and checked, with the metadata of the tags asked for only."""

    data: bytes
    instance: StoredInstance


def is_received_digest(digest: object) -> bool:
    """Whether a digest is a received file's, not the converted instance's."""
    return isinstance(digest, str) and digest.startswith(RECEIVED_DIGEST_PREFIX)


def receive_instance(data: bytes, limits: ArchiveLimits, tags: frozenset[int]) -> ReceivedInstance:
    """Parse and check ``data`` as :func:`storage.store.prepare_instance` does, but make
    the DICOM JSON of the top-level elements ``tags`` only (their entries are the ones the
    full conversion gives)."""
    check_inflated_size(data, limits)
    dataset, pixel_data_offset = read_p10_located(data)
    study_uid, series_uid, sop_uid, syntax = instance_identity(dataset)
    check_pixel_data(dataset, syntax)
    try:
        metadata: dict[str, Any] = top_level_entries(dataset, tags, BULK_THRESHOLD_BASE64)
    except Exception as exc:  # as split_dataset refuses a value it cannot convert
        raise InvalidDicom(f"cannot convert to DICOM JSON: {exc}") from exc
    if PIXEL_DATA in dataset:
        # where the converted metadata has its frames (the index asks only whether it is there)
        metadata[f"{PIXEL_DATA:08X}"] = {"vr": dataset.get_item(PIXEL_DATA).VR or "OB"}
    metadata[AVAILABLE_TRANSFER_SYNTAX_KEY] = {"vr": "UI", "Value": [syntax]}
    # a token, not a hash: unique per file received, and free
    digest = RECEIVED_DIGEST_PREFIX + uuid.uuid4().hex
    instance = StoredInstance(
        study_uid,
        series_uid,
        sop_uid,
        dict(sorted(metadata.items())),
        digest,
        stored_size=len(data),
        uncompressed_size=len(data),
        pixel_data_offset=pixel_data_offset,
    )
    return ReceivedInstance(data, instance)
