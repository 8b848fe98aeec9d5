"""A handful of small instances whose attributes the index plugin tests query: main tags
at every level, and attributes that are main tags at no level or not at the one asked
(BodyPartExamined for a study, SliceThickness, ImageType, AcquisitionDate), with values
that differ only in case where DICOM matching tells them apart."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from pacsnode.node.ids import Level, resource_ids
from tests.storage.helpers import ct_instance, to_bytes


@dataclass(frozen=True)
class Item:
    name: str
    dataset: Dataset

    @property
    def ids(self) -> dict[Level, str]:
        d = self.dataset
        return resource_ids(d.PatientID, d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID)

    @property
    def data(self) -> bytes:
        return to_bytes(self.dataset)


def _instance(index: int, patient: int, study: int, series: int, **values: object) -> Dataset:
    dataset = ct_instance(index, patient=patient, study=study, series=series, size=8)
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    return dataset


def requests(*procedures: tuple[str, str | None]) -> list[Dataset]:
    """Request Attributes Sequence items: (Requested Procedure ID, Scheduled Procedure
    Step ID or None)."""
    found = []
    for procedure, step in procedures:
        item = Dataset()
        item.RequestedProcedureID = procedure
        if step is not None:
            item.ScheduledProcedureStepID = step
        found.append(item)
    return found


def corpus() -> list[Item]:
    """a1, a2: patient 1's chest series; b1: its abdomen series, same study; c1: patient 2's
    MR head; d1: patient 3's chest study of another date, whose series description differs
    from c1's only in case. a1 and c1 carry requests (a sequence of two items, and one
    whose procedure differs from a1's first only in case)."""
    chest = {
        "BodyPartExamined": "CHEST",
        "SeriesDescription": "Axial CHEST 5mm",
        "SliceThickness": "5.0",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    }
    return [
        Item(
            "a1",
            _instance(
                0,
                1,
                1,
                1,
                AcquisitionDate="20240110",
                RequestAttributesSequence=requests(("RP-7", "SPS-1"), ("RP-8", None)),
                **chest,
            ),
        ),
        Item("a2", _instance(1, 1, 1, 1, AcquisitionDate="20240112", **chest)),
        Item(
            "b1",
            _instance(
                0,
                1,
                1,
                2,
                BodyPartExamined="ABDOMEN",
                SeriesDescription="Coronal abdomen",
                AcquisitionDate="20240120",
                ImageType=["DERIVED", "SECONDARY"],
            ),
        ),
        Item(
            "c1",
            _instance(
                0,
                2,
                1,
                1,
                Modality="MR",
                RequestAttributesSequence=requests(("rp-7", "SPS-2")),
                BodyPartExamined="HEAD",
                SeriesDescription="axial head",
                AcquisitionDate="20240301",
                ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
            ),
        ),
        Item(
            "d1",
            _instance(0, 3, 2, 1, BodyPartExamined="CHEST", SeriesDescription="AXIAL chest"),
        ),
    ]


def ids(items: list[Item], level: Level, *names: str) -> set[str]:
    return {item.ids[level] for item in items if item.name in names}
