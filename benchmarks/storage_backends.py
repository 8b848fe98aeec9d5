"""The storage backends side by side: a real ``pacsnode serve`` on the data disk, on an
S3 bucket (SeaweedFS on loopback), and on the bucket with its local study cache, run by hand.

    python -m benchmarks.storage_backends [--quick] [--json out.json]

Prints one Markdown table (a column per backend) to stdout, progress to stderr. For each
backend a fresh node takes set A (a CT study, 512x512 slices) and set B (small instances,
one study per patient) over DICOM (storescu), then waits until every study is sealed
(that is when a ZIP goes to the bucket: the time is the seal and the upload). The node is
restarted, so that no cache of the node's holds a study, and reads set A: every file over
REST twice (cold, then warm), the first frame of every instance over WADO-RS, the study's
metadata, and the study by C-GET. MB = 10^6 bytes, MiB = 2^20 bytes.

Run it on a quiet machine: figures move with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.node_bench import (
    MB,
    MIB,
    BenchNode,
    DataSet,
    fetch_files,
    getscu_study,
    percentile_ms,
    progress,
    storescu,
    time_each,
    timed,
    write_set,
)
from benchmarks.report import code_and_machine, format_value
from benchmarks.synthetic import ct_study, small_instances, uid
from tests.node.server import NodeProcess
from tests.s3_server import BUCKET, SeaweedFS, unique_prefix

CT_PATIENT = 900
STABLE_AGE_S = 1.0


@dataclass(frozen=True)
class Sizes:
    ct: int
    small_patients: int
    small_per_series: int


FULL = Sizes(ct=300, small_patients=100, small_per_series=10)
QUICK = Sizes(ct=40, small_patients=10, small_per_series=10)


class BackendNode(BenchNode):
    """A node in a fresh temp dir with the given ``[storage]``/``[plugins]`` TOML."""

    def __init__(self, extra_toml: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="pacsnode-backendbench-", dir="/tmp"))
        self.node = NodeProcess(self.directory, extra_toml=extra_toml)
        self._connection = None

    def reconnect(self) -> None:
        """Drop the keep-alive connection: the node closes one left idle (during a long
        storescu), and the next request would meet a broken pipe."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def restart(self) -> None:
        self.reconnect()
        self.node.stop()
        self.node.start()


class Table:
    """Figures by (scenario, unit), a column per backend."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, float]] = {}
        self.columns: list[str] = []

    def add(self, column: str, scenario: str, value: float, unit: str) -> None:
        if column not in self.columns:
            self.columns.append(column)
        self.rows.setdefault((scenario, unit), {})[column] = value

    def markdown(self) -> str:
        lines = [
            "| scenario | " + " | ".join(self.columns) + " | unit |",
            "| --- |" + " ---: |" * len(self.columns) + " --- |",
        ]
        for (scenario, unit), values in self.rows.items():
            cells = [format_value(values[c]) if c in values else "" for c in self.columns]
            lines.append(f"| {scenario} | " + " | ".join(cells) + f" | {unit} |")
        return "\n".join(lines)


def backends(server: SeaweedFS) -> dict[str, Callable[[], str]]:
    """Column name -> the node's TOML (a fresh prefix of the bucket for each S3 run)."""
    storage = {"stable_age_s": STABLE_AGE_S}
    local = f"[storage]\nstable_age_s = {STABLE_AGE_S}\n"
    return {
        "local disk": lambda: local,
        "S3": lambda: server.toml(BUCKET, unique_prefix(), storage),
        "S3 + cache": lambda: server.toml(BUCKET, unique_prefix(), storage, cache_mb=2048),
    }


def ingest(table: Table, column: str, node: BackendNode, data: DataSet, label: str) -> None:
    result = timed(node, lambda: storescu(node, data))
    table.add(column, f"C-STORE {label} (storescu)", len(data.files) / result.seconds, "inst/s")
    # Seal and upload: until every study is stable, less the quiet time it waits first.
    node.reconnect()
    started = time.perf_counter()
    while node.unstable_studies():
        if time.perf_counter() - started > 600:
            raise RuntimeError("studies still not sealed after 600 s")
        time.sleep(0.02)
    sealed = time.perf_counter() - started - STABLE_AGE_S
    table.add(column, f"seal {label} after its C-STORE", max(sealed, 0.0), "s")


