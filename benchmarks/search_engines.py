"""Search engines for "search over every tag" (issue 16), side by side: one table.

    nice -n 10 python -m benchmarks.search_engines [--sizes 100000,1000000]
        [--engines tantivy,sqlite-fts5,sqlite-table] [--queries 200] [--json out.json]

Indexes the same synthetic documents (benchmarks/search_corpus.py: pydicom's CT, MR
and US test files varied, about 80 fields each with a sequence and private blocks)
into each engine, in lockstep, committing every ``--batch`` documents, and at each
size in ``--sizes`` records:

- indexing rate (documents/s; building the documents is not timed, their flatten
  rate is measured once on its own), and the index's size on disk;
- in a fresh interpreter that opens the index and runs the queries: RSS (VmRSS,
  with its anonymous and file-backed parts: tantivy maps its files, and those pages
  count in RSS though the kernel may drop them) after the queries, and p50/p99 of
  ``--queries`` random queries of each kind, each parsed, run and answered at the
  Study level twice: the first page (100 ids) and the count;
- the idle RSS of importing each engine's module in a fresh interpreter.

With ``--node`` (the default), the tantivy index is also queried by a real ``pacsnode
serve`` at each size: a copy of the index becomes the node's search index (its change
feed is empty, so the node takes the index as it is), and the same queries go to ``POST
/tools/search`` over one keep-alive HTTP connection (a Study page of 100). That gives the
node's RSS (VmRSS of its process, idle and after the queries) and the latency a client
sees, HTTP and the node's answer included.

Query kinds: free text (a family name), a field (``Modality:CT AND
BodyPartExamined:CHEST``, random pairs), a wildcard (``SeriesDescription:*axial*``,
random infixes) and a range (``StudyDate:[d TO d+30 days]``). Target (issue 16):
p99 under 50 ms at 1M instances, RSS under 200 MiB. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from benchmarks.index_bench import FAMILY_NAMES
from benchmarks.report import code_and_machine, format_value
from benchmarks.search_corpus import (
    BODY_PARTS,
    DAYS,
    FIRST_DAY,
    Counts,
    documents,
    templates,
)
from benchmarks.servers import proc_status
from pacsnode.node.ids import Level
from pacsnode.node.search.documents import Document, flatten, level_ids
from pacsnode.node.search.query_language import Node, parse

MIB = 1 << 20
MB = 1_000_000
SEED = 20_260_116
P99_TARGET_MS = 50.0
RSS_TARGET_MIB = 200.0
PAGE = 100
ENGINES = ("tantivy", "sqlite-fts5", "sqlite-table")
INFIXES = ("axial", "sag", "cor", "mpr", "t1", "view", "flair", "lung")
QUERY_KINDS = ("free text", "field", "wildcard", "range")


class Engine(Protocol):
    def add(self, document: Document) -> None: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...
    def search(self, query: Node, level: Level, limit: int = 100, offset: int = 0) -> list[str]: ...
    def count(self, query: Node, level: Level) -> int: ...


class _Tantivy:
    """The node's engine, as the benchmark drives it."""

    def __init__(self, path: Path) -> None:
        from pacsnode.node.search.engine import SearchIndex

        self.index = SearchIndex(path)
        self.search = self.index.search
        self.count = self.index.count
        self.add = self.index.add

    def commit(self) -> None:
        self.index.commit()

    def close(self) -> None:
        self.index.close()  # waits for tantivy's merges


def open_engine(name: str, path: Path) -> Engine:
    if name == "tantivy":
        return _Tantivy(path)
    from benchmarks.search_sqlite import Fts5Engine, TableEngine

    return {"sqlite-fts5": Fts5Engine, "sqlite-table": TableEngine}[name](path)


