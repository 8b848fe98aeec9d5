"""Mutual TLS between peers: contexts that verify the pinning root, then fingerprint pins.

Both sides present their node certificate. The TLS layer checks the chain to
the (public) pinning root, validity dates and possession of the private key;
:func:`check_pinned` then accepts only a certificate whose fingerprint is
configured. A shared CA may be added for sites that prefer one.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from pacsnode.peer.errors import UntrustedPeer
from pacsnode.peer.identity import Identity, fingerprint_of, normalize_fingerprint
from pacsnode.peer.pinning_root import ROOT_CERT_PEM

log = logging.getLogger(__name__)


def _context(purpose: ssl.Purpose, identity: Identity, shared_ca: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(identity.cert_path, identity.key_path)
    context.load_verify_locations(cadata=ROOT_CERT_PEM.decode())
    if shared_ca is not None:
        context.load_verify_locations(cafile=shared_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    if purpose is ssl.Purpose.SERVER_AUTH:
        context.check_hostname = False  # peers are identified by fingerprint, not by name
    return context


def server_context(identity: Identity, shared_ca: Path | None = None) -> ssl.SSLContext:
    return _context(ssl.Purpose.CLIENT_AUTH, identity, shared_ca)


def client_context(identity: Identity, shared_ca: Path | None = None) -> ssl.SSLContext:
    return _context(ssl.Purpose.SERVER_AUTH, identity, shared_ca)


def peer_fingerprint(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return fingerprint_of(der) if der else None


def check_pinned(seen: str | None, pinned: dict[str, str]) -> str:
    """The name of the peer whose pinned fingerprint matches ``seen``; else UntrustedPeer.

    ``pinned`` maps peer name to configured fingerprint.
    """
    if seen is None:
        raise UntrustedPeer("no client certificate")
    wanted = normalize_fingerprint(seen)
    for name, fingerprint in pinned.items():
        if normalize_fingerprint(fingerprint) == wanted:
            return name
    log.warning("refused a peer with unknown certificate fingerprint %s", seen)
    raise UntrustedPeer(f"certificate {seen} is not a configured peer", seen)
