"""The node as a query/retrieve client: C-FIND, C-MOVE and C-GET to a modality.

What Orthanc's ``/modalities/{name}/query``, ``/move`` and ``/get`` and the
``/queries`` answers' ``/retrieve`` do. Queries use the Study Root information
model (Patient Root at patient level); answers come back as pydicom Datasets.
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pynetdicom import StoragePresentationContexts, build_context, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacsnode.node.core import NodeCore
from pacsnode.node.dicom.scu import RemoteDicomError, associate
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.ids import Level
from pacsnode.node.index import Origin, OriginKind
from pacsnode.node.settings import Modality

log = logging.getLogger(__name__)
DICOM_LEVELS = {
    Level.PATIENT: "PATIENT",
    Level.STUDY: "STUDY",
    Level.SERIES: "SERIES",
    Level.INSTANCE: "IMAGE",
}
#: what identifies an answer at each level (sent back with a retrieve)
IDENTIFIERS = {
    Level.PATIENT: ("PatientID",),
    Level.STUDY: ("StudyInstanceUID",),
    Level.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
    Level.INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
_PENDING = (0xFF00, 0xFF01)
_MOVE_OK = (0x0000, 0xB000)


def identifier(level: Level, query: dict[str, Any]) -> Dataset:
    """The C-FIND identifier: the query's keys (``*`` or empty: return it) and the level's
    identifying keys, which every answer must carry."""
    found = Dataset()
    found.QueryRetrieveLevel = DICOM_LEVELS[level]
    for keyword, value in query.items():
        if not isinstance(value, str):
            raise BadRequest(f"the value of {keyword} must be a string")
        try:
            setattr(found, keyword, _typed(keyword, value))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise BadRequest(f"cannot query {keyword!r}: {exc}") from None
    for keyword in IDENTIFIERS[level]:
        if keyword not in found:
            setattr(found, keyword, "")
    return found


_BINARY_NUMBERS = {"US": int, "UL": int, "SS": int, "SL": int, "FL": float, "FD": float}


def _typed(keyword: str, value: str) -> Any:
    """Text as the attribute's VR holds it: binary numbers are numbers (or empty)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise BadRequest(f"unknown DICOM keyword {keyword!r}")
    kind = _BINARY_NUMBERS.get(dictionary_VR(tag))
    if kind is None:
        return value
    return kind(value) if value.strip() not in ("", "*") else None


def find(aet: str, modality: Modality, level: Level, query: dict[str, Any]) -> list[Dataset]:
    model = (
        PatientRootQueryRetrieveInformationModelFind
        if level is Level.PATIENT
        else StudyRootQueryRetrieveInformationModelFind
    )
    association = associate(aet, modality, [build_context(model)])
    answers: list[Dataset] = []
    try:
        for status, answer in association.send_c_find(identifier(level, query), model):
            if status and status.Status in _PENDING and answer is not None:
                answers.append(answer)
            elif not status or status.Status != 0x0000:
                raise RemoteDicomError(f"{modality.aet} refused the C-FIND")
    finally:
        association.release()
    return answers


def _retrieve_identifier(level: Level, keys: dict[str, str]) -> Dataset:
    found = Dataset()
    found.QueryRetrieveLevel = DICOM_LEVELS[level]
    for keyword in IDENTIFIERS[level]:
        value = keys.get(keyword)
        if not value:
            raise BadRequest(f"a {level.value.lower()} to retrieve needs its {keyword}")
        setattr(found, keyword, value)
    return found


def move(aet: str, modality: Modality, level: Level, keys: dict[str, str], target: str) -> None:
    """C-MOVE what ``keys`` identify from the modality to the AE title ``target``."""
    model = StudyRootQueryRetrieveInformationModelMove
    association = associate(aet, modality, [build_context(model)])
    try:
        responses = association.send_c_move(_retrieve_identifier(level, keys), target, model)
        _until_done(responses, f"{modality.aet} could not move it to {target}")
    finally:
        association.release()


def _until_done(responses: Any, failure: str) -> None:
    """Read C-MOVE or C-GET responses to the end; RemoteDicomError unless it succeeded."""
    for status, _ in responses:
        if status and status.Status in _PENDING:
            continue
        if not status or status.Status not in _MOVE_OK:
            raise RemoteDicomError(failure)


def get(
    core: NodeCore, aet: str, modality: Modality, level: Level, keys: dict[str, str]
) -> list[str]:
    """C-GET what ``keys`` identify into this node; the ids of the instances that arrived."""
    stored: list[str] = []

    def store(event: evt.Event) -> int:
        origin = Origin(kind=OriginKind.DICOM, remote_aet=modality.aet, called_aet=aet)
        try:
            result = core.ingest(event.encoded_dataset(include_meta=True), origin)
        except DomainError as exc:
            log.warning("C-GET from %s: refused an instance: %s", modality.aet, exc.message)
            return 0xA700
        stored.append(result.ids[Level.INSTANCE])
        return 0x0000

    model = StudyRootQueryRetrieveInformationModelGet
    storage = [c.abstract_syntax for c in StoragePresentationContexts[:120]]
    contexts = [build_context(uid) for uid in (model, *storage)]
    roles = [build_role(c.abstract_syntax, scp_role=True) for c in StoragePresentationContexts]
    association = associate(
        aet, modality, contexts, ext_neg=roles, handlers=[(evt.EVT_C_STORE, store)]
    )
    try:
        responses = association.send_c_get(_retrieve_identifier(level, keys), model)
        _until_done(responses, f"{modality.aet} could not send it (C-GET)")
    finally:
        association.release()
    return stored
