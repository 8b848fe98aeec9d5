"""Revisions of metadata and attachments, as Orthanc has them (CouchDB's conventions).

Each value carries a revision number, 0 when it is first written and one more at each
change; its ETag is ``"{revision}-{md5 of the value}"``. A reader sends it back in
``If-None-Match`` (304 when unchanged); a writer in ``If-Match``, and the write is
refused (409) when the value changed since, or, with ``check_revisions`` on, when a
value that exists is changed or deleted without one. These are pure functions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pacsnode.node.errors import BadRequest, DomainError

_ETAG = re.compile(r'"?(\d+)-([0-9a-fA-F]+|[^"]*)"?')


class RevisionConflict(DomainError):
    """The value changed since the revision the writer read, or no revision was given."""

    code = "revision-conflict"
    http_status = 409


@dataclass(frozen=True)
class Revision:
    number: int
    md5: str

    @property
    def etag(self) -> str:
        return f'"{self.number}-{self.md5}"'


def md5_of(value: str | bytes) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.md5(data).hexdigest()


def parse_etag(text: str) -> Revision:
    """``"3-abc…"`` (quoted or not) as a Revision; BadRequest when it is not one."""
    match = _ETAG.fullmatch(text.strip())
    if match is None:
        raise BadRequest(f'{text!r} is not a revision ("number-md5")')
    return Revision(int(match.group(1)), match.group(2).lower())


def unchanged(current: Revision, if_none_match: str | None) -> bool:
    """Whether a reader's ``If-None-Match`` names the current revision (answer 304)."""
    return if_none_match is not None and parse_etag(if_none_match) == current


def next_revision(current: Revision | None, if_match: str | None, check: bool) -> int:
    """The revision number a write gets, or RevisionConflict.

    A new value starts at 0. Changing (or deleting) one needs ``If-Match`` with its
    current revision when ``check`` is on; a stale ``If-Match`` is always refused.
    """
    if current is None:
        return 0
    if if_match is None:
        if check:
            raise RevisionConflict("send If-Match with the ETag of the value you change")
        return current.number + 1
    if parse_etag(if_match) != current:
        raise RevisionConflict("the value changed since that revision; read it again")
    return current.number + 1
