"""Domain errors of the node. Each knows its HTTP and DIMSE status; the edges map them.

The storage layer's errors (``storage.errors``) share the same root,
:class:`DomainError`, so one handler at each edge covers both.
"""

from __future__ import annotations

from pacsnode.storage.errors import DomainError, NotFound, StorageFull

__all__ = [
    "BadRequest",
    "ConfigError",
    "DomainError",
    "InstanceConflict",
    "NotFound",
    "ReadOnlyMetadata",
    "SearchUnavailable",
    "StorageFull",
    "UnknownResource",
]


class BadRequest(DomainError):
    """The request is malformed: an unknown level, key, query or value."""

    code = "bad-request"
    http_status = 400
    dimse_status = 0xA900


class UnknownResource(NotFound):
    """No patient, study, series or instance has this id."""

    code = "unknown-resource"


class ReadOnlyMetadata(DomainError):
    """Core metadata (keys below 1024) is written by the node only."""

    code = "read-only-metadata"
    http_status = 403


class InstanceConflict(DomainError):
    """Same SOP Instance UID, different content, and the policy refuses it."""

    code = "instance-conflict"
    http_status = 409
    #: "Refused: SOP class not supported" is wrong here; 0xA900 "does not match" is closest
    dimse_status = 0xA900


class ConfigError(DomainError):
    """The configuration file is unreadable or has a wrong key or value."""

    code = "invalid-config"
    http_status = 500


class SearchUnavailable(DomainError):
    """Search over every attribute is off (``[search] enabled = false``) or not running."""

    code = "search-unavailable"
    http_status = 503
