"""What travels with a study between peers besides DICOM: user metadata (keys >= 1024),
user attachments, and patient protection.

Resources are keyed by their ids, which are the same on every node (they derive from
the UIDs). Applying is additive: a key or attachment a node already has is kept, and a
patient protected on either side ends up protected, so repeated syncs converge and
never bounce edits back and forth.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from pacsnode.node.annotations import Annotations
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.index import Index
from pacsnode.node.index.annotation_keys import FIRST_USER_KEY
from pacsnode.peer.annotation_doc import annotations_problem

log = logging.getLogger(__name__)


def collect(index: Index, annotations: Annotations, study_uid: str) -> dict[str, Any]:
    """The annotations of a study, its patient, series and instances."""
    resources: dict[str, Any] = {}
    for found in index.study_annotations(study_uid):
        entry: dict[str, Any] = {}
        user_metadata = {str(k): v for k, v in found.metadata.items() if k >= FIRST_USER_KEY}
        if user_metadata:
            entry["Metadata"] = user_metadata
        if found.attachments:
            entry["Attachments"] = {
                str(kind): {
                    "Compressed": info["compressed"],
                    "Data": base64.b64encode(annotations.blob(info)).decode(),
                }
                for kind, info in found.attachments.items()
            }
        if found.protected:
            entry["Protected"] = True
        if entry:
            resources[found.record["id"]] = {"Level": found.record["level"], **entry}
    return {"Resources": resources}


def _outside(index: Index, resource_id: str, study_uid: str | None) -> bool:
    """Whether a resource is not the study's, its patient's, or one below the study."""
    # A patient's studies include this one; a series' or instance's study is this one.
    return study_uid is not None and study_uid not in index.studies_of(resource_id)


def apply(
    index: Index, annotations: Annotations, document: dict[str, Any], study_uid: str | None = None
) -> int:
    """Add what this node lacks; return how many annotations were added.

    With ``study_uid``, resources outside that study (and its patient) are skipped,
    without saying so to the sender: answering differently would tell it which
    resource ids exist here. Raises BadRequest for a document of the wrong shape.
    """
    problem = annotations_problem(document)
    if problem:
        raise BadRequest(f"bad annotations: {problem}")
    added = 0
    for resource_id, entry in dict(document.get("Resources", {})).items():
        if index.resource(resource_id) is None:
            continue
        if _outside(index, resource_id, study_uid):
            log.warning(
                "annotations for %s name %s, not of that study: skipped", study_uid, resource_id
            )
            continue
        have_metadata = index.metadata(resource_id)
        for key, value in dict(entry.get("Metadata", {})).items():
            if int(key) >= FIRST_USER_KEY and int(key) not in have_metadata:
                annotations.set_metadata(resource_id, str(key), str(value))
                added += 1
        have_attachments = index.attachments(resource_id)
        for kind, attachment in dict(entry.get("Attachments", {})).items():
            if int(kind) >= FIRST_USER_KEY and int(kind) not in have_attachments:
                data = base64.b64decode(attachment["Data"], validate=True)
                annotations.put_attachment(
                    resource_id, str(kind), data, bool(attachment.get("Compressed", True))
                )
                added += 1
        if entry.get("Protected") and entry.get("Level") == Level.PATIENT.value:
            if not annotations.is_protected(resource_id):
                annotations.set_protected(resource_id, True)
                added += 1
    return added
