"""Node-level speed and memory of a real ``pacsnode serve`` process, run by hand.

    python -m benchmarks.node_bench [--quick] [--json out.json]

Prints one Markdown table to stdout (progress goes to stderr) and optionally
writes the figures as JSON. MB = 10^6 bytes, MiB = 2^20 bytes. Every node runs
in its own temp dir under /tmp (config, data, log), removed afterwards.

- A: one CT study (512x512 uint16), B: small 64x64 instances (2 series of 10
  per patient, one study each); both written to files before any timing.
- C-STORE uses DCMTK's ``/usr/bin/storescu`` (one association per set), with
  ``TCP_NODELAY=1`` unless a row says otherwise; C-GET uses ``/usr/bin/getscu``.
- REST uses keep-alive ``http.client`` connections, one per client thread.
- C-FIND uses pynetdicom in this process: one association, TCP_NODELAY set on
  both ends, every response of a query read before the next one is sent.
- Sealing must not run under a timed step: the main node's ``stable_age_s`` (the
  default 60 s in the full run, shortened with --quick) outlasts each C-STORE, and
  the benchmark waits until every study is sealed before going on. "staged"
  retrieval reads instances before their study is sealed, "sealed" after.
- Ingest rates are bound by fsync latency (several fsyncs per instance), so on a
  shared or virtual disk they vary from run to run; compare runs on one machine.
- Memory is read from ``/proc/PID/status`` of the serve process: VmRSS when idle
  after start, VmHWM (peak RSS since start) after a scenario.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from benchmarks.report import Report, code_and_machine
from benchmarks.servers import cpu_seconds, proc_status
from benchmarks.synthetic import ct_study, small_instances, uid
from pacsnode.node.dicom.network import set_nodelay
from tests.node.server import NodeProcess

MB = 1_000_000
MIB = 1 << 20
DCMTK_BIN = Path("/usr/bin")
CT_PATIENT = 900  # not one of set B's patients, so set A never collides with B's UIDs
SUCCESS = 0x0000
PENDING_STATUSES = (0xFF00, 0xFF01)


@dataclass(frozen=True)
class Sizes:
    ct: int
    small_patients: int
    small_per_series: int
    queries: int
    stable_age_s: float

    @property
    def small(self) -> int:
        return self.small_patients * 2 * self.small_per_series


FULL = Sizes(ct=300, small_patients=100, small_per_series=10, queries=200, stable_age_s=60)
QUICK = Sizes(ct=30, small_patients=10, small_per_series=10, queries=50, stable_age_s=5)


def progress(message: str) -> None:
    print(f"[node_bench] {message}", file=sys.stderr, flush=True)


# --- data sets -----------------------------------------------------------------------


@dataclass(frozen=True)
class DataSet:
    name: str
    folder: Path
    files: list[Path]
    total_bytes: int

    def blobs(self) -> list[bytes]:
        return [path.read_bytes() for path in self.files]


def write_set(name: str, folder: Path, blobs: Iterable[bytes]) -> DataSet:
    folder.mkdir(parents=True)
    files, total = [], 0
    for number, blob in enumerate(blobs):
        path = folder / f"{number:05d}.dcm"
        path.write_bytes(blob)
        files.append(path)
        total += len(blob)
    return DataSet(name, folder, files, total)


# --- the node under test -------------------------------------------------------------


class BenchNode:
    """A ``pacsnode serve`` process in a fresh temp dir, as the end-to-end tests start it."""

    def __init__(self, stable_age_s: float | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="pacsnode-nodebench-", dir="/tmp"))
        extra = "" if stable_age_s is None else f"[storage]\nstable_age_s = {stable_age_s}\n"
        self.node = NodeProcess(self.directory, extra_toml=extra)
        self._connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> BenchNode:
        try:
            self.node.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        try:
            self.node.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.node.process is not None
        return self.node.process.pid

    @property
    def dicom_port(self) -> int:
        return self.node.dicom_port

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.node.http_port, timeout=120)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON request on this process's keep-alive connection."""
        if self._connection is None:
            self._connection = self.connect()
        data = None if body is None else json.dumps(body).encode()
        self._connection.request(method, path, body=data)
        answer = self._connection.getresponse()
        payload = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {answer.status} {payload[:300]!r}")
        return json.loads(payload)

    def instance_count(self) -> int:
        return int(self.call("GET", "/statistics")["CountInstances"])

    def expect_count(self, expected: int) -> None:
        count = self.instance_count()
        if count != expected:
            raise RuntimeError(f"/statistics shows {count} instances, expected {expected}")

    def rss(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def hwm(self) -> int:
        return proc_status(self.pid, "VmHWM")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def unstable_studies(self) -> int:
        studies = self.call("POST", "/tools/find", {"Level": "Study", "Query": {}, "Expand": True})
        return sum(1 for study in studies if not study["IsStable"])

    def wait_stable(self, timeout_s: float) -> float:
        """Wait until every study is sealed; return how long that took."""
        start = time.perf_counter()
        while self.unstable_studies():
            if time.perf_counter() - start > timeout_s:
                raise RuntimeError(f"studies still not stable after {timeout_s} s")
            time.sleep(0.25)
        return time.perf_counter() - start


# --- measuring -----------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    seconds: float
    server_cpu_s: float


def timed(node: BenchNode, work: Callable[[], object]) -> Timed:
    cpu_before = node.cpu()
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    return Timed(seconds, node.cpu() - cpu_before)


def percentile_ms(samples: list[float], percent: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1] * 1000


def add_throughput(
    report: Report, group: str, result: Timed, count: int, total_bytes: int | None
) -> None:
    report.add(group, "instances/s", count / result.seconds, "inst/s")
    if total_bytes is not None:
        report.add(group, "throughput", total_bytes / MB / result.seconds, "MB/s")
    report.add(group, "server CPU per instance", result.server_cpu_s / count * 1000, "ms")
    report.raw[group] = {
        "count": count,
        "bytes": total_bytes,
        "seconds": result.seconds,
        "server_cpu_s": result.server_cpu_s,
    }


# --- DICOM (DCMTK) -------------------------------------------------------------------


def dcmtk(
    tool: str, node: BenchNode, options: list[str], nodelay: bool, files: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "TCP_NODELAY"}
    if nodelay:
        env["TCP_NODELAY"] = "1"
    command = [str(DCMTK_BIN / tool), "-aec", "PACSNODE", *options]
    command += ["127.0.0.1", str(node.dicom_port), *files]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} exited with {done.returncode}: {done.stderr[-2000:]}")
    return done


