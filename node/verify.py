"""``pacsnode verify``: the study ZIPs against the index, without changing either."""

from __future__ import annotations

from pacsnode.node.core import NodeCore


def verify(core: NodeCore) -> list[str]:
    """Every problem found, one line each; an empty list means all is well."""
    problems: list[str] = []
    on_disk = set(core.study_uids_on_disk())
    for study_uid in sorted(core.index.indexed_study_uids() - on_disk):
        count = len(core.index.indexed_instances(study_uid))
        problems.append(
            f"study {study_uid}: {count} instances indexed, but the storage backend holds "
            "no study ZIP"
        )
    for study_uid in sorted(on_disk):
        found, stored = core.check_stored_study(study_uid)
        problems.extend(found)
        if found and not stored:
            continue
        indexed = core.index.indexed_instances(study_uid)
        for sop_uid in sorted(stored.keys() - indexed.keys()):
            problems.append(f"instance {sop_uid} of study {study_uid} is stored but not indexed")
        for sop_uid in sorted(indexed.keys() - stored.keys()):
            problems.append(f"instance {sop_uid} of study {study_uid} is indexed but not stored")
        for sop_uid in sorted(indexed.keys() & stored.keys()):
            if indexed[sop_uid].get("digest") != stored[sop_uid]:
                problems.append(f"instance {sop_uid}: stored content differs from the index")
    return problems
