"""The revision rules of metadata and attachments: pure functions."""

from __future__ import annotations

import pytest

from pacsnode.node.errors import BadRequest
from pacsnode.node.revisions import (
    Revision,
    RevisionConflict,
    md5_of,
    next_revision,
    parse_etag,
    unchanged,
)

HELLO = Revision(0, md5_of("hello"))


def test_etags_parse_quoted_or_not() -> None:
    assert HELLO.etag == '"0-5d41402abc4b2a76b9719d911017c592"'
    assert parse_etag(HELLO.etag) == parse_etag("0-5d41402abc4b2a76b9719d911017c592") == HELLO
    for malformed in ('"aaa"', '"aaa-bbb"', "", "-1-x"):
        with pytest.raises(BadRequest):
            parse_etag(malformed)


def test_unchanged_only_for_the_same_revision_and_content() -> None:
    assert unchanged(HELLO, HELLO.etag)
    assert not unchanged(HELLO, '"1-5d41402abc4b2a76b9719d911017c592"')
    assert not unchanged(HELLO, '"0-aaa"')
    assert not unchanged(HELLO, None)


def test_writes_and_their_revisions() -> None:
    assert next_revision(None, None, check=True) == 0  # a new value
    assert next_revision(HELLO, None, check=False) == 1  # no checking asked
    assert next_revision(HELLO, HELLO.etag, check=True) == 1
    with pytest.raises(RevisionConflict):
        next_revision(HELLO, None, check=True)
    for stale in ("45-5d41402abc4b2a76b9719d911017c592", "0-tata"):
        with pytest.raises(RevisionConflict):
            next_revision(HELLO, stale, check=False)
