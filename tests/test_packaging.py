"""The package installs cleanly: a built wheel, in a fresh venv, puts only ``pacsnode``
into site-packages, and ``pacsnode serve`` on the embedded defaults answers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

from tests.node.server import REPO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once for this module's tests."""
    return _wheel(tmp_path_factory.mktemp("dist"))


def _wheel(directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(directory), "."],
        cwd=REPO,
        check=True,
        timeout=300,
    )
    (wheel,) = directory.glob("pacsnode-*.whl")
    return wheel


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        # as the node binds (SO_REUSEADDR): a closed connection in TIME_WAIT is no obstacle
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_wheel_has_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"pacsnode"}
    for part in ("node/cli.py", "node/index/front.py", "peer/sync.py", "storage/store.py"):
        assert f"pacsnode/{part}" in names
    assert "pacsnode/configs/default.toml" in names
    assert not any(name.startswith("pacsnode/tests/") for name in names)


def test_a_fresh_venv_runs_the_node_on_the_defaults(tmp_path: Path, wheel: Path) -> None:
    if not (_port_free(8042) and _port_free(4242)):
        pytest.skip("the default ports 8042/4242 are taken on this machine")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=600,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    installed = {path.name for path in Path(site).iterdir()}
    assert "pacsnode" in installed
    assert not installed & {"node", "peer", "storage", "configs"}

    workdir = tmp_path / "work"  # the defaults keep data in ./pacsnode-data
    workdir.mkdir()
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        node = subprocess.Popen(
            [str(env_dir / "bin" / "pacsnode"), "serve"],
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        system = _wait_for_system(node, log)
        assert system["Name"] == "pacsnode" and system["HttpPort"] == 8042
        assert (workdir / "pacsnode-data").is_dir()
    finally:
        node.terminate()
        node.wait(timeout=30)
    assert node.returncode == 0, log.read_text()


def _wait_for_system(node: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert node.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen("http://127.0.0.1:8042/system", timeout=5) as answer:
                return dict(json.loads(answer.read()))
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the node did not answer: {log.read_text()}")
