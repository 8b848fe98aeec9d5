"""What travels with a study between peers besides DICOM: user metadata (keys >= 1024),
user attachments, and patient protection.

Resources are keyed by their ids, which are the same on every node (they derive from
the UIDs). Applying is additive: a key or attachment a node already has is kept, and a
patient protected on either side ends up protected, so repeated syncs converge and
never bounce edits back and forth.
"""

from __future__ import annotations

import base64
from typing import Any

from pacsnode.node.core import NodeCore
from pacsnode.node.hierarchy import instances_under
from pacsnode.node.ids import Level
from pacsnode.node.index import Txn
from pacsnode.node.metadata import FIRST_USER_KEY


def _resources_of_study(txn: Txn, study_uid: str) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for study_id in txn.lookup_exact(Level.STUDY, "StudyInstanceUID", study_uid):
        study = txn.resource(study_id)
        if study is None:
            continue
        patient = txn.resource(study["parent"]) if study["parent"] else None
        for record in (patient, study):
            if record is not None:
                found[record["id"]] = record
        for series_id in txn.children(study_id):
            series = txn.resource(series_id)
            if series is not None:
                found[series_id] = series
        for instance in instances_under(txn, study_id):
            found[instance["id"]] = instance
    return list(found.values())


def collect(core: NodeCore, study_uid: str) -> dict[str, Any]:
    """The annotations of a study, its patient, series and instances."""

    def read(txn: Txn) -> list[tuple[dict[str, Any], dict[int, str], dict[int, Any], bool]]:
        return [
            (
                r,
                txn.metadata(r["id"]),
                txn.attachments(r["id"]),
                r["level"] == Level.PATIENT.value and txn.is_protected(r["id"]),
            )
            for r in _resources_of_study(txn, study_uid)
        ]

    resources: dict[str, Any] = {}
    for record, metadata, attachments, protected in core.read(read):
        entry: dict[str, Any] = {}
        user_metadata = {str(k): v for k, v in metadata.items() if k >= FIRST_USER_KEY}
        if user_metadata:
            entry["Metadata"] = user_metadata
        if attachments:
            entry["Attachments"] = {
                str(kind): {
                    "Compressed": info["compressed"],
                    "Data": base64.b64encode(
                        core.blobs.get(info["uuid"], compressed=info["compressed"])
                    ).decode(),
                }
                for kind, info in attachments.items()
            }
        if protected:
            entry["Protected"] = True
        if entry:
            resources[record["id"]] = {"Level": record["level"], **entry}
    return {"Resources": resources}


def apply(core: NodeCore, document: dict[str, Any]) -> int:
    """Add what this node lacks; return how many annotations were added."""
    added = 0
    resources = document.get("Resources", {})
    if not isinstance(resources, dict):
        return 0
    for resource_id, entry in resources.items():
        if not isinstance(entry, dict) or core.read(lambda t, r=resource_id: t.resource(r)) is None:
            continue
        have_metadata = core.read(lambda t, r=resource_id: t.metadata(r))
        for key, value in dict(entry.get("Metadata", {})).items():
            if int(key) >= FIRST_USER_KEY and int(key) not in have_metadata:
                core.annotations.set_metadata(resource_id, str(key), str(value))
                added += 1
        have_attachments = core.read(lambda t, r=resource_id: t.attachments(r))
        for kind, attachment in dict(entry.get("Attachments", {})).items():
            if int(kind) >= FIRST_USER_KEY and int(kind) not in have_attachments:
                data = base64.b64decode(attachment["Data"], validate=True)
                core.annotations.put_attachment(
                    resource_id, str(kind), data, bool(attachment.get("Compressed", True))
                )
                added += 1
        if entry.get("Protected") and entry.get("Level") == Level.PATIENT.value:
            if not core.annotations.is_protected(resource_id):
                core.annotations.set_protected(resource_id, True)
                added += 1
    return added
