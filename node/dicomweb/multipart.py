"""Writing ``multipart/related`` answers: headers and parts, for bodies built or streamed."""

from __future__ import annotations

import secrets

from pacsnode.storage.multipart import Part


def new_boundary(parts: list[bytes] | None = None) -> str:
    """A fresh boundary (random, so it cannot be predicted into a payload)."""
    while True:
        boundary = f"pacsnode-{secrets.token_hex(16)}"
        marker = f"--{boundary}".encode("ascii")
        if not parts or all(marker not in part for part in parts):
            return boundary


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


def part_head(
    boundary: str, media_type: str, transfer_syntax: str = "", location: str = ""
) -> bytes:
    head = f"--{boundary}\r\nContent-Type: {media_type}"
    if transfer_syntax:
        head += f"; transfer-syntax={transfer_syntax}"
    if location:
        head += f"\r\nContent-Location: {location}"
    return (head + "\r\n\r\n").encode("ascii")


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


def body_of_parts(parts: list[Part]) -> tuple[bytes, str]:
    """Several stored parts as one multipart body; (body, boundary)."""
    payloads = [part.payload for part in parts]
    boundary = new_boundary(payloads)
    chunks: list[bytes] = []
    for part in parts:
        chunks.append(part_head(boundary, part.media_type, part.transfer_syntax))
        chunks.append(part.payload)
        chunks.append(b"\r\n")
    chunks.append(closing(boundary))
    return b"".join(chunks), boundary
