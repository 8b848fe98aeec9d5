"""Socket and presentation-context details shared by the node's DICOM server and client."""

from __future__ import annotations

import copy
import logging
import socket
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import ALL_TRANSFER_SYNTAXES, _config, build_context, events
from pynetdicom.presentation import PresentationContext

from pacsnode.node.dicom.reactor import make_event_driven
from pacsnode.node.index import InstanceRef

log = logging.getLogger(__name__)
_MAX_CONTEXTS = 128


def quiet_pynetdicom() -> None:
    """Spare pynetdicom the logging work no one reads: unless its logger is at DEBUG, it
    binds no handlers that describe every PDU and DIMSE message, and pretty-prints no
    identifiers. Both run whatever the logger's level (their lines are then dropped):
    4 to 6 % of the CPU of a C-FIND or a C-STORE."""
    talkative = logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)
    _config.LOG_HANDLER_LEVEL = "standard" if talkative else "none"
    _config.LOG_REQUEST_IDENTIFIERS = talkative
    _config.LOG_RESPONSE_IDENTIFIERS = talkative


class CheaplyCopied(list[PresentationContext]):
    """The server's presentation contexts, as pynetdicom deep-copies them for every
    association: all storage classes times all transfer syntaxes took 0.1 to 0.3 s per
    association that way. The UIDs are immutable, so a copy of each context with its own
    list of syntaxes is as safe, for a fraction of the time."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        copies = []
        for context in self:
            duplicate = copy.copy(context)
            duplicate._transfer_syntax = list(context._transfer_syntax)
            copies.append(duplicate)
        return copies


#: what the node accepts, explicit VR first: pynetdicom picks the acceptor's first syntax
#: the requestor offers, and an explicit VR keeps every element's VR (a C-GET requestor
#: that offers both then receives explicit VR, as from Orthanc)
_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
ACCEPTED_SYNTAXES = [*_UNCOMPRESSED, *(u for u in ALL_TRANSFER_SYNTAXES if u not in _UNCOMPRESSED)]


def set_nodelay(event: events.Event) -> None:
    """Tune a connection as it opens: TCP_NODELAY (without it every small PDU waits ~40 ms
    for a delayed ACK), and reactors woken by their work rather than polling."""
    raw = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    make_event_driven(event.assoc)


def takes_as_stored(dataset: Dataset, contexts: list[PresentationContext]) -> bool:
    """Whether the dataset goes to the peer in its stored transfer syntax: the peer
    accepted that syntax for its SOP class, or it is uncompressed (pynetdicom converts
    between those), or the peer took no uncompressed syntax to decompress it into."""
    accepted = {
        str(syntax)
        for context in contexts
        if context.abstract_syntax == dataset.get("SOPClassUID")
        for syntax in context.transfer_syntax
    }
    stored = str(dataset.file_meta.get("TransferSyntaxUID", ""))
    if not accepted or stored in accepted or stored in _UNCOMPRESSED:
        return True
    return not accepted & set(_UNCOMPRESSED)


def fitted_for(dataset: Dataset, contexts: list[PresentationContext]) -> Dataset:
    """The dataset as the peer accepted its SOP class: as stored when it took that
    transfer syntax, else decompressed when it took only uncompressed ones (a C-GET
    requestor often offers nothing else; pydicom decodes what its installed plugins can).
    When that fails the dataset goes as stored, and that sub-operation fails."""
    if takes_as_stored(dataset, contexts):
        return dataset
    stored = str(dataset.file_meta.get("TransferSyntaxUID", ""))
    try:
        # the same instance, decoded: its SOP Instance UID stays (pydicom would make one)
        dataset.decompress(generate_instance_uid=False)
    except Exception as exc:  # no decoder for it here: sent as stored, refused there
        log.info("cannot decompress %s for a peer without it: %s", stored, exc)
    return dataset


def contexts_for(refs: list[InstanceRef]) -> list[PresentationContext]:
    """Presentation contexts to send these instances as they are stored.

    Each (SOP class, stored transfer syntax) gets a context of its own, and each SOP
    class one more with the uncompressed syntaxes: offered together in one context, a
    receiver would pick one syntax for all and a JPEG instance could not be sent on it.
    """
    uncompressed = _UNCOMPRESSED
    wanted: dict[tuple[str, ...], None] = {}  # ordered set of (SOP class, syntaxes...)
    for ref in refs:
        if not ref.sop_class_uid:
            continue
        if ref.transfer_syntax and ref.transfer_syntax not in uncompressed:
            wanted[(ref.sop_class_uid, ref.transfer_syntax)] = None
        wanted[(ref.sop_class_uid, *uncompressed)] = None
    return [build_context(key[0], list(key[1:])) for key in list(wanted)[:_MAX_CONTEXTS]]
