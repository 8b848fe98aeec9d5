"""Who may open a DICOM association, and how many at once (issue 13, items 1 and 5).

Three guards, in the order a caller meets them:

1. At accept, before pynetdicom starts a thread (:class:`Slots`, the server's
   ``verify_request``): at most ``max_associations`` connections, ``max_associations_per_host``
   from one address, and the last ``reserved_for_modalities`` slots only for the configured
   modalities' addresses. A connection counts from accept until its association ends,
   negotiated or not: bare TCP connections cannot crowd out a modality.
2. A deadline for the A-ASSOCIATE-RQ (``association_request_timeout_s``): pynetdicom's ACSE
   timeout bounds both its wait for the request and the ARTIM timer, and a socket timeout
   bounds a request sent half. Lifted to pynetdicom's defaults once the request is in.
3. At the A-ASSOCIATE-RQ (:func:`refusal`): the called AE title, then the caller (AE title,
   and the host it connects from when ``check_caller_host``), answered A-ASSOCIATE-RJ with
   the standard reason.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import events

from pacsnode.node import audit
from pacsnode.node.config import is_loopback
from pacsnode.node.registry import Registry
from pacsnode.node.settings import DicomSettings, Modality

log = logging.getLogger(__name__)

#: A-ASSOCIATE-RJ (result, source, diagnostic): rejected permanent, by the service user
CALLING_AET_NOT_RECOGNIZED = (0x01, 0x01, 0x03)
CALLED_AET_NOT_RECOGNIZED = (0x01, 0x01, 0x07)
#: a pending accept whose request thread never reported back stops counting after this
_PENDING_S = 10.0
#: a modality's host name is looked up again on a miss at most this often (DHCP, DNS changes)
_RESOLVE_AGAIN_S = 60.0


def normalized(address: str) -> str:
    """An address as compared: an IPv4-mapped IPv6 address is its IPv4 address."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


def resolve(host: str) -> frozenset[str]:
    """The addresses a modality's host names; empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        log.warning("DICOM: modality host %r does not resolve (%s): it cannot call in", host, exc)
        return frozenset()
    return frozenset(normalized(str(info[4][0])) for info in infos)


@dataclass(frozen=True)
class Caller:
    """What an A-ASSOCIATE-RQ says about its sender."""

    calling_aet: str
    called_aet: str
    address: str


def caller_known(caller: Caller, known: Mapping[str, frozenset[str]], check_host: bool) -> bool:
    """Whether a configured modality has the caller's AE title (and, when ``check_host``,
    one of that modality's addresses is the caller's)."""
    addresses = known.get(caller.calling_aet)
    if addresses is None:
        return False
    return not check_host or normalized(caller.address) in addresses


def refusal(
    caller: Caller, settings: DicomSettings, known: Mapping[str, frozenset[str]]
) -> tuple[tuple[int, int, int], str] | None:
    """The A-ASSOCIATE-RJ reason for this caller and why, or None to negotiate. Unknown
    callers pass when ``accept_unknown_callers`` or ``always_allow_store`` (then the
    query and retrieve handlers refuse them per request)."""
    if settings.check_called_aet and caller.called_aet != settings.aet.strip():
        return CALLED_AET_NOT_RECOGNIZED, f"called AE title {caller.called_aet!r} is not ours"
    if settings.accept_unknown_callers or settings.always_allow_store:
        return None
    if caller_known(caller, known, settings.check_caller_host):
        return None
    where = " from this host" if caller.calling_aet in known else ""
    return (
        CALLING_AET_NOT_RECOGNIZED,
        f"calling AE title {caller.calling_aet!r} is not a known modality{where}",
    )


@dataclass
class KnownCallers:
    """The modalities' AE titles with their hosts' addresses: looked up when the registry
    changes, and again on a miss at most every ``_RESOLVE_AGAIN_S`` (a host name whose address
    changed, as at DHCP sites with dynamic DNS, is followed within a minute)."""

    resolver: Callable[[str], frozenset[str]] = resolve
    clock: Callable[[], float] = time.monotonic
    _by_aet: dict[str, frozenset[str]] = field(default_factory=dict)
    _modalities: tuple[Modality, ...] = ()
    _resolved_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, modalities: Iterable[Modality]) -> None:
        found = tuple(modalities)
        table = self._resolved(found)
        with self._lock:
            self._modalities, self._by_aet, self._resolved_at = found, table, self.clock()

    def _resolved(self, modalities: tuple[Modality, ...]) -> dict[str, frozenset[str]]:
        table: dict[str, frozenset[str]] = {}
        for modality in modalities:
            aet = modality.aet.strip()
            table[aet] = table.get(aet, frozenset()) | self.resolver(modality.host)
        return table

    def table(self) -> dict[str, frozenset[str]]:
        with self._lock:
            return dict(self._by_aet)

    def addresses(self) -> frozenset[str]:
        """Every configured modality's address (the reserved slots are theirs)."""
        with self._lock:
            return frozenset().union(*self._by_aet.values()) if self._by_aet else frozenset()

    def known(self, caller: Caller, check_host: bool) -> bool:
        if caller_known(caller, self.table(), check_host):
            return True
        with self._lock:
            stale = self.clock() - self._resolved_at >= _RESOLVE_AGAIN_S
            modalities = self._modalities
        if not (check_host and stale and caller.calling_aet in self.table()):
            return False
        self.update(modalities)
        return caller_known(caller, self.table(), check_host)


