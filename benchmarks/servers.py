"""The two archives under comparison, driven the same way: pacsnode and Orthanc.

Each runs as its own process on loopback ports chosen here, with its own
configuration and data in a fresh temp directory, optionally inside a network
namespace (``benchmarks.wanlink``). The benchmark talks to both through the same
Orthanc-compatible REST calls, so every scenario is written once.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from benchmarks.wanlink import NamespacedHTTPConnection, in_namespace
from tests.node.server import REPO, free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
#: Debian's orthanc-dicomweb package
DICOMWEB_PLUGIN = Path("/usr/lib/orthanc/libOrthancDicomWeb.so.1.7")
CREDENTIALS = ("bench", "bench-password")
#: the calling AE title of the benchmark's own DICOM clients
BENCH_AET = "BENCH"
START_TIMEOUT_S = 60


def proc_status(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` memory field in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child_pids(pid: int) -> list[int]:
    """The process's children (a node's worker processes): each process whose parent
    it is (``/proc/PID/stat``; not every kernel has the ``children`` lists)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                children.append(int(entry.name))
    return children


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def disk_bytes(*roots: Path) -> int:
    """Bytes allocated on disk (st_blocks) under these folders: what ``du`` counts."""
    total = 0
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def dicom_env(nodelay: bool) -> dict[str, str]:
    """DCMTK (in the tools and inside Orthanc) disables Nagle only when TCP_NODELAY=1."""
    env = {key: value for key, value in os.environ.items() if key != "TCP_NODELAY"}
    if nodelay:
        env["TCP_NODELAY"] = "1"
    return env


class Archive(ABC):
    """One archive process: start, REST calls, and what it costs."""

    system: str
    aet: str

    def __init__(self, namespace: str | None = None, nodelay: bool = True) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=f"pacsnode-vs-{self.system}-", dir="/tmp"))
        self.namespace = namespace
        self.nodelay = nodelay
        self.http_port, self.dicom_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._connection: http.client.HTTPConnection | None = None

    # --- lifecycle ----------------------------------------------------------------

    @abstractmethod
    def command(self) -> list[str]:
        """Write the configuration; answer the command line that serves it."""

    def start(self) -> Archive:
        command = in_namespace(self.namespace) + self.command()
        with open(self.directory / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dicom_env(self.nodelay)
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.system} exited: {self.log_tail()}")
            try:
                self.call("GET", "/system")
                return self
            except (OSError, http.client.HTTPException):
                self.drop_connection()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.system} did not start: {self.log_tail()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.drop_connection()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Archive:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    # --- REST -----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def headers(self) -> dict[str, str]:
        token = base64.b64encode(":".join(CREDENTIALS).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def connect(self, timeout_s: float = 600) -> http.client.HTTPConnection:
        return NamespacedHTTPConnection(self.namespace, "127.0.0.1", self.http_port, timeout_s)

    def drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON request on this archive's keep-alive connection.

        Orthanc closes idle connections after a second (KeepAliveTimeout), so a
        kept connection found closed is replaced once.
        """
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        for fresh in (self._connection is None, True):
            if fresh:
                self.drop_connection()
                self._connection = self.connect()
            assert self._connection is not None
            try:
                self._connection.request(method, path, body=data, headers=self.headers())
                answer = self._connection.getresponse()
                payload = answer.read()
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                if fresh:
                    raise
        if answer.status != 200:
            raise RuntimeError(f"{self.system} {method} {path}: HTTP {answer.status} {payload!r}")
        return json.loads(payload or b"null")

    def instance_count(self) -> int:
        return int(self.call("GET", "/statistics")["CountInstances"])

    def expect_count(self, expected: int) -> None:
        count = self.instance_count()
        if count != expected:
            raise RuntimeError(f"{self.system} holds {count} instances, expected {expected}")

    @abstractmethod
    def settle(self, timeout_s: float = 600) -> None:
        """Wait until background work that changes the disk is done."""

    # --- costs ----------------------------------------------------------------------

    def rss(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def hwm(self) -> int:
        """The process's peak RSS, plus that of each worker process still running (their
        peaks need not have coincided: an upper bound). Orthanc has none."""
        peak = proc_status(self.pid, "VmHWM")
        for child in child_pids(self.pid):
            with contextlib.suppress(OSError, KeyError):
                peak += proc_status(child, "VmHWM")
        return peak

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    @abstractmethod
    def disk(self) -> int:
        """Bytes on disk of everything the archive stores (files and index)."""


class Pacsnode(Archive):
    system = "pacsnode"
    aet = "PACSNODE"

    def __init__(
        self,
        namespace: str | None = None,
        nodelay: bool = True,
        stable_age_s: float = 60,
        extra_toml: str = "",
    ) -> None:
        super().__init__(namespace, nodelay)
        self.stable_age_s = stable_age_s
        self.extra_toml = extra_toml

    def command(self) -> list[str]:
        config = self.directory / "pacsnode.toml"
        config.write_text(
            f'data_dir = "{self.directory / "data"}"\n'
            f"[http]\nport = {self.http_port}\n"
            f'[dicom]\nport = {self.dicom_port}\naet = "{self.aet}"\n'
            f"[storage]\nstable_age_s = {self.stable_age_s}\n"
            f"{self.extra_toml}\n"
        )
        return [sys.executable, "-m", "pacsnode.node.cli", "--config", str(config), "serve"]

    def headers(self) -> dict[str, str]:
        return {}  # loopback without [[users]]: no authentication, the default

    def unstable_studies(self) -> int:
        studies = self.call("POST", "/tools/find", {"Level": "Study", "Query": {}, "Expand": True})
        return sum(1 for study in studies if not study["IsStable"])

    def settle(self, timeout_s: float = 600) -> None:
        """Wait until every study is sealed into its ZIP."""
        deadline = time.monotonic() + timeout_s
        while self.unstable_studies():
            if time.monotonic() > deadline:
                raise RuntimeError(f"studies still not sealed after {timeout_s} s")
            time.sleep(0.5)

    def disk(self) -> int:
        return disk_bytes(self.directory / "data")


class Orthanc(Archive):
    system = "Orthanc"
    aet = "ORTHANC"

    def __init__(
        self,
        namespace: str | None = None,
        nodelay: bool = True,
        peers: dict[str, list[str]] | None = None,
        remote_access: bool = False,
        compression: bool = False,
        dicomweb: bool = False,
    ) -> None:
        super().__init__(namespace, nodelay)
        self.peers = peers or {}
        self.remote_access = remote_access
        self.compression = compression
        self.dicomweb = dicomweb

    def command(self) -> list[str]:
        config = {
            "Name": f"bench-{self.http_port}",
            "StorageDirectory": str(self.directory / "storage"),
            "IndexDirectory": str(self.directory / "index"),
            "StorageCompression": self.compression,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": self.remote_access,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {CREDENTIALS[0]: CREDENTIALS[1]},
            "OrthancPeers": self.peers,
            # the benchmark's SCUs may find and get, as a viewer registered at a site would
            "DicomModalities": {"bench": [BENCH_AET, "127.0.0.1", free_port()]},
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "SaveJobs": False,
        }
        if self.dicomweb:  # the plugin with its defaults, under the root pacsnode uses
            config["Plugins"] = [str(DICOMWEB_PLUGIN)]
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        path = self.directory / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        return [ORTHANC, str(path)]

    def settle(self, timeout_s: float = 600) -> None:
        """Nothing to wait for: Orthanc writes each instance whole as it arrives."""
        del timeout_s

    def disk(self) -> int:
        return disk_bytes(self.directory / "storage", self.directory / "index")
