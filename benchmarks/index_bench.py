"""Ingest rate, disk use and query latency of the LMDB index (:mod:`pacsnode.node.index`).

Run by hand.

    python -m benchmarks.index_bench [--quick] [--json out.json] [--max N]

Indexes synthetic instances (metadata only: no pixel data, no study store) into a
fresh :class:`pacsnode.node.index.environment.Environment` in a temp dir under /tmp, with
:func:`pacsnode.node.index.updates.index_instance` in ``write_batch`` transactions of
``--batch`` jobs (256, the cap of the node's group-committing writer under
concurrent load). At each checkpoint (10k, 100k, 1M instances; ``--quick``:
10k, 50k; ``--max N`` stops at N) it records:

- the batched ingest rate, cumulative and over the last segment (generating the
  instances is not timed);
- ``Environment.disk_size()`` and the size of ``data.mdb``;
- p50/p99 latency of 200 random queries of each kind, each in its own
  ``Environment.read`` (so a read transaction per query, as a request gets), plus the
  unlimited result count of one fixed sample query of each kind;
- the rate of a short run of 2,000 more instances, one ``write_batch`` (one
  commit and fsync) per instance: what a lone sender sees. Those instances stay
  in the index and count towards the next checkpoint.

The leading-wildcard query is ``*SON^*`` rather than ``*SON``: wildcards match
the whole value and names are ``Family^Given``, so ``*SON`` would only find
given names ending in SON. Either way there is no literal prefix, so it cannot
use a lookup range.

Prints one Markdown table to stdout (progress goes to stderr). MB = 10^6 bytes.
The index stays in the page cache (queries are warm).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from pacsnode.node.ids import Level
from pacsnode.node.index.environment import Environment, Txn
from pacsnode.node.index.hierarchy import count_name, instance_ids
from pacsnode.node.index.lookups import find
from pacsnode.node.index.records import AddedInstance, Origin
from pacsnode.node.index.updates import index_instance
from pacsnode.node.query import parse_query
from pacsnode.storage.results import StoredInstance

MB = 1_000_000
FULL_CHECKPOINTS = (10_000, 100_000, 1_000_000)
QUICK_CHECKPOINTS = (10_000, 50_000)
BATCH = 256
SINGLE_RUN = 2_000
QUERIES = 200
PAGE = 100
P99_TARGET_MS = 5.0
#: "flat": p50 per returned row (rows + 1) at the largest size over that at the one before
FLAT_RATIO = 1.5
SEED = 20_260_101
ORIGIN = Origin()

# --- synthetic instances ----------------------------------------------------------------

UID_ROOT = "1.2.826.0.1.3680043.10.1234.77"
FAMILY_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans",
    "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris",
    "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson",
    "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson",
    "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price",
    "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez",
    "Smithson", "Dickson", "Carlsson", "Jensen", "Hansen", "Nielsen", "Larsen", "Schmidt",
    "Muller", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Dubois", "Laurent", "Lefebvre", "Moreau", "Rossi", "Russo", "Ferrari", "Esposito",
    "Bianchi", "Novak", "Kowalski", "Nowak", "Ivanov", "Tanaka", "Suzuki", "Sato", "Wang", "Li",
    "Zhang", "Chen", "Liu", "Singh", "Kumar", "Shah", "Khan", "Ali", "Okafor", "Mensah",
)  # fmt: skip
GIVEN_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William",
    "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark",
    "Margaret", "Paul", "Sandra", "Steven", "Ashley", "Andrew", "Emily", "Joshua", "Donna",
    "Kevin", "Michelle", "Brian", "Carol", "George", "Amanda", "Edward", "Melissa", "Jason",
    "Deborah", "Ryan", "Stephanie", "Jacob", "Rebecca", "Gary", "Laura", "Nicholas", "Sharon",
    "Eric", "Cynthia", "Jonathan", "Kathleen", "Larry", "Amy", "Anna", "Lukas", "Sofia", "Ahmed",
    "Fatima", "Hiroshi", "Yuki", "Wei", "Mei", "Olga", "Ivan", "Chidi", "Ama", "Priya", "Raj",
)  # fmt: skip
MODALITIES = ("CT", "MR", "US", "CR", "DX")
MODALITY_WEIGHTS = (0.30, 0.20, 0.15, 0.20, 0.15)
#: instances per series, uniform between these bounds (about 100 instances per patient)
SERIES_SIZES = {"CT": (10, 80), "MR": (10, 50), "US": (1, 20), "CR": (1, 2), "DX": (1, 2)}
SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
}
STUDY_DESCRIPTIONS = {
    "CT": ("CT CHEST W/O CONTRAST", "CT ABDOMEN PELVIS W CONTRAST", "CT HEAD W/O CONTRAST"),
    "MR": ("MRI BRAIN W/WO CONTRAST", "MRI KNEE RIGHT W/O", "MRI LUMBAR SPINE W/O"),
    "US": ("US ABDOMEN COMPLETE", "US OB 2ND TRIMESTER", "US THYROID"),
    "CR": ("XR CHEST 2 VIEWS", "XR HAND LEFT 3 VIEWS"),
    "DX": ("DX CHEST PA", "DX PELVIS AP", "DX ANKLE RIGHT"),
}
FIRST_STUDY_DAY = date(2016, 1, 1)
STUDY_DAYS = 3_652  # ten years
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

TAG = {
    "PatientName": "00100010",
    "PatientID": "00100020",
    "PatientBirthDate": "00100030",
    "PatientSex": "00100040",
    "StudyDate": "00080020",
    "AccessionNumber": "00080050",
    "StudyDescription": "00081030",
    "Modality": "00080060",
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SeriesNumber": "00200011",
    "InstanceNumber": "00200013",
    "SOPClassUID": "00080016",
    "SOPInstanceUID": "00080018",
    "AvailableTransferSyntaxUID": "00083002",
}


def _element(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


def patient_id(number: int) -> str:
    return f"MRN{number:07d}"


def _da(day: date) -> str:
    return day.strftime("%Y%m%d")


def _uid(*parts: int) -> str:
    return ".".join([UID_ROOT, *(str(part) for part in parts)])


def _patient_tags(rng: random.Random, number: int) -> dict[str, Any]:
    name = f"{rng.choice(FAMILY_NAMES)}^{rng.choice(GIVEN_NAMES)}"
    if rng.random() < 0.2:
        name += f"^{rng.choice('ABCDEFGHJKLMNPRSTW')}"
    birth = date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365))
    return {
        TAG["PatientID"]: _element("LO", patient_id(number)),
        TAG["PatientName"]: _element("PN", {"Alphabetic": name}),
        TAG["PatientBirthDate"]: _element("DA", _da(birth)),
        TAG["PatientSex"]: _element("CS", rng.choice("MF")),
    }


def _study_tags(rng: random.Random, patient: int, study: int, modality: str) -> dict[str, Any]:
    day = FIRST_STUDY_DAY + timedelta(days=rng.randrange(STUDY_DAYS))
    return {
        TAG["StudyInstanceUID"]: _element("UI", _uid(patient, study, rng.randrange(10**12))),
        TAG["StudyDate"]: _element("DA", _da(day)),
        TAG["AccessionNumber"]: _element("SH", f"A{rng.randrange(10**9):09d}"),
        TAG["StudyDescription"]: _element("LO", rng.choice(STUDY_DESCRIPTIONS[modality])),
    }


def _patient_instances(rng: random.Random, number: int) -> Iterator[StoredInstance]:
    patient = _patient_tags(rng, number)
    for study_number in range(1, rng.randint(1, 3) + 1):
        modality = rng.choices(MODALITIES, MODALITY_WEIGHTS)[0]
        study = {**patient, **_study_tags(rng, number, study_number, modality)}
        study_uid = study[TAG["StudyInstanceUID"]]["Value"][0]
        for series_number in range(1, rng.randint(1, 4) + 1):
            series_uid = f"{study_uid}.{series_number}"
            series = {
                **study,
                TAG["SeriesInstanceUID"]: _element("UI", series_uid),
                TAG["Modality"]: _element("CS", modality),
                TAG["SeriesNumber"]: _element("IS", series_number),
                TAG["SOPClassUID"]: _element("UI", SOP_CLASSES[modality]),
                TAG["AvailableTransferSyntaxUID"]: _element("UI", EXPLICIT_VR_LE),
            }
            for instance_number in range(1, rng.randint(*SERIES_SIZES[modality]) + 1):
                sop_uid = f"{series_uid}.{instance_number}"
                metadata = {
                    **series,
                    TAG["SOPInstanceUID"]: _element("UI", sop_uid),
                    TAG["InstanceNumber"]: _element("IS", instance_number),
                }
                size = rng.randrange(50_000, 300_000)
                yield StoredInstance(
                    study_uid=study_uid,
                    series_uid=series_uid,
                    sop_uid=sop_uid,
                    metadata=metadata,
                    digest=f"{rng.getrandbits(256):064x}",
                    stored_size=size,
                    uncompressed_size=2 * size,
                )


def synthetic_instances(seed: int) -> Iterator[StoredInstance]:
    """An endless, deterministic stream of instances, patient after patient (MRN0000001…)."""
    rng = random.Random(seed)
    for number in itertools.count(1):
        yield from _patient_instances(rng, number)


# --- ingest -----------------------------------------------------------------------------


def _index_job(instance: StoredInstance, txn: Txn) -> AddedInstance:
    return index_instance(txn, instance, instance_ids(instance), ORIGIN)


def write_batch(index: Environment, batch: list[StoredInstance]) -> float:
    """Index ``batch`` in one committed transaction; return the seconds it took."""
    jobs: list[Callable[[Txn], Any]] = [partial(_index_job, instance) for instance in batch]
    start = time.perf_counter()
    outcomes = index.write_batch(jobs)
    elapsed = time.perf_counter() - start
    for ok, value in outcomes:
        if not ok:
            raise RuntimeError(f"indexing failed: {value!r}")
    return elapsed


@dataclass
class IngestClock:
    """Batched-ingest instances and seconds, overall and since the last checkpoint."""

    count: int = 0
    seconds: float = 0.0
    segment_count: int = 0
    segment_seconds: float = 0.0

    def add(self, count: int, seconds: float) -> None:
        self.count += count
        self.seconds += seconds
        self.segment_count += count
        self.segment_seconds += seconds

    def next_segment(self) -> None:
        self.segment_count, self.segment_seconds = 0, 0.0


def ingest_until(
    index: Environment,
    stream: Iterator[StoredInstance],
    indexed: int,
    target: int,
    batch_size: int,
    clock: IngestClock,
) -> int:
    """Index batches until ``target`` instances are in; return the new total."""
    last_report = indexed
    while indexed < target:
        batch = list(itertools.islice(stream, min(batch_size, target - indexed)))
        clock.add(len(batch), write_batch(index, batch))
        indexed += len(batch)
        if indexed - last_report >= 50_000:
            last_report = indexed
            progress(f"{indexed:,} indexed, {clock.segment_count / clock.segment_seconds:,.0f}/s")
    return indexed


def single_rate(index: Environment, instances: list[StoredInstance]) -> float:
    """Instances/s with one transaction (one commit, one fsync) per instance."""
    seconds = sum(write_batch(index, [instance]) for instance in instances)
    return len(instances) / seconds


# --- queries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryKind:
    key: str
    label: str
    level: Level
    limit: int | None
    make: Callable[[random.Random, int], dict[str, str]]
    sample: dict[str, str]


def _by_patient_id(rng: random.Random, patients: int) -> dict[str, str]:
    return {"PatientID": patient_id(rng.randint(1, patients))}


def _name_prefix(rng: random.Random, _patients: int) -> dict[str, str]:
    return {"PatientName": f"{rng.choice(FAMILY_NAMES)[:3].upper()}*"}


def _name_suffix(rng: random.Random, _patients: int) -> dict[str, str]:
    return {"PatientName": f"*{rng.choice(FAMILY_NAMES)[-3:].upper()}^*"}


def _month_range(start: date) -> dict[str, str]:
    return {"StudyDate": f"{_da(start)}-{_da(start + timedelta(days=30))}"}


def _date_range(rng: random.Random, _patients: int) -> dict[str, str]:
    return _month_range(FIRST_STUDY_DAY + timedelta(days=rng.randrange(STUDY_DAYS - 30)))


QUERY_KINDS = (
    QueryKind(
        "patient_id", "PatientID exact, study level", Level.STUDY, None, _by_patient_id,
        {"PatientID": patient_id(1)},
    ),
    QueryKind(
        "name_prefix", "PatientName `SMI*`-like, study level", Level.STUDY, PAGE, _name_prefix,
        {"PatientName": "SMI*"},
    ),
    QueryKind(
        "name_suffix", "PatientName `*SON^*`-like, patient level", Level.PATIENT, PAGE,
        _name_suffix, {"PatientName": "*SON^*"},
    ),
    QueryKind(
        "date_range", "StudyDate 1-month range, study level", Level.STUDY, PAGE, _date_range,
        _month_range(date(2021, 3, 1)),
    ),
)  # fmt: skip


def run_query(index: Environment, kind: QueryKind, query: dict[str, str], limit: int | None) -> int:
    def search(txn: Txn) -> int:
        return len(find(txn, kind.level, parse_query(query), limit=limit))

    return index.read(search)


def timed_query(
    index: Environment, kind: QueryKind, query: dict[str, str], limit: int | None
) -> tuple[float, int]:
    """(milliseconds, result count) of one query in its own read transaction."""
    start = time.perf_counter()
    found = run_query(index, kind, query, limit)
    return (time.perf_counter() - start) * 1000, found


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    mean_results: float
    sample: dict[str, str]
    sample_unlimited_results: int
    sample_unlimited_ms: float


def measure_queries(index: Environment, kind: QueryKind, patients: int, seed: int) -> Latency:
    rng = random.Random(seed)
    run_query(index, kind, kind.make(rng, patients), kind.limit)  # warm-up
    timings = [
        timed_query(index, kind, kind.make(rng, patients), kind.limit) for _ in range(QUERIES)
    ]
    millis = [ms for ms, _ in timings]
    cuts = statistics.quantiles(millis, n=100, method="inclusive")
    sample_ms, sample_found = timed_query(index, kind, kind.sample, None)
    return Latency(
        p50_ms=cuts[49],
        p99_ms=cuts[98],
        mean_ms=statistics.fmean(millis),
        max_ms=max(millis),
        mean_results=statistics.fmean(found for _, found in timings),
        sample=kind.sample,
        sample_unlimited_results=sample_found,
        sample_unlimited_ms=sample_ms,
    )


# --- checkpoints ------------------------------------------------------------------------


@dataclass
class Checkpoint:
    instances: int
    patients: int
    studies: int
    series: int
    cumulative_rate: float
    segment_rate: float
    disk_size_bytes: int
    data_mdb_bytes: int
    single_txn_rate: float = 0.0
    queries: dict[str, Latency] = field(default_factory=dict)


def _counts(index: Environment) -> dict[Level, int]:
    return index.read(lambda txn: {level: txn.counter(count_name(level)) for level in Level})


def take_checkpoint(index: Environment, path: Path, clock: IngestClock) -> Checkpoint:
    counts = _counts(index)
    point = Checkpoint(
        instances=counts[Level.INSTANCE],
        patients=counts[Level.PATIENT],
        studies=counts[Level.STUDY],
        series=counts[Level.SERIES],
        cumulative_rate=clock.count / clock.seconds,
        segment_rate=clock.segment_count / clock.segment_seconds,
        disk_size_bytes=index.disk_size(),
        data_mdb_bytes=(path / "data.mdb").stat().st_size,
    )
    for number, kind in enumerate(QUERY_KINDS):
        progress(f"{point.instances:,}: {kind.label}")
        point.queries[kind.key] = measure_queries(index, kind, point.patients, SEED + number)
    return point


def run(checkpoints: list[int], batch_size: int) -> list[Checkpoint]:
    results: list[Checkpoint] = []
    with tempfile.TemporaryDirectory(prefix="index_bench_") as tmp:
        path = Path(tmp) / "index"
        index = Environment(path)
        try:
            stream = synthetic_instances(SEED)
            clock = IngestClock()
            indexed = 0
            for target in checkpoints:
                indexed = ingest_until(index, stream, indexed, target, batch_size, clock)
                point = take_checkpoint(index, path, clock)
                progress(f"{indexed:,}: {SINGLE_RUN:,} instances, one transaction each")
                point.single_txn_rate = single_rate(
                    index, list(itertools.islice(stream, SINGLE_RUN))
                )
                indexed += SINGLE_RUN
                clock.next_segment()
                results.append(point)
        finally:
            index.close()
    return results


# --- report -----------------------------------------------------------------------------


def _size(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return f"{count:,}"


def _growth(before: Latency, last: Latency) -> tuple[float, float]:
    """(p50 ratio, p50 ratio per returned row) from one checkpoint to the next."""
    ratio = last.p50_ms / before.p50_ms
    rows = (last.mean_results + 1) / (before.mean_results + 1)
    return ratio, ratio / max(1.0, rows)


def _verdicts(points: list[Checkpoint], key: str) -> str:
    last = points[-1].queries[key]
    p99 = "met" if last.p99_ms < P99_TARGET_MS else "**missed**"
    text = f"p99 < {P99_TARGET_MS:g} ms at {_size(points[-1].instances)}: {p99}"
    if len(points) > 1:
        ratio, per_row = _growth(points[-2].queries[key], last)
        flat = "met" if per_row <= FLAT_RATIO else "**missed**"
        text += (
            f"; flat from {_size(points[-2].instances)} (p50 x{ratio:.2f},"
            f" per row x{per_row:.2f} <= x{FLAT_RATIO:g}): {flat}"
        )
    return text


def table_rows(points: list[Checkpoint], batch_size: int) -> list[list[str]]:
    def row(metric: str, cell: Callable[[Checkpoint], str], target: str = "") -> list[str]:
        return [metric, *(cell(p) for p in points), target]

    rows = [
        row(
            "patients / studies / series",
            lambda p: f"{p.patients:,} / {p.studies:,} / {p.series:,}",
        ),
        row(
            f"ingest, {batch_size}/txn, cumulative (inst/s)", lambda p: f"{p.cumulative_rate:,.0f}"
        ),
        row(f"ingest, {batch_size}/txn, last segment (inst/s)", lambda p: f"{p.segment_rate:,.0f}"),
        row(f"ingest, 1/txn, {SINGLE_RUN:,} more (inst/s)", lambda p: f"{p.single_txn_rate:,.0f}"),
        row("`Environment.disk_size()` (MB)", lambda p: f"{p.disk_size_bytes / MB:,.1f}"),
        row("data.mdb file (MB)", lambda p: f"{p.data_mdb_bytes / MB:,.1f}"),
        row("disk per instance (bytes)", lambda p: f"{p.disk_size_bytes / p.instances:,.0f}"),
    ]
    for kind in QUERY_KINDS:
        limit = f"limit {kind.limit}" if kind.limit else "no limit"
        rows.append(
            row(
                f"{kind.label}, {limit}: p50 / p99 ms (mean rows)",
                lambda p, k=kind.key: (
                    f"{p.queries[k].p50_ms:.2f} / {p.queries[k].p99_ms:.2f}"
                    f" ({p.queries[k].mean_results:.1f})"
                ),
                _verdicts(points, kind.key),
            )
        )
    for kind in QUERY_KINDS:
        rows.append(
            row(
                f"sample {_query_text(kind.sample)}, no limit: rows (ms)",
                lambda p, k=kind.key: (
                    f"{p.queries[k].sample_unlimited_results:,}"
                    f" ({p.queries[k].sample_unlimited_ms:.1f})"
                ),
            )
        )
    return rows


def _query_text(query: dict[str, str]) -> str:
    return ", ".join(f"{key}=`{value}`" for key, value in query.items())


def markdown_table(points: list[Checkpoint], batch_size: int) -> str:
    header = ["metric", *(f"{_size(p.instances)} instances" for p in points), "target"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *("---:" for _ in points), "---"]) + "|",
    ]
    lines.extend("| " + " | ".join(cells) + " |" for cells in table_rows(points, batch_size))
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[index_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def checkpoints_for(quick: bool, maximum: int | None) -> list[int]:
    planned = list(QUICK_CHECKPOINTS if quick else FULL_CHECKPOINTS)
    if maximum is None:
        return planned
    # each checkpoint is followed by SINGLE_RUN one-per-transaction instances
    return [size for size in planned if size + SINGLE_RUN < maximum] + [maximum]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at 10k and 50k instances")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--max", type=int, help="last checkpoint (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=BATCH, help="jobs per write transaction")
    args = parser.parse_args(argv)
    checkpoints = checkpoints_for(args.quick, args.max)
    progress(f"checkpoints {', '.join(_size(c) for c in checkpoints)}; batch {args.batch}")
    started = time.perf_counter()
    points = run(checkpoints, args.batch)
    progress(f"done in {time.perf_counter() - started:,.0f} s")
    print(markdown_table(points, args.batch))
    if args.json:
        raw = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "batch": args.batch,
            "checkpoints": [asdict(point) for point in points],
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
