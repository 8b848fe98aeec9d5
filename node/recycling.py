"""Which patients to recycle so that an incoming instance fits: a pure decision.

The oldest-updated unprotected patient goes first, repeatedly, until what comes
in fits. The patients it belongs to are never candidates; the caller passes
candidates already filtered and ordered oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class StorageMode(StrEnum):
    RECYCLE = "recycle"
    REJECT = "reject"


@dataclass(frozen=True)
class Limits:
    max_size_bytes: int = 0  # 0 = no limit
    max_patients: int = 0  # 0 = no limit
    mode: StorageMode = StorageMode.RECYCLE

    @property
    def enabled(self) -> bool:
        return self.max_size_bytes > 0 or self.max_patients > 0


@dataclass(frozen=True)
class Usage:
    size_bytes: int
    patients: int


def fits(usage: Usage, incoming_size: int, new_patients: int, limits: Limits) -> bool:
    if limits.max_size_bytes and usage.size_bytes + incoming_size > limits.max_size_bytes:
        return False
    patients = usage.patients + new_patients
    return not (limits.max_patients and patients > limits.max_patients)


def choose_victims(
    usage: Usage,
    incoming_size: int,
    new_patients: int,
    limits: Limits,
    candidates: Iterable[tuple[str, int]],
) -> list[str] | None:
    """Patients to delete, oldest first, or ``None`` when the incoming cannot fit.

    ``new_patients`` counts the incoming patients not stored yet. ``candidates`` are
    (patient id, bytes it occupies), oldest update first, unprotected, without the
    incoming patients. In reject mode
    nothing is ever chosen: the instance fits as things are, or not at all.
    """
    if fits(usage, incoming_size, new_patients, limits):
        return []
    if limits.mode is StorageMode.REJECT:
        return None
    chosen: list[str] = []
    size, patients = usage.size_bytes, usage.patients
    for patient_id, patient_size in candidates:
        chosen.append(patient_id)
        size -= patient_size
        patients -= 1
        if fits(Usage(size, patients), incoming_size, new_patients, limits):
            return chosen
    return None
