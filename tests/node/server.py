"""A real ``pacsnode serve`` process on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# DCMTK tools only disable Nagle's algorithm when asked; without it every small
# DICOM message waits ~40 ms for a delayed ACK.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class NodeProcess:
    def __init__(
        self,
        directory: Path,
        extra_toml: str = "",
        credentials: tuple[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        #: the process's environment (this one's when None)
        self.env = env
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "pacsnode.toml"
        self.config.write_text(
            f'data_dir = "data"\n[http]\nport = {self.http_port}\n'
            f"[dicom]\nport = {self.dicom_port}\n{extra_toml}\n"
        )
        self.credentials = credentials
        self.log = directory / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> NodeProcess:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pacsnode.node.cli", "--config", str(self.config), "serve"],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.request("GET", "/system").status in (200, 401):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"node did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Response:
        data = (
            json.dumps(body).encode()
            if isinstance(body, dict)
            else (body.encode() if isinstance(body, str) else body)
        )
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=headers or {}
        )
        if auth and self.credentials:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return Response(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers), error.read())

    def wait_converted(self, timeout_s: float = 30.0) -> None:
        """Wait until every instance acknowledged before its conversion is converted
        (node/conversion.py): its FileUuid is its content digest, its sizes the stored
        ones."""
        deadline = time.monotonic() + timeout_s
        while any(
            str(instance["FileUuid"]).startswith("received:")
            for instance in self.request("GET", "/instances?expand").json()
        ):
            assert time.monotonic() < deadline, "instances were never converted"
            time.sleep(0.02)

    def dcmtk(
        self, tool: str, *options: str, files: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        """Run a DCMTK tool (the system's, not pynetdicom's namesake) against the node."""
        return subprocess.run(
            [
                f"/usr/bin/{tool}",
                "-aec",
                "PACSNODE",
                *options,
                "127.0.0.1",
                str(self.dicom_port),
                *files,
            ],
            capture_output=True,
            text=True,
            env=DCMTK_ENV,
            timeout=120,
        )
