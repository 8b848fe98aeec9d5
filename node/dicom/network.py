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
    """Presentation contexts to send these instances as they are stored.

    Each (SOP class, stored transfer syntax) gets a context of its own, and each SOP
    class one more with the uncompressed syntaxes: offered together in one context, a
    receiver would pick one syntax for all and a JPEG instance could not be sent on it.
    """
    uncompressed = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    wanted: dict[tuple[str, ...], None] = {}  # ordered set of (SOP class, syntaxes...)
    for ref in refs:
        if not ref.sop_class_uid:
            continue
        if ref.transfer_syntax and ref.transfer_syntax not in uncompressed:
            wanted[(ref.sop_class_uid, ref.transfer_syntax)] = None
        wanted[(ref.sop_class_uid, *uncompressed)] = None
    return [build_context(key[0], list(key[1:])) for key in list(wanted)[:_MAX_CONTEXTS]]
