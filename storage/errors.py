"""Domain errors of the study store, and the root class of every pacsnode error.

Every error carries a machine-readable ``code`` and the statuses that the
edges (REST, DICOM) answer with, so that the mapping lives in one place.
``storage`` knows nothing of HTTP or DIMSE beyond these numbers.
"""

from __future__ import annotations


class DomainError(Exception):
    """Root of every pacsnode error the edges turn into an HTTP or DIMSE status."""

    code = "internal-error"
    http_status = 500
    #: DIMSE C-STORE failure "Out of resources - unable to process"
    dimse_status = 0xC000

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageError(DomainError):
    """Something the study or attachment store cannot do."""

    code = "storage-error"


class InvalidDicom(StorageError):
    """The bytes are not a DICOM instance pydicom can read."""

    code = "invalid-dicom"
    http_status = 400


class NotDicom(InvalidDicom):
    """The bytes do not even start like DICOM (no preamble, no data set): another file."""

    #: "Cannot understand"
    dimse_status = 0xC000


class MissingUid(InvalidDicom):
    """A required UID (study, series, SOP instance, SOP class) is absent."""

    code = "missing-uid"
    #: "Data set does not match SOP class"
    dimse_status = 0xA900


class InvalidUid(InvalidDicom):
    """A UID is not a valid DICOM UID; it would be unsafe as a path."""

    code = "invalid-uid"
    dimse_status = 0xA900


class InstanceTooLarge(InvalidDicom):
    """A file in the deflated transfer syntax would inflate past the configured limits
    (``storage.deflated``); it was not parsed, nothing was stored."""

    code = "instance-too-large"
    http_status = 413
    #: "Refused: Out of resources"
    dimse_status = 0xA700


class InvalidArchive(StorageError):
    """A study ZIP received from elsewhere failed validation; nothing was stored."""

    code = "invalid-archive"
    http_status = 400


class ArchiveTooLarge(InvalidArchive):
    """A ZIP (an upload's or a peer's) would inflate past the configured limits, by the
    sizes it declares or by what it inflates to; nothing of it was stored."""

    code = "archive-too-large"
    http_status = 413


class NotFound(StorageError):
    """The study, series, instance, frame, bulk element or attachment does not exist."""

    code = "not-found"
    http_status = 404


class InvalidAttachmentId(StorageError):
    """An attachment id is not 32 lowercase hex digits."""

    code = "invalid-attachment-id"
    http_status = 400


class StorageFull(StorageError):
    """The disk is full (ENOSPC); the write was refused and nothing was damaged."""

    code = "storage-full"
    http_status = 507
    #: "Refused: Out of resources"
    dimse_status = 0xA700


class BackendUnavailable(StorageError):
    """The storage backend (an object store) did not answer or refused the request: the
    server is down, unreachable, or rejects the credentials. Nothing was changed; the
    same request may succeed later."""

    code = "storage-unavailable"
    http_status = 503
    #: "Refused: Out of resources": the peer may try again later
    dimse_status = 0xA700
