"""The shape of an annotations document exchanged between peers, checked before use.

``{"Resources": {id: {"Level", "Metadata": {key: value}, "Attachments": {key:
{"Compressed", "Data"}}, "Protected"}}}``: keys are decimal numbers, values strings,
attachment data base64. Checking it whole first lets a bad document be refused with
a 400 that names the problem, instead of failing halfway with a Python error.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any


def _is_key(key: object) -> bool:
    return isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 6


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return "each resource is a JSON object"
    if not isinstance(entry.get("Level", ""), str):
        return "Level is a string"
    if not isinstance(entry.get("Protected", False), bool):
        return "Protected is true or false"
    metadata = entry.get("Metadata", {})
    if not isinstance(metadata, dict):
        return "Metadata is a JSON object"
    for key, value in metadata.items():
        if not _is_key(key) or not isinstance(value, str):
            return "Metadata maps numeric keys to strings"
    attachments = entry.get("Attachments", {})
    if not isinstance(attachments, dict):
        return "Attachments is a JSON object"
    for key, attachment in attachments.items():
        if not _is_key(key) or not isinstance(attachment, dict):
            return "Attachments maps numeric keys to objects"
        if not isinstance(attachment.get("Compressed", True), bool):
            return "an attachment's Compressed is true or false"
        data = attachment.get("Data")
        if not isinstance(data, str):
            return "an attachment's Data is base64"
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return "an attachment's Data is base64"
    return None


def annotations_problem(document: Any) -> str | None:
    """What is wrong with an annotations document, or ``None`` when it can be applied."""
    if not isinstance(document, dict):
        return "annotations are a JSON object"
    resources = document.get("Resources", {})
    if not isinstance(resources, dict):
        return "Resources is a JSON object of resource ids"
    for resource_id, entry in resources.items():
        if not isinstance(resource_id, str) or len(resource_id) > 128:
            return "Resources is keyed by resource ids"
        problem = _entry_problem(entry)
        if problem:
            return problem
    return None
