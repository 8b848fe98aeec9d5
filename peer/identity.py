"""A node's TLS identity: its private key and certificate, created on first start.

The node id is the SHA-256 fingerprint of the certificate, written as 16
groups of four hex digits so it can be read aloud and pasted.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pacsnode.peer.pinning_root import ROOT_CERT_PEM, ROOT_KEY_PEM

KEY_FILE = "node.key"
CERT_FILE = "node.crt"
_VALIDITY = datetime.timedelta(days=3650)
_HEX = re.compile(r"[^0-9a-f]")


def fingerprint_of(der: bytes) -> str:
    """``3F2A-91BC-…``: the SHA-256 of a DER certificate, in 16 groups of 4."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "-".join(digest[i : i + 4] for i in range(0, 64, 4))


def normalize_fingerprint(text: str) -> str:
    """Compare fingerprints whatever the case and separators (``:``, ``-``, spaces)."""
    return _HEX.sub("", text.lower())


@dataclass(frozen=True)
class Identity:
    key_path: Path
    cert_path: Path
    fingerprint: str


def _issue(key: ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    root_key = serialization.load_pem_private_key(ROOT_KEY_PEM, password=None)
    root = x509.load_pem_x509_certificate(ROOT_CERT_PEM)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def load_or_create(directory: Path, name: str | None = None) -> Identity:
    """The identity under ``directory``, created (key mode 0600) if there is none."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(key, name or f"pacsnode-{uuid.uuid4().hex[:8]}")
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return Identity(
        key_path, cert_path, fingerprint_of(cert.public_bytes(serialization.Encoding.DER))
    )