def frames(node: BackendNode, study_uid: str) -> list[Callable[[], object]]:
    query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
    series = node.call("POST", "/tools/find", query)
    connection = node.connect()

    def frame(instance: dict[str, Any]) -> Callable[[], object]:
        tags = instance["MainDicomTags"]
        path = (
            f"/dicom-web/studies/{study_uid}/series/{uid(CT_PATIENT, 1, 1)}"
            f"/instances/{tags['SOPInstanceUID']}/frames/1"
        )

        def call() -> None:
            connection.request("GET", path)
            answer = connection.getresponse()
            if answer.status != 200 or len(answer.read()) < 512 * 512 * 2:
                raise RuntimeError(f"GET {path}: HTTP {answer.status}")

        return call

    return [frame(instance) for instance in series]


def files_timed(node: BackendNode, ids: list[str]) -> tuple[float, int]:
    """Seconds to GET every file, and the bytes received."""
    received: list[int] = []
    result = timed(node, lambda: received.append(fetch_files(node, ids)))
    return result.seconds, received[0]


def retrieval(table: Table, column: str, node: BackendNode, a: DataSet, work: Path) -> None:
    study_uid = uid(CT_PATIENT, 1)
    query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
    ids = node.call("POST", "/tools/find", query)
    for label in ("cold", "warm"):
        scenario = f"GET /instances/{{id}}/file, set A ({label})"
        seconds, received = files_timed(node, ids)
        table.add(column, scenario, len(ids) / seconds, "inst/s")
        table.add(column, scenario, received / MB / seconds, "MB/s")
    samples = time_each(frames(node, study_uid))
    scenario = "WADO-RS frames/1 of each instance of set A"
    table.add(column, scenario, len(samples) / sum(samples), "frames/s")
    table.add(column, f"{scenario}, p50", percentile_ms(samples, 50), "ms")
    table.add(column, f"{scenario}, p99", percentile_ms(samples, 99), "ms")
    metadata = time_each(
        [lambda: node.call("GET", f"/dicom-web/studies/{study_uid}/metadata")] * 20
    )
    table.add(column, "WADO-RS study metadata of set A, p50", percentile_ms(metadata, 50), "ms")
    result = timed(node, lambda: getscu_study(node, study_uid, work / f"getscu-{column}"))
    table.add(column, "C-GET set A (getscu)", len(a.files) / result.seconds, "inst/s")


def run_backend(table: Table, column: str, toml: str, a: DataSet, b: DataSet, work: Path) -> None:
    progress(f"{column}: ingest")
    with BackendNode(toml) as node:
        ingest(table, column, node, a, f"set A ({len(a.files)} CT slices)")
        ingest(table, column, node, b, f"set B ({len(b.files)} small)")
        table.add(column, "serve process, peak RSS (VmHWM) after ingest", node.hwm() / MIB, "MiB")
        node.restart()  # nothing of set A cached by the node
        progress(f"{column}: retrieval")
        retrieval(table, column, node, a, work)
        table.add(column, "serve process, peak RSS (VmHWM) of retrieval", node.hwm() / MIB, "MiB")


def run(sizes: Sizes, table: Table) -> None:
    work = Path(tempfile.mkdtemp(prefix="pacsnode-backendbench-data-", dir="/tmp"))
    server = SeaweedFS(work / "seaweedfs").start()
    try:
        server.create_bucket(BUCKET)
        progress(f"writing set A ({sizes.ct} CT slices) and set B")
        a = write_set("A", work / "a", ct_study(sizes.ct, patient=CT_PATIENT))
        b = write_set(
            "B", work / "b", small_instances(sizes.small_patients, sizes.small_per_series)
        )
        for column, toml in backends(server).items():
            run_backend(table, column, toml(), a, b, work)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sets, about a minute")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    environment = code_and_machine()
    table = Table()
    run(sizes, table)
    print(table.markdown())
    if args.json:
        rows = [{"scenario": s, "unit": u, **v} for (s, u), v in table.rows.items()]
        args.json.write_text(json.dumps({"environment": environment, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
