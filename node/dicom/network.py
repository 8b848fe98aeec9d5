"""Socket and presentation-context details shared by the node's DICOM server and client."""

from __future__ import annotations

import socket

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, events
from pynetdicom.presentation import PresentationContext

from pacsnode.node.index import InstanceRef

_MAX_CONTEXTS = 128


def set_nodelay(event: events.Event) -> None:
    """Without TCP_NODELAY every small PDU waits ~40 ms for a delayed ACK."""
    raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def contexts_for(refs: list[InstanceRef]) -> list[PresentationContext]:
    """Each SOP class in its stored transfer syntax, with the uncompressed ones as fallback."""
    syntaxes: dict[str, list[str]] = {}
    for ref in refs:
        if not ref.sop_class_uid:
            continue
        wanted = syntaxes.setdefault(
            ref.sop_class_uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
        if ref.transfer_syntax and ref.transfer_syntax not in wanted:
            wanted.insert(0, ref.transfer_syntax)
    return [
        build_context(sop_class, wanted)
        for sop_class, wanted in list(syntaxes.items())[:_MAX_CONTEXTS]
    ]
