"""Byte ranges received so far of a transfer whose chunks may arrive in any order.

Ranges are half-open ``(start, end)`` pairs, kept sorted and merged.
"""

from __future__ import annotations

Range = tuple[int, int]


def add_range(ranges: list[Range], start: int, end: int) -> list[Range]:
    """``ranges`` with ``[start, end)`` added, overlapping and touching ranges merged."""
    if end <= start:
        return list(ranges)
    merged: list[Range] = []
    for low, high in sorted([*ranges, (start, end)]):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def missing_ranges(ranges: list[Range], size: int) -> list[Range]:
    """The gaps in ``[0, size)`` that ``ranges`` do not cover."""
    gaps: list[Range] = []
    position = 0
    for low, high in ranges:
        if low > position:
            gaps.append((position, min(low, size)))
        position = max(position, high)
    if position < size:
        gaps.append((position, size))
    return [gap for gap in gaps if gap[0] < gap[1]]


def contiguous_prefix(ranges: list[Range]) -> int:
    """How many bytes from offset 0 have arrived without a gap."""
    return ranges[0][1] if ranges and ranges[0][0] == 0 else 0


def split_range(start: int, end: int, chunk: int) -> list[Range]:
    """``[start, end)`` cut into pieces of at most ``chunk`` bytes."""
    return [(low, min(low + chunk, end)) for low in range(start, end, chunk)]