def storescu(node: BenchNode, data: DataSet, nodelay: bool = True) -> None:
    # +sd scans the folder; every file goes over one association
    dcmtk("storescu", node, ["+sd"], nodelay, files=(str(data.folder),))


def getscu_study(node: BenchNode, study_uid: str, out: Path) -> int:
    out.mkdir(parents=True)
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]
    dcmtk("getscu", node, ["-S", "-od", str(out), *keys], nodelay=True)
    return sum(1 for _ in out.iterdir())


def cstore_scenario(
    report: Report, node: BenchNode, data: DataSet, group: str, nodelay: bool, before: int
) -> None:
    progress(f"{group}: storescu of {len(data.files)} files")
    result = timed(node, lambda: storescu(node, data, nodelay))
    node.expect_count(before + len(data.files))
    add_throughput(report, group, result, len(data.files), data.total_bytes)


# --- REST ----------------------------------------------------------------------------


def post_all(node: BenchNode, blobs: list[bytes], errors: list[str]) -> None:
    connection = node.connect()
    try:
        for blob in blobs:
            connection.request(
                "POST", "/instances", body=blob, headers={"Content-Type": "application/dicom"}
            )
            answer = connection.getresponse()
            payload = answer.read()
            if answer.status != 200 or json.loads(payload).get("Status") != "Success":
                errors.append(f"HTTP {answer.status}: {payload[:200]!r}")
                return
    finally:
        connection.close()


