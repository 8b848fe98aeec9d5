"""pacsnode against Orthanc: same machine, same data, same scenarios, one table.

    python -m benchmarks.versus_orthanc [--quick] [--repeat N] [--only NAMES] [--json out.json]

Installs what it lacks (Debian's ``orthanc`` and ``dcmtk``), starts its own
archive processes on loopback ports with their own configuration (never the
system service), runs every scenario against pacsnode and Orthanc alternately,
and prints one Markdown table of medians with the ratio pacsnode/Orthanc.
Progress goes to stderr; ``--json`` writes every sample. Every process and
temp directory it makes is removed at the end.

- Set A: one CT study, 300 slices 512x512 uint16; set B: 2,000 64x64 instances,
  100 patients with one study of 2 series each; both seeded (benchmarks/synthetic.py).
- Three systems: pacsnode, Orthanc with its defaults, and "Orthanc+zlib", the
  same with ``StorageCompression: true`` (smaller on disk, slower to ingest and
  to serve); each ratio column compares pacsnode with one of them.
- Each repetition starts fresh archives and first sends a few warm-up instances.
  The order of the systems alternates between repetitions.
- DCMTK tools and Orthanc run with ``TCP_NODELAY=1`` in their environment except
  in the row marked "as shipped". pacsnode sets TCP_NODELAY itself.
- pacsnode runs with its defaults except ``stable_age_s = 10`` (studies seal
  10 s after their last instance; the default is 60), so that sealing happens
  within the run, as it would in a day.
- Ingest at depth runs once, for pacsnode and Orthanc (it stores 100k instances
  in each); the depth set repeats set B's shape with the patient number changed.
  The "as shipped" row (no TCP_NODELAY) runs once, on a quarter of set B.
- Peering: study A goes from one archive to a second one with the same
  Orthanc-compatible call on both, ``POST /peers/{peer}/store`` (synchronous),
  on loopback and across an emulated 50 ms RTT link (``benchmarks/wanlink.py``:
  two network namespaces, a TUN device in each, every IP packet held 25 ms).
  Between repetitions the study is deleted on the receiver.
- DICOMweb (``--only dicomweb``): Orthanc runs Debian's ``orthanc-dicomweb`` plugin
  under the same root, ``/dicom-web``. Each repetition STOWs set B (50 instances a
  request, timed), loads set A over REST (untimed) and lets pacsnode seal it, then
  times QIDO study searches, study and series metadata (gzip accepted, time to the
  body's last byte as received) and frame 1 of each of set A's slices, one request a
  frame as OHIF asks them, with 1 and 4 clients.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from benchmarks.node_bench import DataSet, write_set
from benchmarks.report import code_and_machine, format_value
from benchmarks.servers import (
    BENCH_AET,
    CREDENTIALS,
    ORTHANC,
    Archive,
    Orthanc,
    Pacsnode,
    dicom_env,
)
from benchmarks.synthetic import ct_study, many_small_instances, small_instances, uid
from benchmarks.wanlink import Ceiling, WanLink, available, measure_ceiling, wan_link
from pacsnode.node.dicom.network import set_nodelay
from tests.node.server import REPO, free_port

MB = 1_000_000
MIB = 1 << 20
FRAME_BYTES = 512 * 512 * 2  # one of set A's slices
DCMTK = Path("/usr/bin")
CT_PATIENT = 900
WARM_UP_PATIENT = 990
DEPTH_FIRST_PATIENT = 100_000
SYSTEMS = ("pacsnode", "Orthanc", "Orthanc+zlib")  # +zlib: StorageCompression on
SCENARIOS = ("dicom", "rest", "depth", "peering", "dicomweb")


@dataclass(frozen=True)
class Sizes:
    ct: int
    small_patients: int
    queries: int
    depths: tuple[int, ...]
    probe: int
    repeat: int
    #: timed answers per metadata URL (after one that warms up)
    fetches: int


FULL = Sizes(
    ct=300,
    small_patients=100,
    queries=200,
    depths=(0, 25_000, 50_000, 100_000),
    probe=1000,
    repeat=3,
    fetches=5,
)
QUICK = Sizes(
    ct=30, small_patients=10, queries=50, depths=(0, 1000, 2000), probe=200, repeat=1, fetches=3
)


def progress(message: str) -> None:
    print(f"[versus_orthanc] {message}", file=sys.stderr, flush=True)


# --- figures -------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    scenario: str
    measure: str
    unit: str
    higher_is_better: bool
    #: the ratio pacsnode/Orthanc the issue asks for (in the better direction), if any
    target_ratio: float | None = None
    #: or an absolute bound on pacsnode's own figure
    target_value: float | None = None
    #: the systems a target ratio compares with
    against: tuple[str, ...] = ("Orthanc", "Orthanc+zlib")


@dataclass
class Figures:
    samples: dict[Measure, dict[str, list[float]]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def add(self, measure: Measure, system: str, value: float) -> None:
        self.samples.setdefault(measure, {}).setdefault(system, []).append(value)

    def median(self, measure: Measure, system: str) -> float | None:
        values = self.samples.get(measure, {}).get(system)
        return statistics.median(values) if values else None

    def verdict(self, measure: Measure) -> str:
        """The target and whether pacsnode meets it (per baseline for a ratio)."""
        mine = self.median(measure, "pacsnode")
        if mine is None:
            return ""
        better_or_equal = (
            (lambda a, b: a >= b) if measure.higher_is_better else (lambda a, b: a <= b)
        )
        sign = ">=" if measure.higher_is_better else "<="
        if measure.target_value is not None:
            met = better_or_equal(mine, measure.target_value)
            return f"{sign} {format_value(measure.target_value)}: {'met' if met else 'MISSED'}"
        if measure.target_ratio is None:
            return ""
        verdicts = []
        for baseline in measure.against:
            theirs = self.median(measure, baseline)
            if theirs:
                met = better_or_equal(mine / theirs, measure.target_ratio)
                verdicts.append(f"{'met' if met else 'MISSED'} vs {baseline}")
        return f"{sign} {measure.target_ratio:g}x: {', '.join(verdicts)}" if verdicts else ""

    def markdown(self) -> str:
        systems = [s for s in SYSTEMS if any(s in by for by in self.samples.values())]
        baselines = [s for s in systems if s != "pacsnode"]
        header = ["scenario", "measure", "unit", *systems]
        header += [f"pacsnode/{b}" for b in baselines] + ["better", "target"]
        lines = ["| " + " | ".join(header) + " |"]
        lines.append(
            "| --- | --- | --- |" + " ---: |" * (len(systems) + len(baselines)) + " --- | --- |"
        )
        for measure in self.samples:
            medians = {system: self.median(measure, system) for system in systems}
            mine = medians.get("pacsnode")
            cells = [measure.scenario, measure.measure, measure.unit]
            cells += ["" if medians[s] is None else format_value(medians[s]) for s in systems]
            cells += [
                f"{mine / medians[b]:.2f}x" if mine is not None and medians[b] else ""
                for b in baselines
            ]
            cells += ["higher" if measure.higher_is_better else "lower", self.verdict(measure)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        rows = []
        for measure, by_system in self.samples.items():
            medians = {system: self.median(measure, system) for system in by_system}
            rows.append({**asdict(measure), "samples": by_system, "medians": medians})
        return {"rows": rows, "notes": self.notes}


def rate(scenario: str, target_ratio: float | None = 1.0) -> Measure:
    return Measure(scenario, "rate", "inst/s", True, target_ratio)


def throughput(scenario: str) -> Measure:
    return Measure(scenario, "throughput", "MB/s", True)


def peak_rss(scenario: str) -> Measure:
    return Measure(scenario, "peak RSS (VmHWM, with workers)", "MiB", False, target_value=200)


# --- data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    a: DataSet
    b: DataSet
    b_quarters: list[DataSet]
    warm_up: list[bytes]

    @property
    def p10_bytes(self) -> int:
        return self.a.total_bytes + self.b.total_bytes + sum(len(b) for b in self.warm_up)

    @property
    def study_a(self) -> str:
        return uid(CT_PATIENT, 1)


def make_data(sizes: Sizes, work: Path) -> Data:
    progress(f"writing set A ({sizes.ct} CT slices) and set B ({sizes.small_patients * 20})")
    a = write_set("A", work / "a", ct_study(sizes.ct, patient=CT_PATIENT))
    b = write_set("B", work / "b", small_instances(sizes.small_patients, 10))
    quarters = []
    for number in range(4):
        folder = work / f"b{number}"
        folder.mkdir()
        share = len(b.files) // 4  # 25 whole patients each, as four modalities would send
        files = b.files[number * share : (number + 1) * share if number < 3 else None]
        for path in files:
            os.link(path, folder / path.name)
        total = sum(path.stat().st_size for path in files)
        quarters.append(DataSet(f"B/{number}", folder, sorted(folder.iterdir()), total))
    warm_up = list(ct_study(5, size=64, patient=WARM_UP_PATIENT))
    return Data(a, b, quarters, warm_up)


# --- clients -------------------------------------------------------------------------


def dcmtk(
    tool: str,
    archive: Archive,
    options: list[str],
    files: tuple[str, ...] = (),
    nodelay: bool = True,
) -> None:
    command = [str(DCMTK / tool), "-aet", BENCH_AET, "-aec", archive.aet, *options]
    command += ["127.0.0.1", str(archive.dicom_port), *files]
    done = subprocess.run(command, capture_output=True, text=True, env=dicom_env(nodelay))
    if done.returncode != 0:
        raise RuntimeError(f"{tool} against {archive.system}: {done.stderr[-2000:]}")


def storescu(archive: Archive, data: DataSet, nodelay: bool = True) -> None:
    dcmtk("storescu", archive, ["+sd"], (str(data.folder),), nodelay)  # one association


def post_all(archive: Archive, blobs: list[bytes], outcome: Outcome) -> None:
    connection = archive.connect()
    headers = {"Content-Type": "application/dicom", **archive.headers()}
    try:
        for blob in blobs:
            for attempt in range(3):
                try:
                    connection.request("POST", "/instances", body=blob, headers=headers)
                    answer = connection.getresponse()
                    payload = answer.read()
                except ConnectionError:  # Orthanc drops idle keep-alive connections after 1 s
                    connection.close()
                    if attempt == 2:
                        raise
                    continue
                if answer.status < 500 or not outcome.retry_server_errors or attempt == 2:
                    break
                outcome.retried.append(f"HTTP {answer.status}: {payload[:200]!r}")
            if answer.status != 200:
                outcome.errors.append(f"HTTP {answer.status}: {payload[:200]!r}")
                return
    finally:
        connection.close()


@dataclass
class Outcome:
    retry_server_errors: bool = False
    errors: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)


def rest_ingest(
    archive: Archive, blobs: list[bytes], clients: int, retry_server_errors: bool = False
) -> list[str]:
    """POST every blob over ``clients`` connections; answer the server errors retried."""
    outcome = Outcome(retry_server_errors)
    shares = [blobs[start::clients] for start in range(clients)]
    threads = [threading.Thread(target=post_all, args=(archive, s, outcome)) for s in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if outcome.errors:
        raise RuntimeError(f"{archive.system} POST /instances failed: {outcome.errors[0]}")
    return outcome.retried


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def warm_up(archive: Archive, data: Data) -> int:
    """Send a few instances before anything is timed; answer how many are stored."""
    rest_ingest(archive, data.warm_up, 1)
    return len(data.warm_up)


def percentile(samples: list[float], percent: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1]


def find_identifier(prefix: int) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = f"Synthetic^Patient{prefix}*"
    for keyword in ("PatientID", "StudyInstanceUID", "StudyDate", "StudyDescription"):
        setattr(identifier, keyword, "")
    return identifier


def c_find_latencies(archive: Archive, prefixes: list[int]) -> list[float]:
    ae = AE(ae_title=BENCH_AET)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(
        "127.0.0.1",
        archive.dicom_port,
        ae_title=archive.aet,
        evt_handlers=[(evt.EVT_CONN_OPEN, set_nodelay)],
    )
    if not assoc.is_established:
        raise RuntimeError(f"{archive.system} refused the C-FIND association")
    samples = []
    try:
        for prefix in prefixes:
            start = time.perf_counter()
            matches = 0
            for status, answer in assoc.send_c_find(
                find_identifier(prefix), StudyRootQueryRetrieveInformationModelFind
            ):
                code = getattr(status, "Status", None)
                if code in (0xFF00, 0xFF01) and answer is not None:
                    matches += 1
                elif code != 0:
                    raise RuntimeError(f"{archive.system} C-FIND status {code!r}")
            samples.append(time.perf_counter() - start)
            if not matches:
                raise RuntimeError(f"{archive.system} C-FIND for prefix {prefix} found nothing")
    finally:
        assoc.release()
        ae.shutdown()
    return samples


def fetch_files(archive: Archive, instance_ids: list[str]) -> int:
    connection = archive.connect()
    total = 0
    try:
        for instance_id in instance_ids:
            connection.request("GET", f"/instances/{instance_id}/file", headers=archive.headers())
            answer = connection.getresponse()
            body = answer.read()
            if answer.status != 200 or body[128:132] != b"DICM":
                raise RuntimeError(f"{archive.system} GET {instance_id}/file: {answer.status}")
            total += len(body)
    finally:
        connection.close()
    return total


# --- scenarios 1, 3, 4, 5, 6: one archive takes sets A and B over DICOM -------------------


def make_archive(system: str, **options: Any) -> Archive:
    if system == "pacsnode":
        return Pacsnode(stable_age_s=10, **options)
    return Orthanc(compression=system == "Orthanc+zlib", **options)


def dicom_session(system: str, data: Data, sizes: Sizes, figures: Figures, work: Path) -> None:
    with make_archive(system) as archive:
        time.sleep(2.0)  # let start-up settle before the idle figure
        figures.add(
            Measure("6 memory", "idle RSS after start", "MiB", False, target_value=80),
            system,
            archive.rss() / MIB,
        )
        stored = warm_up(archive, data)
        for name, data_set in (("set A", data.a), ("set B", data.b)):
            scenario = f"1 DICOM ingest: storescu {name}, one association"
            progress(f"{system}: {scenario}")
            seconds = timed(lambda d=data_set: storescu(archive, d))
            stored += len(data_set.files)
            archive.expect_count(stored)
            figures.add(rate(scenario), system, len(data_set.files) / seconds)
            figures.add(throughput(scenario), system, data_set.total_bytes / MB / seconds)
        figures.add(
            peak_rss("6 memory: during DICOM ingest (scenario 1)"), system, archive.hwm() / MIB
        )
        progress(f"{system}: waiting for background work, then disk footprint")
        archive.settle()
        scenario = "3 disk footprint after A+B"
        figures.add(
            Measure(
                scenario,
                "bytes on disk / P10 bytes",
                "ratio",
                False,
                1.0,
                against=("Orthanc+zlib",),
            ),
            system,
            archive.disk() / data.p10_bytes,
        )
        query_scenarios(system, archive, sizes, figures)
        retrieval_scenarios(system, archive, data, figures, work)


def query_scenarios(system: str, archive: Archive, sizes: Sizes, figures: Figures) -> None:
    rng = random.Random(1234)
    progress(f"{system}: 4 queries")
    patients = [rng.randint(1, sizes.small_patients) for _ in range(sizes.queries)]
    samples = []
    for patient in [1, *patients]:  # the first one warms up
        query = {"Level": "Study", "Query": {"PatientID": f"PAT{patient:05d}"}}
        start = time.perf_counter()
        found = archive.call("POST", "/tools/find", query)
        samples.append(time.perf_counter() - start)
        if len(found) != 1:
            raise RuntimeError(f"{system}: PatientID query found {len(found)} studies")
    scenario = "4 query: /tools/find Study by PatientID"
    for percent in (50, 99):
        figures.add(
            Measure(scenario, f"p{percent}", "ms", False, target_ratio=1.0),
            system,
            percentile(samples[1:], percent) * 1000,
        )
    prefixes = [rng.randint(1, 9) for _ in range(sizes.queries)]
    samples = c_find_latencies(archive, [1, *prefixes])[1:]
    scenario = "4 query: C-FIND Study by PatientName wildcard"
    for percent in (50, 99):
        figures.add(
            Measure(scenario, f"p{percent}", "ms", False, target_ratio=1.0),
            system,
            percentile(samples, percent) * 1000,
        )


def retrieval_scenarios(
    system: str, archive: Archive, data: Data, figures: Figures, work: Path
) -> None:
    query = {"Level": "Instance", "Query": {"StudyInstanceUID": data.study_a}}
    instance_ids = archive.call("POST", "/tools/find", query)
    scenario = "5 retrieval: GET /instances/{id}/file, set A"
    progress(f"{system}: {scenario}")
    received: list[int] = []
    seconds = timed(lambda: received.append(fetch_files(archive, instance_ids)))
    figures.add(rate(scenario, 0.5), system, len(instance_ids) / seconds)
    figures.add(throughput(scenario), system, received[0] / MB / seconds)
    scenario = "5 retrieval: C-GET study A into getscu"
    progress(f"{system}: {scenario}")
    out = work / f"getscu-{system}"
    out.mkdir()
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={data.study_a}"]
    try:
        seconds = timed(lambda: dcmtk("getscu", archive, ["-S", "-od", str(out), *keys]))
        got = sum(1 for _ in out.iterdir())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if got != len(data.a.files):
        raise RuntimeError(f"{system}: getscu received {got} of {len(data.a.files)} files")
    figures.add(rate(scenario, 0.5), system, got / seconds)


def concurrent_dicom_session(system: str, data: Data, figures: Figures) -> None:
    with make_archive(system) as archive:
        stored = warm_up(archive, data)
        scenario = "1 DICOM ingest: 4 concurrent storescu, set B"
        progress(f"{system}: {scenario}")
        threads = [threading.Thread(target=storescu, args=(archive, q)) for q in data.b_quarters]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        archive.expect_count(stored + len(data.b.files))
        figures.add(rate(scenario), system, len(data.b.files) / seconds)


def shipped_dicom_session(system: str, data: Data, figures: Figures) -> None:
    with make_archive(system, nodelay=False) as archive:
        stored = warm_up(archive, data)
        # A quarter of B: at the ~40 ms a message costs here, the whole set takes minutes
        quarter = data.b_quarters[0]
        scenario = "1 DICOM ingest: storescu a quarter of set B, no TCP_NODELAY (as shipped)"
        progress(f"{system}: {scenario}")
        seconds = timed(lambda: storescu(archive, quarter, nodelay=False))
        archive.expect_count(stored + len(quarter.files))
        figures.add(rate(scenario, None), system, len(quarter.files) / seconds)


# --- scenario 2: REST ingest ------------------------------------------------------------


def rest_session(system: str, data: Data, clients: int, figures: Figures) -> None:
    blobs = data.b.blobs()
    with make_archive(system) as archive:
        stored = warm_up(archive, data)
        scenario = f"2 REST ingest: POST /instances set B, {clients} client{'s' * (clients > 1)}"
        progress(f"{system}: {scenario}")
        seconds = timed(lambda: rest_ingest(archive, blobs, clients))
        archive.expect_count(stored + len(blobs))
        figures.add(rate(scenario), system, len(blobs) / seconds)
        figures.add(
            peak_rss(f"6 memory: during REST ingest, {clients} client(s)"),
            system,
            archive.hwm() / MIB,
        )


# --- scenario 7: ingest at depth --------------------------------------------------------


class DepthSet:
    """The depth set, made once and shared by both archives (20 instances a patient)."""

    def __init__(self, total: int) -> None:
        self.blobs = list(many_small_instances(DEPTH_FIRST_PATIENT, -(-total // 20)))

    def slice(self, start: int, stop: int) -> list[bytes]:
        return self.blobs[start:stop]


def depth_session(system: str, depth_set: DepthSet, sizes: Sizes, figures: Figures) -> None:
    with make_archive(system) as archive:
        stored = 0
        first_rate = None
        for depth in sizes.depths:
            if depth > stored:
                progress(f"{system}: 7 filling to {depth:,} instances (4 REST clients)")
                fill = depth_set.slice(stored, depth)
                retried: list[str] = []
                # Orthanc 1.10 sometimes fails to make a storage folder that another
                # thread is making (HTTP 500); the fill is not timed, so retry and say so
                seconds = timed(
                    lambda f=fill, r=retried: r.extend(rest_ingest(archive, f, 4, True))
                )
                if retried:
                    figures.notes.setdefault("depth fill: server errors retried", {}).setdefault(
                        system, []
                    ).extend([*retried[:5], f"{len(retried)} in all"])
                figures.notes.setdefault("depth fill rates (inst/s)", {}).setdefault(
                    system, []
                ).append(len(fill) / seconds)
                stored = depth
                archive.settle(3600)  # pacsnode seals the fill; the probe measures ingest alone
            probe = depth_set.slice(stored, stored + sizes.probe)
            progress(f"{system}: 7 REST ingest of {len(probe)} at depth {stored:,}")
            seconds = timed(lambda p=probe: rest_ingest(archive, p, 1))
            stored += len(probe)
            archive.expect_count(stored)
            value = len(probe) / seconds
            first_rate = first_rate or value
            scenario = f"7 ingest at depth {depth:,}: POST /instances, 1 client"
            figures.add(rate(scenario, None), system, value)
            if depth:
                kept = Measure(
                    scenario,
                    "rate / rate when empty",
                    "ratio",
                    True,
                    target_value=0.9,
                )
                figures.add(kept, system, value / first_rate)


# --- scenario 8: peering ---------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Where sender and receiver run (network namespaces) and the address the sender dials."""

    name: str
    sender_ns: str | None
    receiver_ns: str | None
    receiver_address: str