def follow(known: KnownCallers, registry: Registry) -> None:
    """Keep ``known`` as the registry's modalities (REST edits apply at once)."""
    known.update(registry.modalities().values())
    registry.watch(lambda: known.update(registry.modalities().values()))


@dataclass
class Slots:
    """Connections counted from accept to the end of their association (thread-safe; the
    clock is passed in for tests). ``admit`` runs on the server's accepting thread."""

    settings: DicomSettings
    reserved_addresses: Callable[[], frozenset[str]]
    clock: Callable[[], float] = time.monotonic
    #: client (address, port) -> (accepted at, its association once the thread has it)
    _open: dict[tuple[Any, ...], tuple[float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, client: tuple[Any, ...]) -> bool:
        address = normalized(str(client[0]))
        with self._lock:
            self._prune()
            total = len(self._open)
            from_host = sum(1 for key in self._open if normalized(str(key[0])) == address)
            reason = self._full(total, from_host, address)
            if reason is None:
                self._open[tuple(client)] = (self.clock(), None)
        if reason is not None:
            log.warning("DICOM connection from %s closed: %s", address, reason)
        return reason is None

    def _full(self, total: int, from_host: int, address: str) -> str | None:
        limits = self.settings
        if from_host >= limits.max_associations_per_host:
            return f"{from_host} connections from this address already"
        if total >= limits.max_associations:
            return f"all {total} DICOM slots in use"
        free_for_anyone = limits.max_associations - limits.reserved_for_modalities
        if total >= free_for_anyone and address not in self.reserved_addresses():
            return "the remaining DICOM slots are kept for the configured modalities"
        return None

    def opened(self, client: tuple[Any, ...], association: Any) -> None:
        """The request thread made the connection's association: it counts until it ends."""
        with self._lock:
            accepted = self._open.get(tuple(client))
            self._open[tuple(client)] = (accepted[0] if accepted else self.clock(), association)

    def _prune(self) -> None:
        now = self.clock()
        for key, (accepted, association) in list(self._open.items()):
            if association is None:
                if now - accepted > _PENDING_S:
                    del self._open[key]
            elif association.ident is not None and not association.is_alive():
                del self._open[key]

    def in_use(self) -> int:
        with self._lock:
            self._prune()
            return len(self._open)


def on_connection(slots: Slots, deadline_s: float) -> Callable[[events.Event], None]:
    """EVT_CONN_OPEN: count the association, and give it ``deadline_s`` to send its
    A-ASSOCIATE-RQ (pynetdicom would wait its ACSE timeout, 30 s, and a half-sent PDU for
    ever: the accepted socket blocks without a timeout)."""

    def opened(event: events.Event) -> None:
        slots.opened(tuple(event.address), event.assoc)
        event.assoc.acse_timeout = deadline_s
        raw = _raw_socket(event)
        if raw is not None:
            raw.settimeout(deadline_s)

    return opened


def on_request(settings: DicomSettings, known: KnownCallers) -> Callable[[events.Event], None]:
    """EVT_REQUESTED: refuse the caller (A-ASSOCIATE-RJ) or lift the deadline and let
    pynetdicom negotiate (it skips its negotiation when a handler here rejected)."""

    def requested(event: events.Event) -> None:
        association = event.assoc
        try:
            verdict = _verdict(event, settings, known)
        except Exception:  # pynetdicom would log it and negotiate: fail closed instead
            log.exception("DICOM admission failed; refusing the association")
            verdict = CALLING_AET_NOT_RECOGNIZED, "admission check failed"
        if verdict is None:
            association.acse_timeout = association.ae.acse_timeout
            raw = _raw_socket(event)
            if raw is not None:
                raw.settimeout(association.ae.network_timeout)
            return
        # Still under the short deadline: a refused caller that keeps the connection open
        # after the A-ASSOCIATE-RJ is dropped as soon as one that never associated.
        association.acse.send_reject(*verdict[0])
        association.kill()

    return requested


def _verdict(
    event: events.Event, settings: DicomSettings, known: KnownCallers
) -> tuple[tuple[int, int, int], str] | None:
    association = event.assoc
    primitive = association.requestor.primitive
    caller = Caller(
        _text(primitive.calling_ae_title),
        _text(primitive.called_ae_title),
        str(association.requestor.address),
    )
    verdict = refusal(caller, settings, known.table())
    if verdict is not None and verdict[0] == CALLING_AET_NOT_RECOGNIZED:
        # a miss may be a modality whose host name now resolves elsewhere
        if known.known(caller, settings.check_caller_host):
            return None
    if verdict is not None:
        log.warning(
            "DICOM association from %s at %s refused: %s",
            caller.calling_aet,
            caller.address,
            verdict[1],
        )
        audit.dicom_refused(caller.calling_aet, caller.address, caller.called_aet, verdict[1])
    return verdict


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value or "").strip()


