"""``RequestedTags``: the tags a client asks beside a resource's main tags.

Orthanc's computed tags are counted from the index at the level they describe
(NumberOfStudyRelatedSeries at study level, ...; the patient's counts at study level
too, as Orthanc before 1.12.4 answered them there); ModalitiesInStudy and
SOPClassesInStudy come from the study's series and instances records;
InstanceAvailability is ONLINE (everything pacsnode indexes is on its disk).
Other tags are the resource's (or its ancestors') main tags when the index has them,
otherwise read from one of its instances. A tag none of these has is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag

from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.rest.formats import ResourceView

INSTANCE_AVAILABILITY = 0x00080056
_COMPUTED: dict[int, Level] = {
    0x00201200: Level.PATIENT,  # NumberOfPatientRelatedStudies
    0x00201202: Level.PATIENT,  # NumberOfPatientRelatedSeries
    0x00201204: Level.PATIENT,  # NumberOfPatientRelatedInstances
    0x00201206: Level.STUDY,  # NumberOfStudyRelatedSeries
    0x00201208: Level.STUDY,  # NumberOfStudyRelatedInstances
    0x00080061: Level.STUDY,  # ModalitiesInStudy
    0x00080062: Level.STUDY,  # SOPClassesInStudy
    0x00201209: Level.SERIES,  # NumberOfSeriesRelatedInstances
}
_COUNTED = {
    0x00201200: "CountStudies",
    0x00201202: "CountSeries",
    0x00201204: "CountInstances",
    0x00201206: "CountSeries",
    0x00201208: "CountInstances",
    0x00201209: "CountInstances",
}


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" ")[0]
    except KeyError:
        return "UN"


class _Sources:
    """What the requested tags are read from, each fetched once and only when needed."""

    def __init__(self, core: NodeCore, record: dict[str, Any]) -> None:
        self.core, self.record = core, record
        self.level = Level(record["level"])
        self._stats: dict[str, int] | None = None
        self._tags: dict[str, str] | None = None
        self._instance: dict[str, Any] | None = None

    def statistics(self, level: Level) -> dict[str, int]:
        """Counts below the resource, or below its patient (``level`` PATIENT)."""
        if level is not self.level:
            return self.core.resource_statistics(self.record["parent"], level)
        if self._stats is None:
            self._stats = self.core.resource_statistics(self.record["id"], self.level)
        return self._stats

    def main_tags(self) -> dict[str, str]:
        """The resource's main tags and its ancestors'."""
        if self._tags is None:
            self._tags = dict(self.core.query_answer(self.record["id"])[0])
        return self._tags

    def instance(self) -> dict[str, Any]:
        """The DICOM JSON of one instance of the resource (empty when it has none)."""
        if self._instance is None:
            refs = self.core.instances_of([self.record["id"]])
            self._instance = self.core.instance_json(refs[0]) if refs else {}
        return self._instance


def _modalities(sources: _Sources) -> str:
    found = set()
    for series_id in sources.record["children"]:
        modality = sources.core.resource(series_id)["tags"].get("Modality")
        if modality:
            found.add(modality)
    return "\\".join(sorted(found))


def _sop_classes(sources: _Sources) -> str:
    refs = sources.core.instances_of([sources.record["id"]])
    return "\\".join(sorted({ref.sop_class_uid for ref in refs if ref.sop_class_uid}))


_STUDY_LISTS: dict[int, Callable[[_Sources], str]] = {
    0x00080061: _modalities,
    0x00080062: _sop_classes,
}


def _computed(sources: _Sources, tag: int) -> str | None:
    if tag == INSTANCE_AVAILABILITY:
        return "ONLINE"
    level = _COMPUTED[tag]
    patient_at_study = level is Level.PATIENT and sources.level is Level.STUDY
    if level is not sources.level and not patient_at_study:
        return None  # Orthanc computes each at its own level only
    if tag in _STUDY_LISTS:
        return _STUDY_LISTS[tag](sources)
    return str(sources.statistics(level)[_COUNTED[tag]])


def _element(sources: _Sources, tag: int) -> dict[str, Any] | None:
    """The requested tag as a DICOM JSON element, or ``None`` when no source has it."""
    if tag in _COMPUTED or tag == INSTANCE_AVAILABILITY:
        text = _computed(sources, tag)
        return None if text is None else {"vr": _vr(tag), "Value": [text]}
    keyword = keyword_for_tag(tag)
    if keyword and keyword in sources.main_tags():
        return {"vr": _vr(tag), "Value": [sources.main_tags()[keyword]]}
    return sources.instance().get(f"{tag:08X}")


def requested_tags(core: NodeCore, record: dict[str, Any], view: ResourceView) -> dict[str, Any]:
    """The ``RequestedTags`` object of a resource record (with its children ids)."""
    sources = _Sources(core, record)
    found: dict[str, Any] = {}
    for tag in view.requested or ():
        element = _element(sources, tag)
        if element is not None:
            found[f"{tag:08X}"] = element
    return view.writer().dataset(found)
