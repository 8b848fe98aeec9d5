"""The example package loaded by real ``pacsnode serve`` processes through their
configuration: its storage backend keeps the studies, its index plugin answers a query,
its web plugin counts them, and a broken plugin stops the start with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from tests.node.server import REPO, NodeProcess, free_port

pytestmark = pytest.mark.e2e

EXAMPLE_NODE = """
[storage]
stable_age_s = 0.5
backend = "example-dir"
[plugins.example-dir]
root = "elsewhere"
[web]
plugins = ["example"]
[index]
plugins = ["example-bodypart"]
[search]
enabled = false
"""


def environment(example_plugins: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(example_plugins)}


def test_a_node_on_the_example_plugins(example_plugins: Path, tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, EXAMPLE_NODE, env=environment(example_plugins)).start()
    try:
        spec = SeriesSpec(1, 1, 1, 2, 16, modality="MR")
        for index in range(spec.count):
            dataset = make_instance(spec, index)
            dataset.BodyPartExamined = "HEAD"
            assert node.request("POST", "/instances", p10(dataset)).status == 200
        assert node.request("GET", "/plugins/example/modalities").json() == {"MR": 1}
        for part, found in (("HEAD", 1), ("KNEE", 0)):  # the index plugin is asked
            query = {"Level": "Study", "Query": {"BodyPartExamined": part}}
            assert len(node.request("POST", "/tools/find", query).json()) == found
        (study,) = node.request("GET", "/studies").json()
        uid = node.request("GET", f"/studies/{study}").json()["MainDicomTags"]["StudyInstanceUID"]
        sealed = tmp_path / "data" / "elsewhere" / f"{uid}.zip"  # the plugin's folder
        deadline = time.monotonic() + 20
        while not sealed.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sealed.exists() and not list((tmp_path / "data").rglob("study.zip"))
        archive = node.request("GET", f"/studies/{study}/archive")
        assert archive.status == 200 and archive.body[:2] == b"PK"
    finally:
        node.stop()
    # a restart on the same backend serves what it holds
    node.start()
    try:
        assert node.request("GET", "/plugins/example/modalities").json() == {"MR": 1}
        (instance, _) = node.request("GET", "/instances").json()
        assert node.request("GET", f"/instances/{instance}/file").body[128:132] == b"DICM"
    finally:
        node.stop()


#: (configuration, what the one line on the console says)
BROKEN = {
    "import": (
        '[web]\nplugins = ["example-broken"]\n',
        "web plugin 'example-broken' (pacsnode.web: pacsnode_example_plugin.broken:plugin) "
        "does not load: RuntimeError: the example-broken plugin is broken on purpose",
    ),
    "settings": (
        '[storage]\nbackend = "example-dir"\n',
        "storage plugin 'example-dir' (pacsnode.storage: "
        "pacsnode_example_plugin.storage:directory_backend) refuses its settings: "
        "[plugins.example-dir] 'root' (the folder of the study ZIPs) is required",
    ),
    "missing": (
        '[web]\nplugins = ["nowhere"]\n',
        "no web plugin 'nowhere': no entry point 'nowhere' in group 'pacsnode.web' "
        "(installed: example, example-broken, example-faulty)",
    ),
}


def test_a_broken_plugin_stops_the_start(example_plugins: Path, tmp_path: Path) -> None:
    """Each in its own process, all at once: exit 2 and one line, no traceback (but with
    ``-v``, for the plugin's author)."""
    started = {}
    for case, (toml, _) in [*BROKEN.items(), ("verbose", BROKEN["import"])]:
        config = tmp_path / f"{case}.toml"
        config.write_text(f'data_dir = "{tmp_path / case}"\n[http]\nport = {free_port()}\n{toml}')
        verbose = ["-v"] if case == "verbose" else []
        command = [sys.executable, "-m", "pacsnode.node.cli", *verbose, "--config", str(config)]
        started[case] = subprocess.Popen(
            [*command, "serve"],
            cwd=REPO,
            env=environment(example_plugins),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for case, process in started.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 2, (case, out, err)
        said = BROKEN["import" if case == "verbose" else case][1]
        assert f"pacsnode: {said}" in err.splitlines(), (case, err)
        assert ("Traceback" in err + out) == (case == "verbose"), (case, err)
        # before the data directory was opened: no recovery, no index
        assert not (tmp_path / case / "index").exists(), case
