"""A replication link cut again and again mid-transfer, and restored each time.

Site A dials site B through :class:`FlakyLink`, a proxy that closes connections at
varied byte offsets (a new offset for each cut). A push (A's study to B, the upload cut)
and a pull (B's study to A, the download cut) each run through a series of cuts within
one sync. Afterwards both sides hold the same instances with the same bytes, each
once (instance counts, one ``NewInstance`` per instance in each feed, and a further
sync moves nothing), and the transfer resumed: the bytes that crossed the link add up
to about one copy of the ZIP, where starting again after a cut would have carried what
came before it once more.

``PACSNODE_LINK_CUTS`` sets the number of cuts per direction for a longer run by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.node.server import NodeProcess, free_port
from tests.peer.proxy import FlakyLink
from tests.peer.test_replication import identity_of, peer_toml, sync
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # real node processes

CUTS = int(os.environ.get("PACSNODE_LINK_CUTS", "5"))
INSTANCES = 10  # of 512x512 CT: a study ZIP of about 4.5 MB
#: what a cut may lose in flight: what sat in the receiver's socket and read buffers at
#: that instant (200-290 KiB a connection measured on loopback; aiohttp drops its read
#: buffer once the connection is lost). Sending again what the other side held, as the
#: upload did before, crossed 1.3 copies more (5.97 MB for a 2.58 MB ZIP, 5 cuts).
IN_FLIGHT = 320 * 1024


def files_of(node: NodeProcess) -> dict[str, str]:
    """Instance id -> SHA-256 of its file as the node gives it back."""
    found = {}
    for instance_id in node.request("GET", "/instances").json():
        answer = node.request("GET", f"/instances/{instance_id}/file")
        assert answer.status == 200
        found[instance_id] = hashlib.sha256(answer.body).hexdigest()
    return found


def new_instances_in_feed(node: NodeProcess) -> Counter[str]:
    changes = node.request("GET", "/changes?since=0&limit=10000").json()["Changes"]
    return Counter(c["ID"] for c in changes if c["ChangeType"] == "NewInstance")


def study_size(node: NodeProcess, study_id: str) -> int:
    return int(node.request("GET", f"/studies/{study_id}/statistics").json()["DiskSize"])


def offsets_for(size: int, rng: random.Random) -> list[int]:
    """Varied cut points (what a connection carries after the last cut before it is cut
    too), together a third of the ZIP: the transfer runs over up to four connections at
    once, so every cut lands while it runs."""
    weights = [rng.uniform(0.2, 1.0) for _ in range(CUTS)]
    return [max(32_768, int(size * 0.35 * w / sum(weights))) for w in weights]


def peer_requests(node: NodeProcess, method: str, path: re.Pattern[str]) -> int:
    """How many such requests the node's peering listener answered (its audit log)."""
    log = node.directory / "data" / "audit" / "audit.log"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return sum(
        1
        for event in events
        if event["action"] == "peer-request"
        and event["method"] == method
        and path.fullmatch(event["path"])
    )


def cut_transfer(
    site_a: NodeProcess, site_b: NodeProcess, link: FlakyLink, size: int, watch: str
) -> dict:
    """Sync with the link cut at varied offsets, and check it resumed: one upload (push)
    or export (pull) of the study from first cut to last, never a new one from zero."""
    started = re.compile(r"/peer/v1/uploads" if watch == "up" else r"/peer/v1/studies/.*/export")
    before = peer_requests(site_b, "POST", started)
    offsets = offsets_for(size, random.Random(f"{watch}{CUTS}"))
    link.arm(offsets, watch)
    result = sync(site_a, "siteb")
    assert result["State"] == "Success", result
    assert link.armed == 0, f"only {len(link.cuts)} cuts happened: the transfer ended first"
    wait_until_logged = time.monotonic() + 5  # the audit log is written by its own thread
    while peer_requests(site_b, "POST", started) == before and time.monotonic() < wait_until_logged:
        time.sleep(0.05)
    assert peer_requests(site_b, "POST", started) - before == 1, result
    # ... and the bytes that crossed add up to one copy, but for what each cut lost in
    # flight (the receiver's buffers and a partial TLS record): sending again what the
    # other side held would add at least the offsets once more.
    crossed = link.forwarded[watch]
    assert crossed - size < CUTS * IN_FLIGHT, (crossed, size, offsets, result["Content"])
    return result


def sites_over_a_flaky_link(tmp_path: Path) -> tuple[NodeProcess, NodeProcess, FlakyLink]:
    """Site A dials site B (push and pull) through a FlakyLink; both started."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    with ThreadPoolExecutor(2) as both:  # each a process start: side by side
        a_id, b_id = both.map(identity_of, (a_dir, b_dir))
        b_port = free_port()
        link = FlakyLink(b_port)
        to_b = {"name": "siteb", "url": f"https://127.0.0.1:{link.port}", "fingerprint": b_id}
        site_a = NodeProcess(a_dir, extra_toml=peer_toml(free_port(), [to_b]))
        to_a = {"name": "sitea", "fingerprint": a_id}
        site_b = NodeProcess(b_dir, extra_toml=peer_toml(b_port, [to_a]))
        list(both.map(NodeProcess.start, (site_a, site_b)))
    return site_a, site_b, link


def test_a_link_cut_again_and_again_mid_transfer_resumes_both_ways(tmp_path: Path) -> None:
    site_a, site_b, link = sites_over_a_flaky_link(tmp_path)
    try:
        for index in range(INSTANCES):
            sent = site_a.request("POST", "/instances", ct_bytes(index, patient=1, size=512))
            assert sent.status == 200
        pushed_study = sent.json()["ParentStudy"]
        site_a.wait_converted()  # the study's size as it is sent
        pushed = cut_transfer(site_a, site_b, link, study_size(site_a, pushed_study), "up")
        assert pushed["Content"]["PushedInstances"] == INSTANCES

        for index in range(INSTANCES):
            sent = site_b.request("POST", "/instances", ct_bytes(index, patient=2, size=512))
            assert sent.status == 200
        pulled_study = sent.json()["ParentStudy"]
        site_b.wait_converted()
        pulled = cut_transfer(site_a, site_b, link, study_size(site_b, pulled_study), "down")
        assert pulled["Content"]["PulledInstances"] == INSTANCES
        assert pulled["Content"]["BytesReceived"] <= 1.1 * study_size(site_b, pulled_study)
        assert len(link.cuts) == 2 * CUTS

        # Same content both sides, each instance once.
        files = files_of(site_a)
        assert files == files_of(site_b) and len(files) == 2 * INSTANCES
        for node in (site_a, site_b):
            assert node.request("GET", "/statistics").json()["CountInstances"] == 2 * INSTANCES
            feed = new_instances_in_feed(node)
            assert set(feed) == set(files) and set(feed.values()) == {1}
        settled = sync(site_a, "siteb")["Content"]
        assert settled["PushedInstances"] == settled["PulledInstances"] == 0
    finally:
        link.close()
        site_a.stop()
        site_b.stop()
