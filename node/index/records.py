"""What the index hands to the rest of the node: plain values, no transactions.

A resource *record* is the JSON dict the index keeps per patient, study, series
and instance (``id``, ``level``, ``parent``, ``tags``, sizes, dates); the
types here name the few shapes that travel further.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pacsnode.node.ids import Level


class OriginKind(StrEnum):
    """How an instance arrived (core metadata ``Origin``, Orthanc's vocabulary)."""

    REST_API = "RestApi"
    DICOM = "DicomProtocol"
    PEER = "Peer"
    IMPORT = "Import"
    RECOVERY = "Recovery"


@dataclass(frozen=True)
class Origin:
    """How an instance arrived; written as core metadata."""

    kind: OriginKind = OriginKind.REST_API
    remote_aet: str = ""
    called_aet: str = ""
    remote_ip: str = ""
    peer: str = ""
    http_username: str = ""  # who uploaded it over REST (empty without authentication)


class DeletionReason(StrEnum):
    """Why a resource left the index (the ``Reason`` of its ``Deleted`` change)."""

    REQUEST = "Request"  # a user asked (REST, CLI)
    RECYCLED = "Recycled"  # room was made for new instances
    PEER = "Peer"  # mirrored from a peer that deleted it
    RECONCILE = "Reconcile"  # the study store no longer has it

    @property
    def mirrored(self) -> bool:
        """Whether peers that mirror deletions repeat it: a user's deletion, or one
        mirrored from a peer (so it goes on along a chain of sites); never recycling
        or reconciliation, which are this node's own business."""
        return self in (DeletionReason.REQUEST, DeletionReason.PEER)


@dataclass(frozen=True)
class InstanceRef:
    """Where an indexed instance is in the study store, and what a sender needs of it."""

    id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""
    #: the transfer syntax it arrived in (and is stored in)
    transfer_syntax: str = ""


@dataclass
class AddedInstance:
    ids: dict[Level, str]
    created: list[Level] = field(default_factory=list)
    replaced: bool = False
    #: how many instances its series holds with it
    series_instances: int = 0


@dataclass
class Removed:
    """What a removal took out of the index."""

    #: study UID -> SOP Instance UIDs removed, for the study store
    instances_by_study: dict[str, set[str]] = field(default_factory=dict)
    #: attachment blob ids to delete once the transaction is committed
    attachment_ids: list[str] = field(default_factory=list)
    #: (level, id, uids) of every resource removed, top-down
    resources: list[tuple[Level, str, dict[str, str]]] = field(default_factory=list)
    #: the id of every resource removed, descendants included
    gone: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResourceAnnotations:
    """A resource's user-visible annotations, as one read returns them."""

    record: dict[str, Any]
    metadata: dict[int, str]
    attachments: dict[int, dict[str, Any]]
    protected: bool
