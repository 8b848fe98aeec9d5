"""A real Orthanc server (Debian's package) on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.node.server import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
#: Debian's orthanc-dicomweb plugin, whatever its version suffix (a missing one: a path
#: that does not exist, so the tests that need it say so and skip)
DICOMWEB_PLUGIN = next(
    iter(sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*"))),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)
CREDENTIALS = ("orthanc", "s3cret")


class OrthancProcess:
    def __init__(
        self,
        directory: Path,
        peers: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "test-orthanc",
            "StorageDirectory": str(directory / "storage"),
            "IndexDirectory": str(directory / "index"),
            "HttpPort": self.port,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {CREDENTIALS[0]: CREDENTIALS[1]},
            "OrthancPeers": peers or {},
            "StableAge": 1,
            **(extra or {}),
        }
        self.config = directory / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.log = open(directory / "orthanc.log", "wb")
        self.process = subprocess.Popen(
            [ORTHANC, str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.call("GET", "/system")
                return
            except OSError:
                assert self.process.poll() is None, "Orthanc exited"
                assert time.monotonic() < deadline, "Orthanc did not start"
                time.sleep(0.1)

    def call(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method
        )
        token = base64.b64encode(":".join(CREDENTIALS).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def sop_uids(self) -> set[str]:
        found = self.call("GET", "/instances?expand")
        assert isinstance(found, list)
        return {item["MainDicomTags"]["SOPInstanceUID"] for item in found}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()
