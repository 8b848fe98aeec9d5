"""Reading ``Accept`` headers and choosing how to send a stored part: pure functions.

WADO-RS asks for frames, bulk data and instances as ``multipart/related; type=...;
transfer-syntax=...`` (or, for one frame, the bare media type). pacsnode sends what is
stored and never transcodes, so the choice is whether the stored representation is one the
client accepts, and whether as multipart or as a single part.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pacsnode.node.dicomweb.errors import NotAcceptable

MULTIPART = "multipart/related"
ANY = "*/*"
OCTET_STREAM = "application/octet-stream"
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
#: transfer syntaxes whose frames are plain pixel bytes, sent as application/octet-stream
_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}


@dataclass(frozen=True)
class Accepted:
    """One entry of an Accept header."""

    media_type: str
    #: for multipart/related: the ``type`` parameter (``None``: any)
    part_type: str | None = None
    #: the ``transfer-syntax`` parameter (``None``: the media type's default; ``*``: any)
    transfer_syntax: str | None = None
    quality: float = 1.0


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    if '"' not in text:  # the common case, without walking each character
        return [part.strip() for part in text.split(separator) if part.strip()]
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_accept(header: str | None) -> list[Accepted]:
    """The entries of an Accept header, best first; ``*/*`` when there is none."""
    return list(_parsed_accept(header or ""))


@functools.lru_cache(maxsize=128)  # a viewer sends the same header with every frame
def _parsed_accept(header: str) -> tuple[Accepted, ...]:
    if not header.strip():
        return (Accepted(ANY),)
    entries = []
    for item in _split_outside_quotes(header, ","):
        fields = _split_outside_quotes(item, ";")
        media_type = fields[0].lower()
        params: dict[str, str] = {}
        for field in fields[1:]:
            name, _, value = field.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        part_type = params.get("type")
        entries.append(
            Accepted(
                media_type,
                part_type.lower() if part_type else None,
                params.get("transfer-syntax"),
                quality,
            )
        )
    return tuple(sorted((e for e in entries if e.quality > 0), key=lambda e: -e.quality))


def _type_matches(wanted: str | None, media_type: str) -> bool:
    if wanted is None or wanted in (ANY, "*"):
        return True
    if wanted.endswith("/*"):
        return media_type.startswith(wanted[:-1])
    return wanted == media_type.lower()


def _syntax_matches(wanted: str | None, media_type: str, transfer_syntax: str) -> bool:
    if wanted is None:
        # No syntax named: each media type has a default. Native pixels are the default
        # of application/octet-stream; a compressed type names its own family.
        return media_type != OCTET_STREAM or not transfer_syntax or transfer_syntax in _NATIVE
    return wanted == "*" or wanted == transfer_syntax


@dataclass(frozen=True)
class Choice:
    """How to send: as multipart/related (with parts of ``media_type``) or one bare body."""

    multipart: bool
    media_type: str


def choose_part(
    accepted: list[Accepted], media_type: str, transfer_syntax: str, *, single: bool = True
) -> Choice:
    """How to send parts stored as ``media_type`` in ``transfer_syntax``.

    ``single``: whether a bare (non-multipart) body is possible (one frame, one bulk
    element). Raises :class:`NotAcceptable` when no entry accepts what is stored.
    """
    for entry in accepted:
        if entry.media_type == ANY:
            return Choice(True, media_type)
        if entry.media_type in (MULTIPART, "multipart/*"):
            if _type_matches(entry.part_type, media_type) and _syntax_matches(
                entry.transfer_syntax, media_type, transfer_syntax
            ):
                return Choice(True, media_type)
            if entry.part_type == OCTET_STREAM and entry.transfer_syntax == "*":
                # "any syntax" (OHIF's default Accept) takes compressed frames as they are
                return Choice(True, media_type)
        if single and _type_matches(entry.media_type, media_type):
            if _syntax_matches(entry.transfer_syntax, media_type, transfer_syntax):
                return Choice(False, media_type)
    wanted = ", ".join(_describe(entry) for entry in accepted)
    raise NotAcceptable(
        f"stored as {media_type} (transfer syntax {transfer_syntax or 'unknown'}), which the "
        f"request does not accept ({wanted}); pacsnode sends what it stores, without "
        "transcoding: ask for transfer-syntax=*"
    )


def _describe(entry: Accepted) -> str:
    text = entry.media_type
    if entry.part_type:
        text += f"; type={entry.part_type}"
    if entry.transfer_syntax:
        text += f"; transfer-syntax={entry.transfer_syntax}"
    return text


def accepts_dicom(accepted: list[Accepted], transfer_syntax: str) -> bool:
    """Whether instances stored in ``transfer_syntax`` may go out as application/dicom."""
    for entry in accepted:
        if entry.media_type == ANY:
            return True
        if entry.media_type == DICOM or (
            entry.media_type in (MULTIPART, "multipart/*") and _type_matches(entry.part_type, DICOM)
        ):
            # Without a syntax named, send as stored: every client we know of wants that,
            # and the alternative (transcoding to Explicit VR Little Endian) is not offered.
            if entry.transfer_syntax in (None, "*", transfer_syntax):
                return True
    return False


def accepts_json(accepted: list[Accepted]) -> bool:
    return any(
        entry.media_type in (ANY, DICOM_JSON, "application/json", "application/*")
        for entry in accepted
    )