def pacsnode_identity(archive: Pacsnode) -> str:
    config = archive.directory / "identity.toml"
    config.write_text(f'data_dir = "{archive.directory / "data"}"\n')
    command = [sys.executable, "-m", "pacsnode.node.cli", "--config", str(config), "identity"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def pacsnode_pair(path: Route) -> tuple[Archive, Archive, str]:
    sender = Pacsnode(namespace=path.sender_ns, stable_age_s=2)
    receiver = Pacsnode(namespace=path.receiver_ns, stable_age_s=3600)
    sender_id, receiver_id = pacsnode_identity(sender), pacsnode_identity(receiver)
    receiver_peering = free_port()
    receiver.extra_toml = (
        f'[peering]\nhost = "{path.receiver_address}"\nport = {receiver_peering}\n'
        f'[[peers]]\nname = "sitea"\nfingerprint = "{sender_id}"\n'
    )
    sender.extra_toml = (
        f'[[peers]]\nname = "siteb"\nurl = "https://{path.receiver_address}:{receiver_peering}"\n'
        f'fingerprint = "{receiver_id}"\npull = false\n'
    )
    return sender, receiver, "siteb"


def orthanc_pair(path: Route, compression: bool) -> tuple[Archive, Archive, str]:
    receiver = Orthanc(
        namespace=path.receiver_ns,
        remote_access=path.receiver_ns is not None,
        compression=compression,
    )
    url = f"http://{path.receiver_address}:{receiver.http_port}/"
    peers = {"b": [url, *CREDENTIALS]}
    sender = Orthanc(namespace=path.sender_ns, peers=peers, compression=compression)
    return sender, receiver, "b"


def peering_session(system: str, path: Route, data: Data, sizes: Sizes, figures: Figures) -> None:
    if system == "pacsnode":
        sender, receiver, peer = pacsnode_pair(path)
    else:
        sender, receiver, peer = orthanc_pair(path, compression=system == "Orthanc+zlib")
    with receiver, sender:
        progress(f"{system}: 8 loading set A into the sender ({path.name})")
        rest_ingest(sender, data.a.blobs(), 4)
        sender.settle()
        study_id = sender.call(
            "POST", "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": data.study_a}}
        )[0]
        scenario = f"8 peering: study A to a second archive, {path.name}"
        store = f"/peers/{peer}/store"
        for repetition in range(sizes.repeat + 1):  # the first one warms up
            cpu = sender.cpu(), receiver.cpu()
            progress(f"{system}: {scenario}, run {repetition}")
            seconds = timed(lambda: sender.call("POST", store, study_id.encode()))
            receiver.expect_count(len(data.a.files))
            if repetition:
                figures.add(
                    Measure(
                        scenario,
                        "wall time",
                        "s",
                        False,
                        target_ratio=(0.1 if "RTT" in path.name else 1.0),
                    ),
                    system,
                    seconds,
                )
                figures.add(throughput(scenario), system, data.a.total_bytes / MB / seconds)
                figures.add(
                    Measure(scenario, "sender CPU", "s", False), system, sender.cpu() - cpu[0]
                )
                figures.add(
                    Measure(scenario, "receiver CPU", "s", False), system, receiver.cpu() - cpu[1]
                )
            receiver.call("DELETE", f"/studies/{study_id}")
            receiver.expect_count(0)


