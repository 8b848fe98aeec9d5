"""Node identity and mutual TLS with pinned fingerprints, over real sockets."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pacsnode.peer.errors import PeerError, UntrustedPeer
from pacsnode.peer.identity import Identity, load_or_create, normalize_fingerprint
from pacsnode.peer.tls import check_pinned, client_context, peer_fingerprint, server_context


def test_identity_is_created_once_with_a_private_key_file(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "id")
    assert (first.key_path.stat().st_mode & 0o777) == 0o600
    assert len(first.fingerprint.split("-")) == 16
    assert load_or_create(tmp_path / "id") == first


def test_fingerprints_compare_whatever_the_notation() -> None:
    assert normalize_fingerprint("AB:CD-ef 01") == normalize_fingerprint("abcdef01")
    assert check_pinned("ABCD-EF01", {"siteb": "ab:cd:ef:01"}) == "siteb"
    with pytest.raises(UntrustedPeer) as refused:
        check_pinned("1234-5678", {"siteb": "ab:cd:ef:01"})
    assert refused.value.fingerprint == "1234-5678"
    assert isinstance(refused.value, PeerError) and not refused.value.transient
    with pytest.raises(UntrustedPeer, match="no client certificate"):
        check_pinned(None, {"siteb": "ab"})


def handshake(server: Identity, client: ssl.SSLContext) -> tuple[str | None, str | None]:
    """(what the server saw or its error, what the client saw or its error)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: dict[str, str | None] = {}

    def accept() -> None:
        connection, _ = listener.accept()
        try:
            wrapped = server_context(server).wrap_socket(connection, server_side=True)
            seen["server"] = peer_fingerprint(wrapped)
            wrapped.close()
        except ssl.SSLError as exc:
            seen["server"] = f"error: {exc.reason}"
            connection.close()

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        wrapped = client.wrap_socket(socket.create_connection(("127.0.0.1", port)))
        seen["client"] = peer_fingerprint(wrapped)
        wrapped.recv(1)
        wrapped.close()
    except (ssl.SSLError, OSError) as exc:
        seen.setdefault("client", f"error: {exc}")
    thread.join()
    listener.close()
    return seen.get("server"), seen.get("client")


def test_mutual_tls_between_nodes(tmp_path: Path) -> None:
    site_a, site_b = load_or_create(tmp_path / "a"), load_or_create(tmp_path / "b")
    server_saw, client_saw = handshake(site_a, client_context(site_b))
    assert server_saw == site_b.fingerprint and client_saw == site_a.fingerprint


def test_client_without_certificate_is_refused(tmp_path: Path) -> None:
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname, bare.verify_mode = False, ssl.CERT_NONE
    server_saw, _ = handshake(load_or_create(tmp_path / "a"), bare)
    assert server_saw is not None and server_saw.startswith("error")


def test_foreign_self_signed_certificate_is_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    intruder = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    intruder.check_hostname, intruder.verify_mode = False, ssl.CERT_NONE
    intruder.load_cert_chain(cert_path, key_path)
    server_saw, _ = handshake(load_or_create(tmp_path / "a"), intruder)
    assert server_saw is not None and server_saw.startswith("error")
