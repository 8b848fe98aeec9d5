"""Settings of a node's core (what the ``[storage]``, ``[metadata]`` and ``[attachments]``
sections of the TOML file hold). Loading and validating the file comes with the node services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from node.recycling import Limits, StorageMode

_MB = 1024 * 1024


class ConflictPolicy(StrEnum):
    """What to do with a second, different instance under a known SOP Instance UID."""

    KEEP = "keep"  # keep the first, report the conflict (default)
    OVERWRITE = "overwrite"
    REJECT = "reject"


@dataclass(frozen=True)
class CoreSettings:
    data_dir: Path
    compression: bool = True
    compression_level: int = 6
    stable_age_s: float = 60.0
    maximum_storage_size_mb: int = 0
    maximum_patient_count: int = 0
    maximum_storage_mode: StorageMode = StorageMode.RECYCLE
    conflict_policy: ConflictPolicy = ConflictPolicy.KEEP
    metadata_names: dict[str, int] = field(default_factory=dict)
    #: symbolic name -> (content type >= 1024, MIME type)
    attachment_types: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def limits(self) -> Limits:
        return Limits(
            self.maximum_storage_size_mb * _MB,
            self.maximum_patient_count,
            self.maximum_storage_mode,
        )
