"""How fast the studies page is with many studies: run by hand, not collected by pytest.

    python -m tests.node.ui.page_speed [--studies 10000] [--dir /dev/shm/pacsnode-ui-speed]
                                       [--screenshot docs/ui-studies.png]

Fills a data directory once (tiny one-instance studies, varied names, dates and
modalities; reused on later runs), starts a real ``pacsnode serve`` on it and asks for
the studies page in several ways. Prints, per page: the server's time (its
``Server-Timing``) for the first request (nothing cached: as after a study arrives) and
as the median of the next ones, the whole request's median time over loopback, and the
bytes transferred.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.settings import CoreSettings
from tests.node.server import NodeProcess

_MODALITIES = ("CT", "MR", "CR", "US", "DX")
_REPEATS = 7
PAGES = {
    "newest first (default)": "/ui/studies",
    "page 100": "/ui/studies?page=100",
    "by patient name": "/ui/studies?sort=name&dir=asc",
    "200 per page": "/ui/studies?size=200",
    "name contains": "/ui/studies?name=patient12",
    "one patient id": "/ui/studies?patient_id=PAT01234",
    "date range": "/ui/studies?date_from=2026-03-01&date_to=2026-04-30",
    "modality MR": "/ui/studies?modality=MR",
    "description contains (not indexed)": "/ui/studies?description=synthetic",
}


def fill(data_dir: Path, studies: int) -> None:
    core = NodeCore(CoreSettings(data_dir=data_dir))
    core.open(background=False)
    try:
        have = len(core.list_ids(Level.STUDY))
        for number in range(have + 1, studies + 1):
            spec = SeriesSpec(number, 1 + number % 12, 1, 1, size=8,
                              modality=_MODALITIES[number % len(_MODALITIES)])  # fmt: skip
            core.ingest(p10(make_instance(spec, 0)))
            if number % 1000 == 0:
                print(f"  {number} studies stored")
        # as a node would have done by now: studies quiet for a while are sealed
        core.seal_quiet_studies(now=time.monotonic() + 3600)
    finally:
        core.close()


def measure(node: NodeProcess, path: str) -> tuple[float, float, float, int]:
    """The first request's server ms (the search not cached yet), the medians of the next
    ones (server ms, request ms) and the body's bytes."""
    first = float(node.request("GET", path).headers["Server-Timing"].split("dur=")[1])
    server, total = [], []
    size = 0
    for _ in range(_REPEATS):
        started = time.perf_counter()
        answer = node.request("GET", path)
        total.append((time.perf_counter() - started) * 1e3)
        assert answer.status == 200, answer.body[:500]
        server.append(float(answer.headers["Server-Timing"].split("dur=")[1]))
        size = len(answer.body)
    return first, statistics.median(server), statistics.median(total), size


def screenshot(url: str, path: Path) -> None:
    """The page at 1366x768 in Debian's chromium (what docs/ui-studies.png is)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(url)
        page.screenshot(path=path)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm/pacsnode-ui-speed"))
    parser.add_argument("--screenshot", type=Path, help="also save the studies page as a PNG")
    args = parser.parse_args()
    print(f"filling {args.dir} up to {args.studies} studies")
    fill(args.dir / "data", args.studies)
    node = NodeProcess(args.dir).start()
    try:
        node.request("GET", "/ui/system")  # the template engine's first use
        print(f"{'page':38} {'first ms':>8} {'server ms':>9} {'request ms':>10} {'KB':>6}")
        for name, path in PAGES.items():
            first, server, total, size = measure(node, path)
            print(f"{name:38} {first:8.1f} {server:9.1f} {total:10.1f} {size / 1024:6.1f}")
        if args.screenshot:
            screenshot(f"{node.url}/ui/studies", args.screenshot)
    finally:
        node.stop()


if __name__ == "__main__":
    main()
