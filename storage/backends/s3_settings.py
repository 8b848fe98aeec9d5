"""The settings of the ``s3`` storage backend: the ``[plugins.s3]`` table, checked.

Every mistake is a ``ValueError`` whose message names the key, for the operator: the
plugin loader turns it into a start-up error naming the plugin. Credentials may come from
the usual AWS environment variables instead of the file, so they need not be written in it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# S3's bucket naming rules (the common subset every S3-compatible server accepts).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Key prefixes are kept to characters that need no escaping in URLs or listings.
_PREFIX = re.compile(r"[A-Za-z0-9._/-]*")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    #: ``None``: AWS's own endpoint for the region
    endpoint: str | None
    #: "" or a prefix ending in "/": the node's part of the bucket
    prefix: str
    region: str
    access_key: str
    secret_key: str = ""
    session_token: str | None = None
    #: local cache of whole study ZIPs (0: none)
    cache_mb: int = 0
    #: blocks of ZIPs read by ranges (central directories, small entries), shared
    block_cache_mb: int = 4
    #: one request, from connecting to the last byte; parts of uploads count alone
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    #: retries of a failed request (5xx, dropped connection), with backoff
    retries: int = 2
    #: multipart upload part size; a ZIP larger than one part is uploaded in parts
    part_mb: int = 8

    def describe(self) -> str:
        """Where the objects are, for messages (never the credentials)."""
        place = self.endpoint or f"AWS S3 ({self.region})"
        return f"bucket {self.bucket!r} at {place}"

    def __repr__(self) -> str:
        # Keep the secret out of logs and tracebacks that show the settings.
        return f"S3Settings({self.describe()}, prefix={self.prefix!r})"


_KEYS = {
    "endpoint",
    "bucket",
    "prefix",
    "region",
    "access_key",
    "secret_key",
    "session_token",
    "cache_mb",
    "block_cache_mb",
    "timeout_s",
    "connect_timeout_s",
    "retries",
    "part_mb",
}


def parse_settings(
    settings: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> S3Settings:
    """The checked settings; ``ValueError`` naming the first bad key."""
    env = os.environ if environ is None else environ
    unknown = sorted(set(settings) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    access_key, secret_key, token = _credentials(settings, env)
    return S3Settings(
        bucket=_bucket(settings.get("bucket")),
        endpoint=_endpoint(settings.get("endpoint", env.get("AWS_ENDPOINT_URL") or None)),
        prefix=_prefix(settings.get("prefix", "")),
        region=_text(
            settings,
            "region",
            env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        ),
        access_key=access_key,
        secret_key=secret_key,
        session_token=token,
        cache_mb=_integer(settings, "cache_mb", 0, minimum=0),
        block_cache_mb=_integer(settings, "block_cache_mb", 4, minimum=1),
        timeout_s=_seconds(settings, "timeout_s", 60.0),
        connect_timeout_s=_seconds(settings, "connect_timeout_s", 5.0),
        retries=_integer(settings, "retries", 2, minimum=0),
        # S3 refuses parts under 5 MiB (but the last) and more than 10,000 parts.
        part_mb=_integer(settings, "part_mb", 8, minimum=5),
    )


def _credentials(
    settings: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[str, str, str | None]:
    if ("access_key" in settings) != ("secret_key" in settings):
        raise ValueError("access_key and secret_key go together: give both or neither")
    if "access_key" in settings:
        token = settings.get("session_token")
        return (
            _text(settings, "access_key", ""),
            _text(settings, "secret_key", ""),
            None if token is None else _text(settings, "session_token", ""),
        )
    access_key = env.get("AWS_ACCESS_KEY_ID", "")
    secret_key = env.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key:
        raise ValueError(
            "no credentials: set access_key and secret_key, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the node's environment"
        )
    return access_key, secret_key, env.get("AWS_SESSION_TOKEN") or None


def _bucket(value: object) -> str:
    if value is None:
        raise ValueError("bucket is required (the S3 bucket that holds the study ZIPs)")
    if not isinstance(value, str) or not _BUCKET.fullmatch(value) or ".." in value:
        raise ValueError(
            f"bucket {value!r} is not a valid S3 bucket name (3 to 63 lowercase letters, "
            "digits, dots and hyphens)"
        )
    return value


def _endpoint(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"endpoint must be a URL such as 'https://s3.example.org' (got {value!r})")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint {value!r} must be an http:// or https:// URL with a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoint {value!r} must have no path (the bucket is a setting)")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        # Signed requests keep the secret, not the data: studies would cross the network
        # in clear text. Allowed (a closed network), but said.
        log.warning("S3 endpoint %s is plain HTTP: study data is not encrypted in transit", value)
    return value.rstrip("/")


def _prefix(value: object) -> str:
    if not isinstance(value, str) or not _PREFIX.fullmatch(value):
        raise ValueError(
            f"prefix {value!r} must be letters, digits, '.', '_', '-' and '/' (such as 'pacs/')"
        )
    prefix = value.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(f"prefix {value!r} has an empty, '.' or '..' part")
    return f"{prefix}/" if prefix else ""


def _text(settings: Mapping[str, Any], key: str, default: str) -> str:
    value = settings.get(key, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _integer(settings: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = settings.get(key, default)
    # bool is an int in Python, not in TOML's eyes: 'cache_mb = true' is a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer of at least {minimum} (got {value!r})")
    return value


def _seconds(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{key} must be a positive number of seconds (got {value!r})")
    return float(value)