def _raw_socket(event: events.Event) -> socket.socket | None:
    return getattr(getattr(event.assoc.dul, "socket", None), "socket", None)


def exposure_lines(
    settings: DicomSettings, modalities: Iterable[Modality]
) -> list[tuple[int, str]]:
    """What ``serve`` says at start about its DICOM exposure: (log level, line)."""
    where = "loopback only" if is_loopback(settings.host) else "EXPOSED beyond loopback"
    names = sorted({m.aet for m in modalities})
    if settings.accept_unknown_callers:
        callers = "any caller may store, query and retrieve"
    elif settings.always_allow_store:
        callers = "anyone may echo and store; only modalities query and retrieve"
    else:
        callers = "only the configured modalities"
    lines = [
        (
            logging.INFO,
            f"DICOM {settings.aet} on {settings.host}:{settings.port} ({where}): {callers}; "
            f"modalities: {', '.join(names) or 'none'}; caller host checked: "
            f"{'yes' if settings.check_caller_host else 'no'}; called AE title checked: "
            f"{'yes' if settings.check_called_aet else 'no'}; at most "
            f"{settings.max_associations} associations ({settings.max_associations_per_host} "
            f"per address, {settings.reserved_for_modalities} kept for modalities)",
        )
    ]
    if not is_loopback(settings.host) and (
        settings.accept_unknown_callers or settings.always_allow_store
    ):
        lines.append(
            (
                logging.WARNING,
                f"DICOM IS EXPOSED ON {settings.host} TO UNKNOWN CALLERS "
                f"({'store, query and retrieve' if settings.accept_unknown_callers else 'store'})"
                ": set [dicom] accept_unknown_callers = false and always_allow_store = false",
            )
        )
    return lines
