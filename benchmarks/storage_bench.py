"""Speed, disk use and memory of :class:`storage.store.StudyStore`, run by hand.

    python -m benchmarks.storage_bench [--quick] [--only A,B,C,D] [--json out.json]

Prints one Markdown table to stdout (progress goes to stderr) and optionally
writes the raw figures as JSON. MB = 10^6 bytes throughout. Every store lives
in a temp dir under /tmp that is removed afterwards.

- A: one CT study (512x512 uint16), P10 bytes generated in memory before timing.
- B: many small instances (64x64, 2 series of 10 per patient, one study each).
- C: one large CT study (~1 GB of P10), generated and put one instance at a
  time; it is sealed in a fresh ``spawn`` child so that the peak RSS covers the
  seal only (the child's high-water mark is reset after ``open()``).
- D: the CT study of A as a sealed ZIP from a peer, merged into an empty store
  (validation included), repeated; wall and CPU time are medians.

fsync calls are counted and timed by wrapping ``os.fsync`` in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import Report
from benchmarks.synthetic import SeriesSpec, ct_study, make_instance, p10, small_instances
from pacsnode.storage.results import PutStatus
from pacsnode.storage.store import StudyStore

MB = 1_000_000
RSS_TARGET_BYTES = 200 * MB
APPEND_ROUNDS = 3
MERGE_ROUNDS = 5
SETS = ("A", "B", "C", "D")
_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Sizes:
    ct: int
    small_patients: int
    small_per_series: int
    big: int


FULL = Sizes(ct=300, small_patients=100, small_per_series=10, big=2000)
QUICK = Sizes(ct=30, small_patients=10, small_per_series=10, big=200)


# --- measuring -----------------------------------------------------------------------


@dataclass
class FsyncMeter:
    """Counts and times every ``os.fsync`` while installed."""

    calls: int = 0
    seconds: float = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[FsyncMeter]:
        real = os.fsync

        def metered(fd: int) -> None:
            start = time.perf_counter()
            try:
                real(fd)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        os.fsync = metered
        try:
            yield self
        finally:
            os.fsync = real


@dataclass(frozen=True)
class Timed:
    seconds: float
    fsync_calls: int
    fsync_seconds: float


def timed(meter: FsyncMeter, action: Callable[[], object]) -> Timed:
    calls, fsync_seconds = meter.calls, meter.seconds
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    return Timed(elapsed, meter.calls - calls, meter.seconds - fsync_seconds)


def _proc_status_bytes(field_name: str) -> int | None:
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); return whether it worked."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


# --- store helpers -------------------------------------------------------------------


@contextlib.contextmanager
def opened_store(root: Path) -> Iterator[StudyStore]:
    store = StudyStore(root)
    store.open()
    try:
        yield store
    finally:
        store.close()


def put_all(store: StudyStore, files: Iterable[bytes]) -> set[str]:
    """Put each file; return the study UIDs. Anything but a fresh store is an error."""
    studies: set[str] = set()
    for data in files:
        result = store.put_instance(data)
        if result.status is not PutStatus.STORED:
            raise RuntimeError(f"put gave {result.status} for {result.instance.sop_uid}")
        studies.add(result.instance.study_uid)
    return studies


def disk_bytes(store: StudyStore, study_uids: Iterable[str]) -> int:
    return sum(store.study_size(uid).disk_bytes for uid in study_uids)


def seal_all(store: StudyStore) -> int:
    pending = store.pending_studies()
    for study_uid in pending:
        store.seal(study_uid)
    return len(pending)


# --- A and B: ingest, seal, disk use -------------------------------------------------


def bench_ingest_and_seal(
    store: StudyStore, group: str, files: list[bytes], meter: FsyncMeter, report: Report
) -> set[str]:
    """Put ``files``, seal every pending study; add rows for rates and disk use."""
    count, p10_bytes = len(files), sum(len(data) for data in files)
    studies: set[str] = set()
    put = timed(meter, lambda: studies.update(put_all(store, files)))
    staged = disk_bytes(store, studies)
    sealed_count: list[int] = []
    seal = timed(meter, lambda: sealed_count.append(seal_all(store)))
    sealed = disk_bytes(store, studies)
    if store.pending_studies():
        raise RuntimeError(f"{group}: studies still pending after sealing")

    report.add(group, "input", f"{count} inst / {len(studies)} studies / {p10_bytes / MB:.1f} MB")
    report.add(group, "put rate", count / put.seconds, "instances/s")
    report.add(group, "put rate (P10 input)", p10_bytes / MB / put.seconds, "MB/s")
    report.add(group, "put latency (mean)", put.seconds / count * 1000, "ms")
    report.add(group, "fsync per put", f"{put.fsync_calls / count:.1f} calls", "")
    report.add(group, "fsync time per put", put.fsync_seconds / count * 1000, "ms")
    report.add(group, "fsync share of put time", put.fsync_seconds / put.seconds * 100, "%")
    report.add(group, "seal time (all studies)", seal.seconds, "s")
    report.add(group, "seal rate (staged bytes)", staged / MB / seal.seconds, "MB/s")
    report.add(group, "seal rate (P10 input)", p10_bytes / MB / seal.seconds, "MB/s")
    report.add(group, "fsync in seal", f"{seal.fsync_calls} calls / {seal.fsync_seconds:.2f} s")
    report.add(group, "staged bytes / P10", staged / p10_bytes, "ratio")
    report.add(group, "sealed bytes / P10", sealed / p10_bytes, "ratio")
    report.raw[group] = {
        "instances": count,
        "studies": len(studies),
        "sealed_studies": sealed_count[0],
        "p10_bytes": p10_bytes,
        "staged_bytes": staged,
        "sealed_bytes": sealed,
        "put": asdict(put),
        "seal": asdict(seal),
    }
    return studies


def bench_append(
    store: StudyStore, study_uid: str, sizes: Sizes, meter: FsyncMeter, report: Report
) -> None:
    """Add one instance at a time to the sealed CT study and seal again."""
    spec = SeriesSpec(1, 1, 1, sizes.ct + APPEND_ROUNDS)  # the series ct_study() makes
    puts: list[Timed] = []
    seals: list[Timed] = []
    zip_bytes: list[int] = []
    for round_index in range(APPEND_ROUNDS):
        data = p10(make_instance(spec, index=sizes.ct + round_index))
        puts.append(timed(meter, lambda data=data: put_all(store, [data])))
        seals.append(timed(meter, lambda: store.seal(study_uid)))
        zip_bytes.append(disk_bytes(store, [study_uid]))
    put_s = statistics.median(t.seconds for t in puts)
    seal_s = statistics.median(t.seconds for t in seals)
    group = f"A +1 to sealed {sizes.ct}"
    report.add(group, f"put 1 instance (median of {APPEND_ROUNDS})", put_s * 1000, "ms")
    report.add(group, f"seal after +1 (median of {APPEND_ROUNDS})", seal_s * 1000, "ms")
    report.add(group, "study ZIP rewritten per seal", statistics.median(zip_bytes) / MB, "MB")
    report.raw["append"] = {
        "put": [asdict(t) for t in puts],
        "seal": [asdict(t) for t in seals],
        "zip_bytes": zip_bytes,
    }


def bench_ct(root: Path, sizes: Sizes, meter: FsyncMeter, report: Report) -> None:
    _progress(f"A: generating {sizes.ct} CT instances")
    files = list(ct_study(sizes.ct))
    _progress("A: put + seal")
    with opened_store(root) as store:
        (study_uid,) = bench_ingest_and_seal(store, f"A CT {sizes.ct}x512²", files, meter, report)
        del files
        _progress("A: append one instance to the sealed study")
        bench_append(store, study_uid, sizes, meter, report)


def bench_small(root: Path, sizes: Sizes, meter: FsyncMeter, report: Report) -> None:
    count = sizes.small_patients * 2 * sizes.small_per_series
    _progress(f"B: generating {count} small instances")
    files = list(small_instances(sizes.small_patients, sizes.small_per_series))
    _progress("B: put + seal")
    with opened_store(root) as store:
        bench_ingest_and_seal(store, f"B small {count}x64²", files, meter, report)


# --- C: peak RSS of sealing a large study, in a child process ------------------------


def seal_in_child(root: str, study_uid: str) -> dict[str, Any]:
    """Runs in a fresh process: open the store, reset the RSS peak, seal, report.

    The peak is the kernel's VmHWM, reset after ``open()``. ``ru_maxrss`` would not
    do: on Linux it survives exec, so a spawned child reports the parent's RSS.
    """
    start = time.perf_counter()
    store = StudyStore(Path(root))
    store.open()
    open_s = time.perf_counter() - start
    try:
        open_peak = _proc_status_bytes("VmHWM")
        reset = _reset_peak_rss()
        rss_before = _proc_status_bytes("VmRSS")
        start = time.perf_counter()
        sealed = store.seal(study_uid)
        seal_s = time.perf_counter() - start
        peak = _proc_status_bytes("VmHWM") if reset else None
        size = store.study_size(study_uid)
    finally:
        store.close()
    return {
        "sealed": sealed,
        "open_seconds": open_s,
        "seal_seconds": seal_s,
        "peak_rss_through_open": open_peak,
        "rss_before_seal": rss_before,
        "peak_rss_during_seal": peak,
        "zip_bytes": size.disk_bytes,
        "instances": size.instance_count,
    }


def stream_big_study(root: Path, count: int) -> tuple[str, int, float, int]:
    """Put ``count`` 512x512 CT slices one by one; return study, P10 bytes, put s, staged."""
    p10_bytes, put_seconds = 0, 0.0
    studies: set[str] = set()
    with opened_store(root) as store:
        for number, data in enumerate(ct_study(count), start=1):
            p10_bytes += len(data)
            start = time.perf_counter()
            studies |= put_all(store, [data])
            put_seconds += time.perf_counter() - start
            if number % 250 == 0:
                _progress(f"C: {number}/{count} put ({p10_bytes / MB:.0f} MB)")
        (study_uid,) = studies
        staged = disk_bytes(store, studies)
    return study_uid, p10_bytes, put_seconds, staged


def bench_big(root: Path, sizes: Sizes, report: Report) -> None:
    _progress(f"C: streaming {sizes.big} CT instances into the store")
    study_uid, p10_bytes, put_s, staged = stream_big_study(root, sizes.big)
    _progress("C: sealing in a spawned child")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        child = pool.submit(seal_in_child, str(root), study_uid).result()
    if not child["sealed"] or child["instances"] != sizes.big:
        raise RuntimeError(f"C: the seal did not fold in every instance: {child}")
    group = f"C CT {sizes.big}x512² (~{p10_bytes / MB:,.0f} MB P10)"
    report.add(group, "put rate (streamed)", sizes.big / put_s, "instances/s")
    report.add(group, "store open() with it pending", child["open_seconds"], "s")
    report.add(group, "seal time", child["seal_seconds"], "s")
    report.add(group, "seal rate (staged bytes)", staged / MB / child["seal_seconds"], "MB/s")
    report.add(group, "sealed bytes / P10", child["zip_bytes"] / p10_bytes, "ratio")
    add_rss_rows(report, group, child)
    report.raw["big"] = {"p10_bytes": p10_bytes, "put_seconds": put_s, "staged": staged, **child}


def add_rss_rows(report: Report, group: str, child: dict[str, Any]) -> None:
    def mb(key: str) -> float | str:
        value = child[key]
        return "n/a" if value is None else value / MB

    report.add(group, "peak RSS through open() (recovery)", mb("peak_rss_through_open"), "MB")
    report.add(group, "RSS before seal", mb("rss_before_seal"), "MB")
    report.add(group, "peak RSS during seal", mb("peak_rss_during_seal"), "MB")
    peak, before = child["peak_rss_during_seal"], child["rss_before_seal"]
    if peak is None:
        return
    if before is not None:
        report.add(group, "seal RSS growth", (peak - before) / MB, "MB")
    verdict = "meets" if peak < RSS_TARGET_BYTES else "EXCEEDS"
    report.add(group, f"peak RSS during seal < {RSS_TARGET_BYTES // MB} MB?", verdict)


# --- D: merging a study ZIP received from a peer ------------------------------------


def sealed_ct_zip(root: Path, count: int, target: Path) -> int:
    """Write the sealed ZIP of a ``count``-slice CT study to ``target``; return its P10 bytes."""
    with opened_store(root) as store:
        p10_bytes = 0
        for data in ct_study(count):
            p10_bytes += len(data)
            put_all(store, [data])
        (study_uid,) = store.pending_studies()
        with open(target, "wb") as handle:
            store.write_study_subset(study_uid, None, handle)
    return p10_bytes


def bench_merge(root: Path, sizes: Sizes, report: Report) -> None:
    _progress(f"D: building a sealed {sizes.ct}-instance CT study ZIP")
    incoming = root / "incoming.zip"
    p10_bytes = sealed_ct_zip(root / "source", sizes.ct, incoming)
    walls: list[float] = []
    cpus: list[float] = []
    for round_index in range(MERGE_ROUNDS):
        _progress(f"D: merge {round_index + 1}/{MERGE_ROUNDS}")
        with opened_store(root / f"target-{round_index}") as store:
            wall, cpu = time.perf_counter(), time.process_time()
            result = store.merge_study_zip(incoming)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        if len(result.added) != sizes.ct:
            raise RuntimeError(f"D: the merge added {len(result.added)} of {sizes.ct} instances")
    group = f"D merge CT {sizes.ct}x512² ZIP"
    zip_bytes = incoming.stat().st_size
    report.add(group, "input", f"{p10_bytes / MB:.1f} MB P10 / {zip_bytes / MB:.1f} MB ZIP")
    report.add(
        group,
        f"merge into empty store, wall (median of {MERGE_ROUNDS})",
        statistics.median(walls),
        "s",
    )
    report.add(
        group,
        f"merge into empty store, CPU (median of {MERGE_ROUNDS})",
        statistics.median(cpus),
        "s",
    )
    report.add(group, "merge rate (P10 input)", p10_bytes / MB / statistics.median(walls), "MB/s")
    report.raw["merge"] = {
        "p10_bytes": p10_bytes,
        "zip_bytes": zip_bytes,
        "wall": walls,
        "cpu": cpus,
    }


# --- output --------------------------------------------------------------------------


def environment(quick: bool, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    return {
        "mode": "quick" if quick else "full",
        "sizes": asdict(sizes),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tmp": str(tmp),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _progress(message: str) -> None:
    print(f"[storage_bench] {message}", file=sys.stderr, flush=True)


def run(quick: bool, sets: Iterable[str] = SETS) -> Report:
    sizes = QUICK if quick else FULL
    report = Report()
    with tempfile.TemporaryDirectory(prefix="pacsnode-bench-", dir="/tmp") as tmp:
        base = Path(tmp)
        report.raw["environment"] = environment(quick, sizes, base)
        with FsyncMeter().installed() as meter:
            if "A" in sets:
                bench_ct(base / "a", sizes, meter, report)
            if "B" in sets:
                bench_small(base / "b", sizes, meter, report)
        if "C" in sets:
            bench_big(base / "c", sizes, report)
        if "D" in sets:
            bench_merge(base / "d", sizes, report)
    report.raw["rows"] = [asdict(row) for row in report.rows]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--only", default=",".join(SETS), help="comma-separated sets to run (default: all)"
    )
    args = parser.parse_args(argv)
    sets = {name.strip().upper() for name in args.only.split(",") if name.strip()}
    if not sets <= set(SETS):
        parser.error(f"--only takes some of {','.join(SETS)}")
    started = time.perf_counter()
    report = run(args.quick, sets)
    print(report.markdown("set"))
    _progress(f"done in {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(report.raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
