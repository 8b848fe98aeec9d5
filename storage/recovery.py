"""Start-up recovery: resolve what a crash left behind.

Every mutation of a study first leaves a durable marker in ``pending/``, so
recovery visits only those studies (plus one listing of each bucket for
half-deleted trees), not the whole archive. After it, every acknowledged
instance is readable and every study ZIP on disk is a complete ZIP.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pacsnode.storage.archive import InstanceSource, open_zip, read_sealed, read_staged
from pacsnode.storage.backends.base import SealedBackend
from pacsnode.storage.durable import (
    fsync_dir,
    is_temp,
    make_dirs_durable,
    remove_durable,
    remove_leftover,
)
from pacsnode.storage.errors import StorageError
from pacsnode.storage.layout import (
    STAGED_SUFFIX,
    is_valid_uid,
    sop_uid_of_received,
    sop_uid_of_staged,
    staging_dir,
    study_dir,
)

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    #: studies a mutation may have left unfinished (a marker was found): they stay
    #: pending until sealed, and whoever indexes them reconciles them first
    pending: list[str] = field(default_factory=list)
    removed_temp_files: int = 0
    #: staged instances that a finished seal had already folded into the study ZIP
    removed_sealed_staging: int = 0
    #: staging ZIPs converted from a received file (not fsynced: converted again)
    removed_converted: int = 0
    #: received files still to convert
    received: int = 0
    #: unreadable files moved aside to ``quarantine/``
    quarantined: list[str] = field(default_factory=list)


def recover(root: Path, backend: SealedBackend) -> RecoveryReport:
    report = RecoveryReport()
    for bucket in sorted((root / "studies").iterdir()):
        report.removed_temp_files += _remove_temps(bucket)
    for marker in sorted((root / "pending").iterdir()):
        if is_temp(marker) or not is_valid_uid(marker.name):
            remove_leftover(marker)
            continue
        _recover_study(root, backend, marker.name, report)
        # The marker stays even when nothing is left staged: whoever wrote to the study
        # (say, a merge not yet indexed) may not have finished, so the study stays
        # pending, for the node to reconcile, until its next seal clears the marker.
        report.pending.append(marker.name)
    return report


def _remove_temps(directory: Path) -> int:
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in directory.iterdir():
        if is_temp(entry):
            remove_leftover(entry)
            removed += 1
    return removed


def _recover_study(
    root: Path, backend: SealedBackend, study_uid: str, report: RecoveryReport
) -> None:
    """Clean one pending study: temp files, staging already sealed, unreadable files."""
    directory = study_dir(root, study_uid)
    report.removed_temp_files += _remove_temps(directory)
    report.removed_temp_files += _remove_temps(staging_dir(root, study_uid))
    try:
        staged_paths = sorted(staging_dir(root, study_uid).iterdir())
    except FileNotFoundError:
        staged_paths = []
    if staged_paths:  # only then does the sealed ZIP matter (and cost a read)
        with _sealed(backend, study_uid) as sealed:
            _sort_staged(root, staged_paths, sealed, report)
    for empty in (staging_dir(root, study_uid), directory):
        try:
            empty.rmdir()
        except OSError:
            pass  # not empty, or absent


@contextlib.contextmanager
def _sealed(backend: SealedBackend, study_uid: str) -> Iterator[dict[str, InstanceSource]]:
    """The instances of the study's sealed ZIP (none if it has none, or it is unreadable)."""
    try:
        blob = backend.get(study_uid)
    except FileNotFoundError:
        yield {}
        return
    with blob:
        try:
            archive = open_zip(blob)
            sealed = read_sealed(archive, study_uid)
        except StorageError as exc:
            # Cannot happen with atomic replaces unless the disk lies; keep it, say so.
            log.error("study %s: sealed ZIP unreadable: %s", study_uid, exc)
            sealed = {}
        yield sealed


def _sort_staged(
    root: Path,
    staged_paths: list[Path],
    sealed: dict[str, InstanceSource],
    report: RecoveryReport,
) -> None:
    """Remove staging files a finished seal already folded in; move unreadable ones aside.

    A received file is whole (fsynced before its rename). If the sealed ZIP holds its
    instance, a seal was cut off while removing its staging: it goes. Otherwise it stays,
    for the node to convert once started, and the staging ZIP converted from it goes: it
    was never fsynced, so after a crash it may hold anything."""
    received = {uid for path in staged_paths if (uid := sop_uid_of_received(path)) is not None}
    for path in staged_paths:
        sop_uid = sop_uid_of_received(path)
        if sop_uid is not None:
            conversion = path.with_suffix(STAGED_SUFFIX)
            if sop_uid in sealed:
                remove_durable(conversion)
                remove_durable(path)
                report.removed_sealed_staging += 1
                continue
            if remove_durable(conversion):
                report.removed_converted += 1
            report.received += 1
            continue
        staged_uid = sop_uid_of_staged(path)
        if staged_uid is None or staged_uid in received:
            continue
        state = _staged_state(path, sealed)
        if state == "sealed":
            remove_durable(path)
            report.removed_sealed_staging += 1
        elif state == "unreadable":
            report.quarantined.append(quarantine(root, path))


def _staged_state(path: Path, sealed: dict[str, InstanceSource]) -> str:
    try:
        with open_zip(path) as staged:
            # The file was fsynced before its rename, so it is whole; reading its
            # directory and metadata is enough (a full CRC pass over every pending
            # study would make each start as slow as reading all of them).
            source = read_staged(staged)
            in_zip = sealed.get(source.sop_uid)
            if in_zip is not None and in_zip.digest == source.digest:
                return "sealed"
            return "staged"
    except Exception:  # any damage at all: move it aside rather than refuse to start
        return "unreadable"


def quarantine(root: Path, path: Path) -> str:
    """Move a file that cannot be read aside, to ``quarantine/`` (durably); say where."""
    target_dir = root / "quarantine"
    make_dirs_durable(target_dir, root)
    target = target_dir / f"{path.parent.parent.name}-{path.name}"
    path.replace(target)
    fsync_dir(target_dir)
    fsync_dir(path.parent)
    log.error("moved unreadable file %s to %s", path, target)
    return str(target)