def rest_ingest(node: BenchNode, blobs: list[bytes], clients: int) -> None:
    errors: list[str] = []
    shares = [blobs[start::clients] for start in range(clients)]
    threads = [threading.Thread(target=post_all, args=(node, share, errors)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"POST /instances failed: {errors[0]}")


def rest_ingest_scenario(report: Report, data: DataSet, clients: int) -> None:
    group = f"REST POST /instances, set B, {clients} client{'s' if clients > 1 else ''}"
    blobs = data.blobs()
    with BenchNode() as node:
        progress(f"{group}: {len(blobs)} instances")
        result = timed(node, lambda: rest_ingest(node, blobs, clients))
        node.expect_count(len(blobs))
        add_throughput(report, group, result, len(blobs), data.total_bytes)
        report.add(group, "peak RSS (VmHWM)", node.hwm() / MIB, "MiB")


def fetch_files(node: BenchNode, instance_ids: list[str]) -> int:
    connection = node.connect()
    total = 0
    try:
        for instance_id in instance_ids:
            connection.request("GET", f"/instances/{instance_id}/file")
            answer = connection.getresponse()
            body = answer.read()
            if answer.status != 200 or body[128:132] != b"DICM":
                raise RuntimeError(f"GET /instances/{instance_id}/file: HTTP {answer.status}")
            total += len(body)
    finally:
        connection.close()
    return total


def rest_retrieval(report: Report, node: BenchNode, study_uid: str, label: str) -> None:
    group = f"REST GET /instances/{{id}}/file, set A ({label})"
    query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
    instance_ids = node.call("POST", "/tools/find", query)
    progress(f"{group}: {len(instance_ids)} files")
    received: list[int] = []
    result = timed(node, lambda: received.append(fetch_files(node, instance_ids)))
    add_throughput(report, group, result, len(instance_ids), received[0])


# --- queries -------------------------------------------------------------------------


def time_each(calls: Iterable[Callable[[], object]]) -> list[float]:
    samples = []
    for call in calls:
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def add_latency(report: Report, group: str, samples: list[float], answers: int) -> None:
    report.add(group, "p50", percentile_ms(samples, 50), "ms")
    report.add(group, "p99", percentile_ms(samples, 99), "ms")
    report.raw[group] = {
        "queries": len(samples),
        "answers": answers,
        "mean_ms": statistics.fmean(samples) * 1000,
        "max_ms": max(samples) * 1000,
    }


def rest_find_latency(report: Report, node: BenchNode, sizes: Sizes, rng: random.Random) -> None:
    group = f"REST /tools/find Study by PatientID ({sizes.queries} queries)"
    progress(group)
    answers: list[int] = []

    def query(patient: int) -> Callable[[], object]:
        body = {"Level": "Study", "Query": {"PatientID": f"PAT{patient:05d}"}}
        return lambda: answers.append(len(node.call("POST", "/tools/find", body)))

    patients = [rng.randint(1, sizes.small_patients) for _ in range(sizes.queries)]
    node.call("POST", "/tools/find", {"Level": "Study", "Query": {"PatientID": "PAT00001"}})
    samples = time_each(query(patient) for patient in patients)
    if any(count != 1 for count in answers):
        raise RuntimeError("a PatientID query did not find exactly one study")
    add_latency(report, group, samples, sum(answers))


def find_identifier(prefix: int) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = f"Synthetic^Patient{prefix}*"
    identifier.PatientID = ""
    identifier.StudyInstanceUID = ""
    identifier.StudyDate = ""
    identifier.StudyDescription = ""
    identifier.NumberOfStudyRelatedInstances = ""
    return identifier


@contextlib.contextmanager
def find_association(node: BenchNode) -> Iterator[Any]:
    ae = AE(ae_title="NODEBENCH")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(
        "127.0.0.1",
        node.dicom_port,
        ae_title="PACSNODE",
        evt_handlers=[(evt.EVT_CONN_OPEN, set_nodelay)],
    )
    if not assoc.is_established:
        raise RuntimeError("C-FIND association was not accepted")
    try:
        yield assoc
    finally:
        assoc.release()
        ae.shutdown()


def c_find(assoc: Any, identifier: Dataset) -> int:
    matches = 0
    for status, answer in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
        code = getattr(status, "Status", None)
        if code in PENDING_STATUSES and answer is not None:
            matches += 1
        elif code != SUCCESS:
            raise RuntimeError(f"C-FIND answered status {code!r}")
    return matches


def cfind_latency(report: Report, node: BenchNode, sizes: Sizes, rng: random.Random) -> None:
    group = f"C-FIND Study by PatientName wildcard ({sizes.queries} queries)"
    progress(group)
    prefixes = [rng.randint(1, 9) for _ in range(sizes.queries)]
    answers: list[int] = []
    with find_association(node) as assoc:
        c_find(assoc, find_identifier(1))
        samples = time_each(
            (lambda p=prefix: answers.append(c_find(assoc, find_identifier(p))))
            for prefix in prefixes
        )
    if not all(answers):
        raise RuntimeError("a C-FIND query found nothing")
    add_latency(report, group, samples, sum(answers))
    report.add(group, "matches per query (mean)", statistics.fmean(answers), "studies")


# --- scenarios -----------------------------------------------------------------------


def memory_row(report: Report, group: str, node: BenchNode, key: str) -> None:
    value = node.rss() if key == "VmRSS" else node.hwm()
    label = "idle RSS (VmRSS)" if key == "VmRSS" else "peak RSS (VmHWM)"
    report.add(group, label, value / MIB, "MiB")


def main_node_scenarios(report: Report, sizes: Sizes, a: DataSet, b: DataSet, work: Path) -> None:
    """C-STORE A and B, staged and sealed retrieval, queries, C-GET: one node."""
    study_a = uid(CT_PATIENT, 1)
    rng = random.Random(1234)
    wait_limit = sizes.stable_age_s * 3 + 60
    with BenchNode(stable_age_s=sizes.stable_age_s) as node:
        time.sleep(1.0)  # let start-up settle before reading the idle figure
        memory_row(report, "serve process", node, "VmRSS")
        cstore_scenario(report, node, a, "C-STORE set A (storescu, TCP_NODELAY=1)", True, 0)
        rest_retrieval(report, node, study_a, "staged")
        if node.unstable_studies() != 1:
            progress("warning: study A was sealed during the staged retrieval")
        sealed_a = node.wait_stable(wait_limit)
        report.raw["seconds until A stable after staged retrieval"] = sealed_a
        cstore_scenario(
            report, node, b, "C-STORE set B (storescu, TCP_NODELAY=1)", True, len(a.files)
        )
        memory_row(report, "serve process after C-STORE A+B", node, "VmHWM")
        if node.unstable_studies() != sizes.small_patients:
            progress("warning: studies of set B were sealed during their C-STORE")
        report.raw["seconds until B stable"] = node.wait_stable(wait_limit)
        rest_find_latency(report, node, sizes, rng)
        cfind_latency(report, node, sizes, rng)
        rest_retrieval(report, node, study_a, "sealed")
        group = "C-GET set A (getscu, TCP_NODELAY=1, sealed)"
        progress(group)
        got: list[int] = []
        result = timed(node, lambda: got.append(getscu_study(node, study_a, work / "getscu")))
        if got[0] != len(a.files):
            raise RuntimeError(f"getscu received {got[0]} files, expected {len(a.files)}")
        report.add(group, "wall time", result.seconds, "s")
        add_throughput(report, group, result, len(a.files), a.total_bytes)
        memory_row(report, "serve process after everything", node, "VmHWM")


def cstore_without_nodelay(report: Report, b: DataSet) -> None:
    with BenchNode() as node:
        group = "C-STORE set B (storescu, no TCP_NODELAY: the default)"
        cstore_scenario(report, node, b, group, False, 0)
        report.add(group, "peak RSS (VmHWM)", node.hwm() / MIB, "MiB")


def run(sizes: Sizes, report: Report) -> None:
    work = Path(tempfile.mkdtemp(prefix="pacsnode-nodebench-data-", dir="/tmp"))
    try:
        progress(f"writing set A ({sizes.ct} CT slices) and set B ({sizes.small} small)")
        a = write_set("A", work / "a", ct_study(sizes.ct, patient=CT_PATIENT))
        small = small_instances(sizes.small_patients, sizes.small_per_series)
        b = write_set("B", work / "b", small)
        report.raw["set A"] = {"instances": len(a.files), "bytes": a.total_bytes}
        report.raw["set B"] = {"instances": len(b.files), "bytes": b.total_bytes}
        main_node_scenarios(report, sizes, a, b, work)
        cstore_without_nodelay(report, b)
        for clients in (1, 4):
            rest_ingest_scenario(report, b, clients)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- output --------------------------------------------------------------------------


def environment(sizes: Sizes) -> dict[str, Any]:
    return {"sizes": asdict(sizes), **code_and_machine()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    report = Report()
    report.raw["environment"] = environment(sizes)
    started = time.perf_counter()
    run(sizes, report)
    report.raw["benchmark seconds"] = time.perf_counter() - started
    print(report.markdown("scenario"))
    if args.json:
        rows = [asdict(row) for row in report.rows]
        args.json.write_text(json.dumps({"rows": rows, "raw": report.raw}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