# --- scenario 9: DICOMweb ------------------------------------------------------------------

DICOMWEB = "/dicom-web"
DICOM_JSON = "application/dicom+json"
#: what OHIF asks for a frame: any transfer syntax, as stored
FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
#: instances per STOW-RS request, as an uploader batches them
STOW_BATCH = 50
STOW_BOUNDARY = "versus-orthanc-stow-7f3a9c"
#: the study list as OHIF's first page asks it: includefield StudyDescription and Modality
#: (0008,0060, a series attribute, which the archive finds in an instance of each study)
OHIF_STUDY_LIST = "/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060"
DICOMWEB_NOTE = (
    "metadata is asked with Accept-Encoding: gzip from both systems and timed to the last "
    "byte of the body as received (not decompressed); pacsnode serves sealed studies; "
    "Orthanc runs Debian's orthanc-dicomweb 1.7 plugin with its defaults (StudiesMetadata "
    "Full: every instance file is read); frames are asked one request a frame with Accept: "
    f"{FRAME_ACCEPT}; STOW-RS sends {STOW_BATCH} instances a request"
)


@dataclass(frozen=True)
class WebAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes  # as received: a gzip body is not decompressed
    seconds: float  # from sending the request to the body's last byte


class WebClient:
    """One keep-alive connection to an archive's DICOMweb root (Orthanc closes idle
    connections after a second: a closed one is replaced once, and that try is not timed)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.connection: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> WebAnswer:
        headers = {**self.archive.headers(), **headers}
        for fresh in (self.connection is None, True):
            if fresh:
                self.close()
                self.connection = self.archive.connect()
            assert self.connection is not None
            start = time.perf_counter()
            try:
                self.connection.request(method, DICOMWEB + path, body=body, headers=headers)
                answer = self.connection.getresponse()
                payload = answer.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                if fresh:
                    raise
                continue
            seconds = time.perf_counter() - start
            found = {name.lower(): value for name, value in answer.getheaders()}
            return WebAnswer(answer.status, found, payload, seconds)
        raise AssertionError("unreachable")

    def get(self, path: str, headers: dict[str, str], expect: int = 200) -> WebAnswer:
        answer = self.request("GET", path, headers)
        if answer.status != expect:
            raise RuntimeError(
                f"{self.archive.system} GET {path}: HTTP {answer.status} {answer.body[:300]!r}"
            )
        return answer

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def json_body(answer: WebAnswer) -> Any:
    body = answer.body
    if answer.headers.get("content-encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


def latency_rows(figures: Figures, scenario: str, system: str, samples: list[float]) -> None:
    for percent in (50, 99):
        figures.add(
            Measure(scenario, f"p{percent}", "ms", False, target_ratio=1.0),
            system,
            percentile(samples, percent) * 1000,
        )


def qido_scenarios(
    system: str, client: WebClient, data: Data, sizes: Sizes, figures: Figures
) -> None:
    rng = random.Random(1234)
    progress(f"{system}: 9 QIDO-RS study searches")
    patients = [rng.randint(1, sizes.small_patients) for _ in range(sizes.queries)]
    samples = []
    for patient in [1, *patients]:  # the first one warms up
        answer = client.get(f"/studies?PatientID=PAT{patient:05d}", {"Accept": DICOM_JSON})
        if len(json_body(answer)) != 1:
            raise RuntimeError(f"{system}: QIDO by PatientID found {len(json_body(answer))}")
        samples.append(answer.seconds)
    latency_rows(figures, "9 DICOMweb QIDO: /studies?PatientID=", system, samples[1:])
    studies = min(101, sizes.small_patients + 2)  # set B's, set A's and the warm-up study
    samples = []
    for _ in range(sizes.queries // 4 + 1):
        answer = client.get(OHIF_STUDY_LIST, {"Accept": DICOM_JSON})
        if len(json_body(answer)) != studies:
            raise RuntimeError(f"{system}: the study list has {len(json_body(answer))} studies")
        samples.append(answer.seconds)
    latency_rows(
        figures, "9 DICOMweb QIDO: study list as OHIF asks it (limit=101)", system, samples[1:]
    )


def metadata_times(
    client: WebClient, path: str, instances: int, fetches: int
) -> tuple[list[float], WebAnswer]:
    """Time to last byte of ``fetches`` answers (after one that warms up), gzip accepted."""
    samples, answer = [], None
    for _ in range(fetches + 1):
        answer = client.get(path, {"Accept": DICOM_JSON, "Accept-Encoding": "gzip"})
        samples.append(answer.seconds)
    assert answer is not None
    if len(json_body(answer)) != instances:
        raise RuntimeError(f"{client.archive.system} {path}: {len(json_body(answer))} instances")
    return samples[1:], answer


def metadata_scenarios(
    system: str, client: WebClient, data: Data, sizes: Sizes, figures: Figures
) -> None:
    study, series = data.study_a, uid(CT_PATIENT, 1, 1)
    count = len(data.a.files)
    answers = figures.notes.setdefault("DICOMweb metadata answers", {})
    for name, path, target in (
        ("study", f"/studies/{study}/metadata", 1 / 20),
        ("series", f"/studies/{study}/series/{series}/metadata", None),
    ):
        scenario = f"9 DICOMweb {name} metadata, set A ({count} instances), gzip accepted"
        progress(f"{system}: {scenario}")
        samples, answer = metadata_times(client, path, count, sizes.fetches)
        for seconds in samples:
            figures.add(
                Measure(scenario, "time to last byte", "ms", False, target_ratio=target),
                system,
                seconds * 1000,
            )
        figures.add(
            Measure(scenario, "body bytes received", "kB", False), system, len(answer.body) / 1000
        )
        answers.setdefault(system, {})[name] = {
            "Content-Encoding": answer.headers.get("content-encoding", "none"),
            "bytes received": len(answer.body),
        }
    rng = random.Random(99)
    patients = [rng.randint(1, sizes.small_patients) for _ in range(sizes.queries // 4)]
    samples = []
    for patient in [1, *patients]:  # the first one warms up
        path = f"/studies/{uid(patient, 1)}/series/{uid(patient, 1, 1)}/metadata"
        answer = client.get(path, {"Accept": DICOM_JSON, "Accept-Encoding": "gzip"})
        if len(json_body(answer)) != 10:
            raise RuntimeError(f"{system} {path}: {len(json_body(answer))} instances")
        samples.append(answer.seconds)
    scenario = "9 DICOMweb series metadata, a set B series (10 instances), gzip accepted"
    figures.add(
        Measure(scenario, "p50 time to last byte", "ms", False),
        system,
        percentile(samples[1:], 50) * 1000,
    )


def frame_paths(data: Data) -> list[str]:
    """Frame 1 of every instance of set A, the URL a viewer asks for each slice."""
    series = uid(CT_PATIENT, 1, 1)
    return [
        f"/studies/{data.study_a}/series/{series}/instances/{uid(CT_PATIENT, 1, 1, n)}/frames/1"
        for n in range(1, len(data.a.files) + 1)
    ]


def single_part(answer: WebAnswer) -> bytes:
    """The payload of a one-part ``multipart/related`` answer."""
    boundary = re.search(r'boundary="?([^";]+)"?', answer.headers.get("content-type", ""))
    if not boundary:
        raise RuntimeError(f"not multipart: {answer.headers.get('content-type')!r}")
    marker = b"--" + boundary.group(1).encode()
    part = answer.body.split(marker)[1]
    return part[part.index(b"\r\n\r\n") + 4 : part.rindex(b"\r\n")]


def check_frame(client: WebClient, data: Data, path: str) -> None:
    """The first slice's frame is its pixel data, byte for byte."""
    payload = single_part(client.get(path, {"Accept": FRAME_ACCEPT}))
    if payload != dcmread(data.a.files[0]).PixelData:
        raise RuntimeError(f"{client.archive.system}: frame 1 of slice 1 differs from the source")


