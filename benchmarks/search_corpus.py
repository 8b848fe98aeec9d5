"""Synthetic search documents from real DICOM JSON (pydicom's test files), varied and seeded.

Templates: ``CT_small.dcm`` (a CT with GE's private blocks and a sequence),
``MR_small.dcm`` and ``examples_ybr_color.dcm`` (an US), each given a procedure code
sequence and an "ACME 1.1" private block. Patients get one to three studies of one
to four series; CT series hold 10-80 instances, MR 10-50, US 1-20 (about 150
instances a patient). Patient, study, series and instance attributes vary (names,
dates, descriptions, body parts, slice thickness, positions, UIDs).

Each series is flattened once with :func:`pacsnode.node.search.documents.flatten`;
its instances then swap in their own instance-level values (flattened too), so
generating a million documents takes minutes, not the half hour that flattening
each whole instance would (``flatten`` rate is measured on its own).
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pydicom
from pydicom.data import get_testdata_file

from benchmarks.index_bench import FAMILY_NAMES, GIVEN_NAMES
from pacsnode.node.ids import resource_ids
from pacsnode.node.search.documents import Document, FieldValue, LevelIds, flatten

UID_ROOT = "1.2.826.0.1.3680043.10.1234.88"
TEMPLATES = {"CT": "CT_small.dcm", "MR": "MR_small.dcm", "US": "examples_ybr_color.dcm"}
MODALITY_WEIGHTS = {"CT": 0.40, "MR": 0.35, "US": 0.25}
SERIES_SIZES = {"CT": (10, 80), "MR": (10, 50), "US": (1, 20)}
BODY_PARTS = {
    "CT": ("CHEST", "ABDOMEN", "HEAD", "PELVIS", "NECK"),
    "MR": ("BRAIN", "KNEE", "LSPINE", "CHEST", "SHOULDER"),
    "US": ("ABDOMEN", "THYROID", "CHEST", "PELVIS"),
}
SERIES_DESCRIPTIONS = {
    "CT": ("AXIAL 5MM", "Axial 1.25mm lung", "CORONAL MPR", "SAGITTAL MPR", "SCOUT", "Thin axial"),
    "MR": ("T1 AXIAL", "T2 SAG", "FLAIR axial", "DWI", "T1 COR POST", "STIR cor"),
    "US": ("B-MODE", "DOPPLER", "Axial sweep", "LONG VIEW"),
}
THICKNESS = {"CT": (0.625, 1.0, 1.25, 2.5, 5.0), "MR": (3.0, 4.0, 5.0), "US": (None,)}
PROCEDURES = ("RPID16 CT CHEST", "RPID22 MRI BRAIN", "RPID30 US ABDOMEN", "RPID41 CT HEAD")
FIRST_DAY = date(2016, 1, 1)
DAYS = 3_652
#: attributes that change from one instance of a series to the next
INSTANCE_TAGS = ("00080018", "00200013", "00200032", "00201041", "00080032", "00080033")


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def _template(name: str) -> dict[str, Any]:
    path = get_testdata_file(name)
    assert path is not None, name
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    as_json = dataset.to_json_dict(1024, lambda element: "bulkdata")
    as_json.pop("7FE00010", None)
    as_json["00081032"] = {"vr": "SQ", "Value": [{}]}  # ProcedureCodeSequence
    as_json["00290010"] = _element("LO", "ACME 1.1")
    return as_json


def templates() -> dict[str, dict[str, Any]]:
    return {modality: _template(name) for modality, name in TEMPLATES.items()}


def _uid(*parts: int) -> str:
    return ".".join([UID_ROOT, *(str(part) for part in parts)])


@dataclass
class Counts:
    patients: int = 0
    studies: int = 0
    series: int = 0
    instances: int = 0


def _patient(rng: random.Random, number: int) -> dict[str, Any]:
    name = f"{rng.choice(FAMILY_NAMES)}^{rng.choice(GIVEN_NAMES)}".upper()
    birth = date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365))
    return {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
        "00100020": _element("LO", f"MRN{number:07d}"),
        "00100030": _element("DA", birth.strftime("%Y%m%d")),
        "00100040": _element("CS", rng.choice("MF")),
    }


def _study(rng: random.Random, modality: str, uid: str) -> dict[str, Any]:
    day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
    procedure = rng.choice(PROCEDURES)
    code, _, meaning = procedure.partition(" ")
    return {
        "0020000D": _element("UI", uid),
        "00080020": _element("DA", day.strftime("%Y%m%d")),
        "00080030": _element("TM", f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}00"),
        "00080050": _element("SH", f"A{rng.randrange(10**9):09d}"),
        "00081030": _element("LO", f"{modality} {rng.choice(BODY_PARTS[modality])} STUDY"),
        "00180015": _element("CS", rng.choice(BODY_PARTS[modality])),
        "00081032": {
            "vr": "SQ",
            "Value": [
                {
                    "00080100": _element("SH", code),
                    "00080102": _element("SH", "RADLEX"),
                    "00080104": _element("LO", meaning),
                }
            ],
        },
        "00291001": _element("LO", f"protocol {rng.randrange(40)}"),
    }


def _series(rng: random.Random, modality: str, uid: str, number: int) -> dict[str, Any]:
    values = {
        "0020000E": _element("UI", uid),
        "00200011": _element("IS", number),
        "0008103E": _element("LO", rng.choice(SERIES_DESCRIPTIONS[modality])),
        "00291002": _element("DS", round(rng.uniform(0, 100), 2)),
    }
    thickness = rng.choice(THICKNESS[modality])
    if thickness is not None:
        values["00180050"] = _element("DS", thickness)
    return values


def _instance(uid: str, number: int, rng: random.Random) -> dict[str, Any]:
    z = round(-200 + 2.5 * number + rng.random(), 3)
    moment = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
    return {
        "00080018": _element("UI", uid),
        "00200013": _element("IS", number),
        "00200032": _element("DS", -120.5, -98.25, z),
        "00201041": _element("DS", z),
        "00080032": _element("TM", moment),
        "00080033": _element("TM", moment),
    }


def _series_documents(
    base: dict[str, Any], instances: int, rng: random.Random, ids: tuple[str, str, str]
) -> Iterator[Document]:
    patient_id, study_uid, series_uid = ids
    placeholder = LevelIds("", "", "", "")
    shared = flatten({k: v for k, v in base.items() if k not in INSTANCE_TAGS}, placeholder)
    for number in range(1, instances + 1):
        sop_uid = f"{series_uid}.{number}"
        own = flatten(_instance(sop_uid, number, rng), placeholder)
        level = resource_ids(patient_id, study_uid, series_uid, sop_uid)
        values: tuple[FieldValue, ...] = shared.values + own.values
        yield Document(LevelIds(*level.values()), values, shared.text)


def documents(seed: int, counts: Counts) -> Iterator[Document]:
    """An endless, deterministic stream of documents, patient after patient."""
    rng = random.Random(seed)
    bases = templates()
    modalities = list(MODALITY_WEIGHTS)
    weights = list(MODALITY_WEIGHTS.values())
    for number in itertools.count(1):
        counts.patients += 1
        patient = _patient(rng, number)
        patient_id = patient["00100020"]["Value"][0]
        for study_number in range(1, rng.randint(1, 3) + 1):
            counts.studies += 1
            modality = rng.choices(modalities, weights)[0]
            study_uid = _uid(number, study_number, rng.randrange(10**9))
            study = {**_study(rng, modality, study_uid), **patient}
            for series_number in range(1, rng.randint(1, 4) + 1):
                counts.series += 1
                series_uid = f"{study_uid}.{series_number}"
                base = copy.copy(bases[modality])
                base.update(study)
                base.update(_series(rng, modality, series_uid, series_number))
                size = rng.randint(*SERIES_SIZES[modality])
                counts.instances += size
                ids = (patient_id, study_uid, series_uid)
                yield from _series_documents(base, size, rng, ids)
