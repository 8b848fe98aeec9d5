"""``pacsnode verify``: the study ZIPs against the index, without changing either."""

from __future__ import annotations

import zipfile

from pacsnode.node.core import NodeCore
from pacsnode.node.reconcile import indexed_instances
from pacsnode.storage.errors import StorageError
from pacsnode.storage.layout import study_zip_path


def verify(core: NodeCore) -> list[str]:
    """Every problem found, one line each; an empty list means all is well."""
    problems: list[str] = []
    on_disk = set(core.store.study_uids())
    for study_uid in sorted(on_disk):
        path = study_zip_path(core.store.root, study_uid)
        if path.exists():
            try:
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    problems.append(f"study {study_uid}: damaged entry {bad}")
            except (zipfile.BadZipFile, OSError) as exc:
                problems.append(f"study {study_uid}: unreadable ZIP: {exc}")
                continue
        try:
            stored = core.store.inventory(study_uid)
        except StorageError as exc:
            problems.append(f"study {study_uid}: {exc.message}")
            continue
        indexed = core.read(lambda txn, uid=study_uid: indexed_instances(txn, uid))
        for sop_uid in sorted(stored.keys() - indexed.keys()):
            problems.append(f"instance {sop_uid} of study {study_uid} is stored but not indexed")
        for sop_uid in sorted(indexed.keys() - stored.keys()):
            problems.append(f"instance {sop_uid} of study {study_uid} is indexed but not stored")
        for sop_uid in sorted(indexed.keys() & stored.keys()):
            if indexed[sop_uid].get("digest") != stored[sop_uid]:
                problems.append(f"instance {sop_uid}: stored content differs from the index")
    return problems