#: what a browser (OHIF) sends besides: it accepts gzip, which a server may use or not
BROWSER_ENCODING = {"Accept-Encoding": "gzip"}


def _frame_bytes(answer: WebAnswer) -> int:
    """Bytes of the answer as the client gets them after decoding (gzip inflated)."""
    if answer.headers.get("content-encoding") == "gzip":
        return len(gzip.decompress(answer.body))
    return len(answer.body)


def fetch_frames(archive: Archive, paths: list[str], errors: list[str], gzipped: bool) -> None:
    client = WebClient(archive)
    headers = {"Accept": FRAME_ACCEPT, **(BROWSER_ENCODING if gzipped else {})}
    try:
        for path in paths:
            answer = client.request("GET", path, headers)
            # checked on the first answer only: inflating each would time the client
            if answer.status != 200 or (path == paths[0] and _frame_bytes(answer) < FRAME_BYTES):
                errors.append(f"GET {path}: HTTP {answer.status}, {len(answer.body)} bytes")
                return
    finally:
        client.close()


def frames_per_second(
    archive: Archive, paths: list[str], clients: int, gzipped: bool = False
) -> float:
    errors: list[str] = []
    shares = [paths[start::clients] for start in range(clients)]
    threads = [
        threading.Thread(target=fetch_frames, args=(archive, share, errors, gzipped))
        for share in shares
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{archive.system}: {errors[0]}")
    return len(paths) / seconds


def frame_scenarios(system: str, client: WebClient, data: Data, figures: Figures) -> None:
    paths = frame_paths(data)
    check_frame(client, data, paths[0])
    for gzipped in (False, True):
        for clients in (1, 4):
            scenario = f"9 DICOMweb frames: set A, one request a frame, {clients} client(s)"
            if gzipped:
                scenario += ", Accept-Encoding: gzip (as a browser)"
            progress(f"{system}: {scenario}")
            cpu = client.archive.cpu()
            value = frames_per_second(client.archive, paths, clients, gzipped)
            figures.add(Measure(scenario, "rate", "frames/s", True, 2.0), system, value)
            figures.add(
                Measure(scenario, "server CPU a frame", "ms", False),
                system,
                (client.archive.cpu() - cpu) / len(paths) * 1000,
            )


def stow_bodies(blobs: list[bytes]) -> list[bytes]:
    """``STOW_BATCH`` instances a ``multipart/related`` body (made before timing)."""
    marker = f"--{STOW_BOUNDARY}".encode()
    bodies = []
    for start in range(0, len(blobs), STOW_BATCH):
        chunks = []
        for blob in blobs[start : start + STOW_BATCH]:
            assert marker not in blob
            chunks += [marker, b"\r\nContent-Type: application/dicom\r\n\r\n", blob, b"\r\n"]
        bodies.append(b"".join([*chunks, marker, b"--\r\n"]))
    return bodies


def stow(archive: Archive, bodies: list[bytes]) -> None:
    client = WebClient(archive)
    headers = {
        "Accept": DICOM_JSON,
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={STOW_BOUNDARY}',
    }
    try:
        for body in bodies:
            answer = client.request("POST", "/studies", headers, body)
            failed = json_body(answer).get("00081198", {}).get("Value") if answer.body else None
            if answer.status != 200 or failed:  # FailedSOPSequence: Orthanc sends it empty
                raise RuntimeError(
                    f"{archive.system} STOW-RS: HTTP {answer.status} {answer.body[:300]!r}"
                )
    finally:
        client.close()


def dicomweb_session(system: str, data: Data, sizes: Sizes, figures: Figures) -> None:
    options = {} if system == "pacsnode" else {"dicomweb": True}
    figures.notes["DICOMweb"] = DICOMWEB_NOTE
    bodies = stow_bodies(data.b.blobs())
    with make_archive(system, **options) as archive:
        stored = warm_up(archive, data)
        scenario = f"9 DICOMweb STOW-RS: set B, {STOW_BATCH} instances a request, 1 client"
        progress(f"{system}: {scenario}")
        cpu = archive.cpu()
        seconds = timed(lambda: stow(archive, bodies))
        cpu = archive.cpu() - cpu
        stored += len(data.b.files)
        archive.expect_count(stored)
        figures.add(rate(scenario), system, len(data.b.files) / seconds)
        figures.add(
            Measure(scenario, "server CPU an instance", "ms", False),
            system,
            cpu / len(data.b.files) * 1000,
        )
        progress(f"{system}: 9 loading set A (POST /instances, 4 clients), then sealing")
        rest_ingest(archive, data.a.blobs(), 4)
        archive.expect_count(stored + len(data.a.files))
        archive.settle()  # pacsnode serves sealed studies, as an archive mostly does
        client = WebClient(archive)
        try:
            qido_scenarios(system, client, data, sizes, figures)
            metadata_scenarios(system, client, data, sizes, figures)
            frame_scenarios(system, client, data, figures)
        finally:
            client.close()


# --- running ------------------------------------------------------------------------------


def alternate(repetition: int, systems: tuple[str, ...]) -> tuple[str, ...]:
    return systems if repetition % 2 == 0 else systems[::-1]


def guarded(figures: Figures, name: str, work: Callable[[], object]) -> None:
    """Run one session; a failure is reported and the others still run."""
    try:
        work()
    except Exception as exc:
        progress(f"{name} FAILED: {exc}")
        figures.notes.setdefault("failures", []).append(f"{name}: {exc}"[:2000])


def run(sizes: Sizes, only: set[str], systems: tuple[str, ...], figures: Figures) -> None:
    work = Path(tempfile.mkdtemp(prefix="pacsnode-vs-data-", dir="/tmp"))
    try:
        data = make_data(sizes, work)
        figures.notes["set A"] = {"instances": len(data.a.files), "bytes": data.a.total_bytes}
        figures.notes["set B"] = {"instances": len(data.b.files), "bytes": data.b.total_bytes}
        for repetition in range(sizes.repeat):
            for system in alternate(repetition, systems):
                label = f"{system}, repetition {repetition}"
                if "dicom" in only:
                    guarded(
                        figures,
                        f"DICOM, {label}",
                        lambda s=system: dicom_session(s, data, sizes, figures, work),
                    )
                    guarded(
                        figures,
                        f"4 storescu, {label}",
                        lambda s=system: concurrent_dicom_session(s, data, figures),
                    )
                    if repetition == 0:  # at ~40 ms a message, once is enough
                        guarded(
                            figures,
                            f"as shipped, {label}",
                            lambda s=system: shipped_dicom_session(s, data, figures),
                        )
                if "rest" in only:
                    for clients in (1, 4):
                        guarded(
                            figures,
                            f"REST {clients}, {label}",
                            lambda s=system, c=clients: rest_session(s, data, c, figures),
                        )
                if "dicomweb" in only:
                    guarded(
                        figures,
                        f"DICOMweb, {label}",
                        lambda s=system: dicomweb_session(s, data, sizes, figures),
                    )
        if "peering" in only:
            guarded(figures, "peering", lambda: peering(data, sizes, systems, figures))
        if "depth" in only:
            depth_set = DepthSet(sizes.depths[-1] + sizes.probe * len(sizes.depths))
            for system in systems:
                if system != "Orthanc+zlib":  # storing 100k twice more adds little
                    guarded(
                        figures,
                        f"depth, {system}",
                        lambda s=system: depth_session(s, depth_set, sizes, figures),
                    )
            del depth_set
    finally:
        shutil.rmtree(work, ignore_errors=True)


def peering(data: Data, sizes: Sizes, systems: tuple[str, ...], figures: Figures) -> None:
    loopback = Route("loopback", None, None, "127.0.0.1")
    for system in systems:
        guarded(
            figures,
            f"peering loopback, {system}",
            lambda s=system: peering_session(s, loopback, data, sizes, figures),
        )
    problem = available()
    if problem:
        progress(f"skipping the emulated WAN: {problem}")
        figures.notes["WAN"] = f"skipped: {problem}"
        return
    with wan_link(0.025) as link:
        ceiling = measure_ceiling(link)
        figures.notes["WAN link"] = link_note(link, ceiling)
        path = Route("50 ms RTT (TUN)", link.a, link.b, link.address_b)
        for system in systems:
            guarded(
                figures,
                f"peering WAN, {system}",
                lambda s=system: peering_session(s, path, data, sizes, figures),
            )


def link_note(link: WanLink, ceiling: Ceiling) -> dict[str, Any]:
    return {
        "one_way_delay_s": link.one_way_delay_s,
        "mtu": link.mtu,
        "measured_rtt_ms": ceiling.rtt_ms,
        "one_tcp_stream_100MB_MB_per_s": ceiling.bulk_mb_per_s,
    }


# --- setup and output --------------------------------------------------------------------


def ensure_installed() -> None:
    """Debian's orthanc and dcmtk, when missing (the system service is never used)."""
    missing = [
        package
        for package, path in (("orthanc", Path(ORTHANC)), ("dcmtk", DCMTK / "storescu"))
        if not path.exists()
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"install {' '.join(missing)} (apt-get needs root)")
    progress(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", *missing], check=True, env=env)


def versions() -> dict[str, Any]:
    def first_line(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True)
        return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else ""

    return {
        "orthanc": first_line([ORTHANC, "--version"]),
        "dcmtk": first_line([str(DCMTK / "storescu"), "--version"]),
        **code_and_machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--repeat", type=int, help="repetitions per scenario (default 3)")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated among {SCENARIOS}"
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated among {SYSTEMS}"
    )
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if not only <= set(SCENARIOS):
        parser.error(f"--only takes names among {', '.join(SCENARIOS)}")
    systems = tuple(args.systems.split(","))
    if not set(systems) <= set(SYSTEMS):
        parser.error(f"--systems takes names among {', '.join(SYSTEMS)}")
    sizes = QUICK if args.quick else FULL
    if args.repeat:
        sizes = Sizes(**{**asdict(sizes), "repeat": args.repeat})
    ensure_installed()
    figures = Figures()
    figures.notes["environment"] = {**versions(), "sizes": asdict(sizes)}
    started = time.perf_counter()
    run(sizes, only, systems, figures)
    figures.notes["benchmark seconds"] = time.perf_counter() - started
    print(figures.markdown())
    for key in (
        "WAN link",
        "WAN",
        "DICOMweb",
        "DICOMweb metadata answers",
        "failures",
        "depth fill: server errors retried",
    ):
        if key in figures.notes:
            print(f"\n{key}: {figures.notes[key]}")
    if args.json:
        args.json.write_text(json.dumps(figures.as_json(), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
