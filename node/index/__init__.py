"""The LMDB index: everything about stored instances that is not pixel data.

:class:`Index` is the front door; the modules beside it are its parts (the
LMDB environment and transactions, the single writer, the hierarchy, the
lookups, the change feed, the main tags, the annotation keys). The rest of the
node uses :class:`Index` and the plain values in :mod:`.records`, and never
sees LMDB or a transaction.
"""

from pacsnode.node.index.changes import ChangePage, ChangeType
from pacsnode.node.index.front import Index
from pacsnode.node.index.records import (
    AddedInstance,
    DeletionReason,
    InstanceRef,
    Origin,
    OriginKind,
    Removed,
    ResourceAnnotations,
)

__all__ = [
    "AddedInstance",
    "ChangePage",
    "ChangeType",
    "DeletionReason",
    "Index",
    "InstanceRef",
    "Origin",
    "OriginKind",
    "Removed",
    "ResourceAnnotations",
]