def progress(message: str) -> None:
    print(f"[search_engines {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- queries, in the measuring child --------------------------------------------------


def make_query(kind: str, rng: random.Random) -> str:
    if kind == "free text":
        return rng.choice(FAMILY_NAMES)
    if kind == "field":
        modality = rng.choice(("CT", "MR", "US"))
        return f"Modality:{modality} AND BodyPartExamined:{rng.choice(BODY_PARTS[modality])}"
    if kind == "wildcard":
        return f"SeriesDescription:*{rng.choice(INFIXES)}*"
    start = FIRST_DAY + timedelta(days=rng.randrange(DAYS - 30))
    end = start + timedelta(days=30)
    return f"StudyDate:[{start:%Y%m%d} TO {end:%Y%m%d}]"


def _rss() -> dict[str, float]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024  # kB -> MiB
    return fields


def _percentiles(millis: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(millis, n=100, method="inclusive")
    return {"p50": cuts[49], "p99": cuts[98], "max": max(millis)}


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    answer = call()
    return (time.perf_counter() - start) * 1000, answer


def measure(name: str, path: Path, queries: int) -> dict[str, Any]:
    """Open the index in this (fresh) process, query it, and say how it went."""
    before = _rss()
    engine = open_engine(name, path)
    opened = _rss()
    results: dict[str, Any] = {"rss_start": before, "rss_opened": opened, "kinds": {}}
    for number, kind in enumerate(QUERY_KINDS):
        rng = random.Random(SEED + number)
        texts = [make_query(kind, rng) for _ in range(queries + 5)]
        for text in texts[:5]:  # warm-up
            engine.search(parse(text), Level.STUDY, PAGE)
        pages = [
            _timed(lambda t=text: engine.search(parse(t), Level.STUDY, PAGE)) for t in texts[5:]
        ]
        counts = [_timed(lambda t=text: engine.count(parse(t), Level.STUDY)) for t in texts[5:]]
        results["kinds"][kind] = {
            "page": _percentiles([ms for ms, _ in pages]),
            "count": _percentiles([ms for ms, _ in counts]),
            "mean_studies": statistics.fmean(found for _, found in counts),
            "sample": texts[5],
        }
    results["rss_after"] = _rss()
    engine.close()
    return results


def _rss_of(pid: int) -> dict[str, float]:
    return {key: proc_status(pid, key) / MIB for key in ("VmRSS", "VmHWM")}


def measure_node(index: Path, queries: int, workdir: Path) -> dict[str, Any]:
    """A real ``pacsnode serve`` on a copy of a tantivy index: its RSS, and the queries'
    latency over HTTP (``POST /tools/search``, Study level, a page of 100)."""
    from tests.node.server import NodeProcess

    directory = workdir / "node"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(index, directory / "data" / "search")
    node = NodeProcess(directory).start()
    try:
        assert node.process is not None
        pid = node.process.pid
        time.sleep(2)  # past the start: the feeder finds nothing to do
        idle = _rss_of(pid)
        connection = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=120)

        def ask(text: str) -> None:
            body = json.dumps({"Query": text, "Level": "Study", "Limit": PAGE})
            connection.request("POST", "/tools/search", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answered = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"{text!r}: {answer.status} {answered[:300]!r}")

        kinds: dict[str, Any] = {}
        for number, kind in enumerate(QUERY_KINDS):
            rng = random.Random(SEED + number)
            texts = [make_query(kind, rng) for _ in range(queries + 5)]
            for text in texts[:5]:  # warm-up
                ask(text)
            kinds[kind] = _percentiles([_timed(lambda t=text: ask(t))[0] for text in texts[5:]])
        connection.close()
        return {"rss_idle": idle, "rss_after": _rss_of(pid), "kinds": kinds}
    finally:
        node.stop()
        shutil.rmtree(directory, ignore_errors=True)


def import_rss(module: str) -> float:
    """MiB of RSS that importing ``module`` adds to a fresh interpreter with pydicom loaded."""
    code = (
        "import sys, benchmarks.search_engines as b; import pydicom.datadict; "
        f"r0 = b._rss()['VmRSS']; import {module}; print(b._rss()['VmRSS'] - r0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


# --- indexing, in the parent ----------------------------------------------------------


@dataclass
class Checkpoint:
    size: int
    counts: dict[str, int]
    index_seconds: dict[str, float] = field(default_factory=dict)
    disk_bytes: dict[str, int] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)


def disk_size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def flatten_rate() -> float:
    """Documents/s of documents.flatten on CT_small's JSON (265 fields)."""
    dataset = templates()["CT"]
    ids = level_ids(dataset)
    start = time.perf_counter()
    for _ in range(500):
        flatten(dataset, ids)
    return 500 / (time.perf_counter() - start)


def _measure_child(name: str, path: Path, queries: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.search_engines", "--measure", name, str(path)]
    command += ["--queries", str(queries)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        progress(f"{name}: measuring failed: {done.stderr[-2000:]}")
        return {}
    return json.loads(done.stdout)


def run(args: argparse.Namespace, root: Path) -> list[Checkpoint]:
    names = args.engines.split(",")
    engines = {name: open_engine(name, root / name) for name in names}
    counts = Counts()
    stream = documents(SEED, counts)
    seconds = dict.fromkeys(names, 0.0)
    points: list[Checkpoint] = []
    indexed = 0
    for size in (int(s) for s in args.sizes.split(",")):
        while indexed < size:
            batch = list(itertools.islice(stream, min(args.batch, size - indexed)))
            for name, engine in engines.items():
                start = time.perf_counter()
                for document in batch:
                    engine.add(document)
                engine.commit()
                seconds[name] += time.perf_counter() - start
            indexed += len(batch)
            if indexed % 50_000 < args.batch:
                rates = ", ".join(f"{n} {indexed / s:,.0f}/s" for n, s in seconds.items())
                progress(f"{indexed:,} indexed: {rates}")
        point = Checkpoint(size, asdict(counts) | {"instances": indexed}, dict(seconds))
        for name in names:
            engines[name].close()
            point.disk_bytes[name] = disk_size(root / name)
            progress(f"{size:,}: measuring {name}")
            point.measured[name] = _measure_child(name, root / name, args.queries)
            if name == "tantivy" and args.node and point.measured[name]:
                progress(f"{size:,}: measuring a node on the tantivy index")
                point.measured[name]["node"] = measure_node(root / name, args.queries, root)
            engines[name] = open_engine(name, root / name)
        points.append(point)
        progress(f"{size:,}: {json.dumps(asdict(point))[:3000]}")
    for engine in engines.values():
        engine.close()
    return points


# --- report ---------------------------------------------------------------------------


def _size(count: int) -> str:
    return f"{count // 1_000_000}M" if count % 1_000_000 == 0 else f"{count // 1000}k"


def rows(points: list[Checkpoint], names: list[str]) -> list[list[str]]:
    table: list[list[str]] = []
    for point in points:
        at = _size(point.size)

        def row(measure: str, cell: Callable[[str], str], target: str = "") -> None:
            table.append([at, measure, *(cell(name) for name in names), target])  # noqa: B023

        row("indexing (docs/s)", lambda n: f"{point.size / point.index_seconds[n]:,.0f}")  # noqa: B023
        row("index on disk (MB)", lambda n: format_value(point.disk_bytes[n] / MB))  # noqa: B023
        row(
            "bytes per instance",
            lambda n: f"{point.disk_bytes[n] / point.size:,.0f}",  # noqa: B023
        )
        for what in ("VmRSS", "RssAnon", "RssFile"):
            row(
                f"{what} after the queries (MiB)",
                lambda n, w=what: _cell(point, n, lambda m: m["rss_after"][w]),  # noqa: B023
                f"< {RSS_TARGET_MIB:g} (VmRSS)" if what == "VmRSS" else "",
            )
        for kind in QUERY_KINDS:
            for answer in ("page", "count"):
                row(
                    f"{kind}, Study {answer}: p50 / p99 ms",
                    lambda n, k=kind, a=answer: _latency(point, n, k, a),  # noqa: B023
                    f"p99 < {P99_TARGET_MS:g}",
                )
            row(
                f"{kind}: mean studies matched",
                lambda n, k=kind: _cell(point, n, lambda m: m["kinds"][k]["mean_studies"]),  # noqa: B023
            )
        if any("node" in (point.measured.get(n) or {}) for n in names):
            _node_rows(point, names, table.append)
    return table


def _node_rows(point: Checkpoint, names: list[str], add: Callable[[list[str]], None]) -> None:
    """The real node's rows: figures in the tantivy column, "-" in the others."""
    at = _size(point.size)

    def cells(pick: Callable[[dict[str, Any]], str]) -> list[str]:
        found = [(point.measured.get(n) or {}).get("node") for n in names]
        return [pick(node) if node else "-" for node in found]

    for when in ("idle", "after"):
        rss = cells(lambda node, w=when: format_value(node[f"rss_{w}"]["VmRSS"]))
        target = f"< {RSS_TARGET_MIB:g}" if when == "after" else ""
        add([at, f"node (pacsnode serve) VmRSS, {when} (MiB)", *rss, target])
    for kind in QUERY_KINDS:
        latency = cells(
            lambda node, k=kind: (
                f"{format_value(node['kinds'][k]['p50'])} / {format_value(node['kinds'][k]['p99'])}"
            )
        )
        add([at, f"node, {kind} over HTTP: p50 / p99 ms", *latency, f"p99 < {P99_TARGET_MS:g}"])


def _cell(point: Checkpoint, name: str, pick: Callable[[dict[str, Any]], float]) -> str:
    measured = point.measured.get(name)
    return format_value(pick(measured)) if measured else "failed"


def _latency(point: Checkpoint, name: str, kind: str, answer: str) -> str:
    measured = point.measured.get(name)
    if not measured:
        return "failed"
    figures = measured["kinds"][kind][answer]
    return f"{format_value(figures['p50'])} / {format_value(figures['p99'])}"


def markdown(points: list[Checkpoint], names: list[str], extra: list[list[str]]) -> str:
    header = ["size", "measure", *names, "target"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(names) + "---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(points, names) + extra]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5000, help="documents per commit")
    parser.add_argument("--dir", type=Path, help="where the indexes go (default: a temp dir)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--node",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also query the tantivy index through a real pacsnode serve (default: on)",
    )
    parser.add_argument("--measure", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]), args.queries)))
        return 0
    machine = code_and_machine()
    names = args.engines.split(",")
    with tempfile.TemporaryDirectory(prefix="search_engines_", dir=args.dir) as tmp:
        points = run(args, Path(tmp))
    imports = {"tantivy": "tantivy", "sqlite-fts5": "sqlite3", "sqlite-table": "sqlite3"}
    extra = [
        ["-", "import in a fresh interpreter (MiB RSS)", *(
            format_value(import_rss(imports[n])) for n in names
        ), ""],
        ["-", "documents.flatten, CT_small (docs/s)", f"{flatten_rate():,.0f}", *[""] * len(names)],
    ]  # fmt: skip
    print(markdown(points, names, extra))
    if args.json:
        raw = {"machine": machine, "points": [asdict(p) for p in points], "extra": extra}
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
