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
from pacsnode.node.dicom.query import (
    COUNTERS,
    DICOM_LEVEL_NAMES,
    SOP_CLASSES_IN_STUDY,
    indexed_keywords,
)
from pacsnode.node.dicom.scu import RemoteDicomError, associate
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.ids import Level
from pacsnode.node.index import Origin, OriginKind
from pacsnode.node.settings import Modality

log = logging.getLogger(__name__)
#: the keys every query at a level asks for (and answers carry), as Orthanc's queries do
IDENTIFIERS = {
    Level.PATIENT: ("PatientID",),
    Level.STUDY: ("AccessionNumber", "PatientID", "StudyInstanceUID"),
    Level.SERIES: ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
    Level.INSTANCE: ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
#: the keys of an answer a retrieve of it sends back (those present)
RETRIEVE_KEYS = (
    "AccessionNumber",
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)
_PENDING = (0xFF00, 0xFF01)
_MOVE_OK = (0x0000, 0xB000)
#: VRs whose values cannot hold wildcards (PS3.4 C.2.2.2.4): a ``*`` there is an error,
#: not a pattern
_NO_WILDCARDS = {"UI", "US", "UL", "SS", "SL", "FL", "FD", "AT", "SQ", "OB", "OW", "UN"}


def allowed_keywords(level: Level) -> set[str]:
    """What a normalized query keeps at a level: the main tags of the level and above,
    and the level's own computed attributes."""
    allowed = set(indexed_keywords(level))
    allowed |= {keyword for keyword, at in COUNTERS.items() if at is level}
    if level is Level.STUDY:
        allowed.add(SOP_CLASSES_IN_STUDY)
    return allowed


def normalized(level: Level, query: dict[str, Any]) -> dict[str, Any]:
    """The query without the attributes that do not belong to the level (Orthanc's
    ``Normalize``, on by default): a study query keeps no series description."""
    allowed = allowed_keywords(level) | {"SpecificCharacterSet"}
    return {keyword: value for keyword, value in query.items() if keyword in allowed}


def identifier(level: Level, query: dict[str, Any]) -> Dataset:
    """The C-FIND identifier: the query's keys (empty: return it) and the level's
    identifying keys, which every answer must carry."""
    found = Dataset()
    found.QueryRetrieveLevel = DICOM_LEVEL_NAMES[level]
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
    vr = dictionary_VR(tag)
    if vr in _NO_WILDCARDS and any(c in value for c in "*?"):
        raise BadRequest(f"{keyword} ({vr}) cannot be matched with wildcards: {value!r}")
    kind = _BINARY_NUMBERS.get(vr)
    if kind is None:
        return value
    return kind(value) if value.strip() else None


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


def retrieve_identifier(level: Level, keys: dict[str, str]) -> Dataset:
    """What a C-MOVE or C-GET sends: the level and the identifying keys given (those of a
    query's answer, or of a ``/move`` body); the level's own UID is required."""
    own = IDENTIFIERS[level][-1] if level is not Level.STUDY else "StudyInstanceUID"
    if not keys.get(own):
        raise BadRequest(f"a {level.value.lower()} to retrieve needs its {own}")
    found = Dataset()
    found.QueryRetrieveLevel = DICOM_LEVEL_NAMES[level]
    for keyword in RETRIEVE_KEYS:
        if keys.get(keyword):
            setattr(found, keyword, keys[keyword])
    return found


def move(aet: str, modality: Modality, level: Level, keys: dict[str, str], target: str) -> None:
    """C-MOVE what ``keys`` identify from the modality to the AE title ``target``."""
    model = StudyRootQueryRetrieveInformationModelMove
    association = associate(aet, modality, [build_context(model)])
    try:
        responses = association.send_c_move(retrieve_identifier(level, keys), target, model)
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
        responses = association.send_c_get(retrieve_identifier(level, keys), model)
        _until_done(responses, f"{modality.aet} could not send it (C-GET)")
    finally:
        association.release()
    return stored
