"""The ``[plugins.s3]`` table: what it accepts, and a message naming the key for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from pacsnode.storage.backends.s3_settings import parse_settings

GOOD = {
    "endpoint": "http://127.0.0.1:8333",
    "bucket": "pacs-studies",
    "access_key": "key",
    "secret_key": "secret",
}


def test_defaults_and_normalised_values() -> None:
    settings = parse_settings({**GOOD, "prefix": "/site-a/node1"}, environ={})
    assert settings.prefix == "site-a/node1/"
    assert settings.region == "us-east-1"
    assert settings.cache_mb == 0 and settings.retries == 2
    assert "secret" not in repr(settings)
    assert parse_settings({**GOOD, "endpoint": "https://s3.example.org/"}, {}).endpoint == (
        "https://s3.example.org"
    )


def test_credentials_and_region_from_the_environment() -> None:
    bare = {"bucket": "pacs-studies"}
    environ = {
        "AWS_ACCESS_KEY_ID": "env-key",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_REGION": "eu-west-3",
    }
    settings = parse_settings(bare, environ)
    assert (settings.access_key, settings.secret_key) == ("env-key", "env-secret")
    assert settings.session_token == "token"
    assert settings.region == "eu-west-3"
    assert settings.endpoint is None  # AWS's own


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bucket": None}, "bucket is required"),
        ({"bucket": "Pacs_Studies"}, "not a valid S3 bucket name"),
        ({"bucket": "ab"}, "not a valid S3 bucket name"),
        ({"endpoint": "s3.example.org"}, "http:// or https:// URL"),
        ({"endpoint": "https://s3.example.org/bucket"}, "must have no path"),
        ({"endpoint": 8333}, "endpoint must be a URL"),
        ({"prefix": "a/../b"}, "'..' part"),
        ({"prefix": "a b"}, "prefix 'a b' must be"),
        ({"cache_mb": -1}, "cache_mb must be an integer of at least 0"),
        ({"cache_mb": True}, "cache_mb must be an integer"),
        ({"part_mb": 1}, "part_mb must be an integer of at least 5"),
        ({"timeout_s": 0}, "timeout_s must be a positive number"),
        ({"region": ""}, "region must be a non-empty string"),
        ({"secret_key": None}, "access_key and secret_key go together"),
        ({"bukcet": "x"}, "unknown key.*bukcet"),
    ],
)
def test_bad_settings_name_the_key(change: dict[str, Any], message: str) -> None:
    settings = {key: value for key, value in {**GOOD, **change}.items() if value is not None}
    with pytest.raises(ValueError, match=message):
        parse_settings(settings, environ={})


def test_no_credentials_anywhere() -> None:
    with pytest.raises(ValueError, match="no credentials"):
        parse_settings({"bucket": "pacs-studies"}, environ={})
