"""Replication speed between two sites: pacsnode peering against Orthanc peering, run by hand.

    python -m benchmarks.peering_bench [--quick] [--json out.json]

Prints one Markdown table to stdout (progress goes to stderr) and optionally
writes the figures as JSON. MB = 10^6 bytes of P10 input.

- Set A: one CT study of 300 slices 512x512 uint16 (--quick: 30), generated in
  memory before anything runs.
- pacsnode: site A pushes to site B over mutual TLS (``pull = false``); set A is
  loaded into A with REST ``POST /instances`` and sealed (not timed), then
  ``POST /peers/siteb/sync?wait`` on A is timed and B's instance count checked.
  B's ``stable_age_s`` is long, so B does not seal during the timed step.
- Orthanc (the system's ``/usr/sbin/Orthanc``): set A is loaded into Orthanc 1
  (not timed), then ``POST /peers/b/store`` with the study id (synchronous) is
  timed; Orthanc 1's ``OrthancPeers`` points at Orthanc 2, whose count is checked.
- Links: loopback (direct), and a 50 ms RTT "WAN": a user-space delay line on
  127.0.0.1 in front of the receiver that holds every chunk of application data
  25 ms in each direction, preserving order, with no throughput cap. It does not
  delay TCP's own ACKs (each side's kernel talks to the proxy over loopback), so
  congestion and flow control still see a loopback RTT, and a TCP handshake costs
  no RTT: it approximates a WAN for request/response patterns only (TUN-based
  emulation is planned separately). The delay line counts connections and request
  turns (client sends that follow an answer), each turn costing at least one RTT.
- Every scenario uses fresh temp dirs under /tmp, removed afterwards; sender and
  receiver CPU seconds during the timed step come from ``/proc/PID/stat``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import platform
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.node_bench import cpu_seconds, git
from benchmarks.synthetic import ct_study
from tests.node.server import NodeProcess, free_port
from tests.peer.test_orthanc import CREDENTIALS, ORTHANC, OrthancProcess
from tests.peer.test_replication import identity_of, peer_toml

MB = 1_000_000
ONE_WAY_DELAY_S = 0.025
LINK_NOTE = (
    "WAN = user-space TCP delay line on 127.0.0.1: every chunk of application data is held "
    "25 ms each way (50 ms RTT), order preserved, no throughput cap. TCP's own ACKs are NOT "
    "delayed (both kernels see a loopback peer), so window growth and congestion control are "
    "unaffected, and opening a TCP connection costs no RTT (a real WAN adds one per "
    "connection): this approximates a WAN for request/response patterns only; TUN-based "
    "emulation is planned in another issue. Request turns: client sends that follow an answer "
    "or open a connection, counted by the delay line (each costs at least one RTT); MB sent: "
    "sender-to-receiver bytes through it, TLS and HTTP framing included."
)


def progress(message: str) -> None:
    print(f"[peering_bench] {message}", file=sys.stderr, flush=True)


# --- the delay line ------------------------------------------------------------------


class DelayProxy:
    """Forward 127.0.0.1:``port`` to ``target_port``, delaying each chunk by ``delay_s``.

    Per connection and direction, a reader thread timestamps what it receives and
    a writer thread sends each chunk once its time has come (a FIFO, so order is
    kept and nothing limits throughput but the threads themselves).
    """

    def __init__(self, target_port: int, delay_s: float = ONE_WAY_DELAY_S) -> None:
        self.port = free_port()
        self._target = target_port
        self._delay = delay_s
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self._guard = threading.Lock()
        self._last_speaker: dict[int, bool] = {}  # connection -> was the client last to send
        self.connections = 0
        self.turns = 0  # client requests that follow an answer (or open a connection)
        self.upstream_bytes = 0  # what the sender wrote, TLS and HTTP framing included
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            self.connections += 1
            self._direction(self.connections, client, server, upstream=True)
            self._direction(self.connections, server, client, upstream=False)

    def _direction(
        self, connection: int, source: socket.socket, sink: socket.socket, *, upstream: bool
    ) -> None:
        line: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        reader_args = (connection, source, line, upstream)
        threading.Thread(target=self._read, args=reader_args, daemon=True).start()
        threading.Thread(target=self._write, args=(sink, source, line), daemon=True).start()

    def _read(
        self,
        connection: int,
        source: socket.socket,
        line: queue.SimpleQueue[tuple[float, bytes]],
        upstream: bool,
    ) -> None:
        while True:
            try:
                data = source.recv(1 << 18)
            except OSError:
                data = b""
            line.put((time.monotonic() + self._delay, data))
            if not data:
                return
            self._account(connection, upstream, len(data))

    def _account(self, connection: int, upstream: bool, size: int) -> None:
        with self._guard:
            if upstream:
                self.upstream_bytes += size
                if self._last_speaker.get(connection) is not True:
                    self.turns += 1
            self._last_speaker[connection] = upstream

    @staticmethod
    def _write(
        sink: socket.socket, source: socket.socket, line: queue.SimpleQueue[tuple[float, bytes]]
    ) -> None:
        while True:
            due, data = line.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    sink.shutdown(socket.SHUT_WR)  # pass the half-close on
                    return
                sink.sendall(data)
            except OSError:
                with contextlib.suppress(OSError):
                    source.shutdown(socket.SHUT_RDWR)
                return

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._sockets:
            sock.close()


@dataclass(frozen=True)
class Link:
    """The port a sender dials, and the delay line behind it (None on loopback)."""

    port: int
    proxy: DelayProxy | None

    def counts(self) -> tuple[int, int, int]:
        """Connections, request turns and bytes sent so far (zero without a proxy)."""
        if self.proxy is None:
            return 0, 0, 0
        return self.proxy.connections, self.proxy.turns, self.proxy.upstream_bytes


@contextlib.contextmanager
def link(kind: str, target_port: int) -> Iterator[Link]:
    """How a sender reaches ``target_port`` over ``kind``."""
    if kind == "loopback":
        yield Link(target_port, None)
        return
    proxy = DelayProxy(target_port)
    try:
        yield Link(proxy.port, proxy)
    finally:
        proxy.close()


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=f"pacsnode-peerbench-{prefix}-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- HTTP helpers --------------------------------------------------------------------


def basic_auth(credentials: tuple[str, str] | None) -> dict[str, str]:
    if credentials is None:
        return {}
    token = base64.b64encode(":".join(credentials).encode()).decode()
    return {"Authorization": f"Basic {token}"}


def call(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    credentials: tuple[str, str] | None = None,
    timeout_s: float = 3600,
) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body or None, headers=basic_auth(credentials))
        answer = connection.getresponse()
        payload = answer.read()
    finally:
        connection.close()
    if answer.status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {answer.status} {payload[:300]!r}")
    return json.loads(payload or b"null")


def post_instances(port: int, blobs: list[bytes], credentials: tuple[str, str] | None) -> str:
    """Load every file over one keep-alive connection; return the study's resource id."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/dicom", **basic_auth(credentials)}
    study = ""
    try:
        for blob in blobs:
            connection.request("POST", "/instances", body=blob, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"POST /instances: HTTP {answer.status} {payload[:300]!r}")
            study = str(json.loads(payload)["ParentStudy"])
    finally:
        connection.close()
    return study


def instance_count(port: int, credentials: tuple[str, str] | None = None) -> int:
    return int(call(port, "GET", "/statistics", credentials=credentials)["CountInstances"])


# --- measuring -----------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    system: str
    link: str
    instances: int
    total_bytes: int
    seconds: float
    sender_cpu_s: float
    receiver_cpu_s: float
    #: TCP connections and request turns through the delay line (0 on loopback)
    connections: int
    turns: int
    wire_bytes: int

    @property
    def mb_per_s(self) -> float:
        return self.total_bytes / MB / self.seconds


@dataclass(frozen=True)
class Setup:
    system: str
    link: Link
    blobs: list[bytes]
    sender_pid: int
    receiver_pid: int


def measure(setup: Setup, kind: str, work: Callable[[], object]) -> Result:
    """Time ``work``; CPU seconds of both processes and link counts are taken around it."""
    cpu = cpu_seconds(setup.sender_pid), cpu_seconds(setup.receiver_pid)
    counts = setup.link.counts()
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    after = setup.link.counts()
    return Result(
        system=setup.system,
        link=kind,
        instances=len(setup.blobs),
        total_bytes=sum(len(blob) for blob in setup.blobs),
        seconds=seconds,
        sender_cpu_s=cpu_seconds(setup.sender_pid) - cpu[0],
        receiver_cpu_s=cpu_seconds(setup.receiver_pid) - cpu[1],
        connections=after[0] - counts[0],
        turns=after[1] - counts[1],
        wire_bytes=after[2] - counts[2],
    )


def expect(found: int, expected: int, where: str) -> None:
    if found != expected:
        raise RuntimeError(f"{where} holds {found} instances, expected {expected}")


# --- pacsnode ------------------------------------------------------------------------


def pid_of(node: NodeProcess) -> int:
    assert node.process is not None
    return node.process.pid


def wait_sealed(node: NodeProcess, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    query = json.dumps({"Level": "Study", "Query": {}, "Expand": True}).encode()
    while any(not s["IsStable"] for s in call(node.http_port, "POST", "/tools/find", query)):
        if time.monotonic() > deadline:
            raise RuntimeError("set A was not sealed in time")
        time.sleep(0.25)


@contextlib.contextmanager
def pacsnode_sites(work: Path, kind: str) -> Iterator[tuple[NodeProcess, NodeProcess, Link]]:
    """Site A pushes to site B, dialling B's peering port over ``kind``."""
    a_dir, b_dir = work / "a", work / "b"
    a_id, b_id = identity_of(a_dir), identity_of(b_dir)
    b_port = free_port()
    site_b = NodeProcess(
        b_dir,
        extra_toml=peer_toml(b_port, [{"name": "sitea", "fingerprint": a_id}])
        + "\n[storage]\nstable_age_s = 3600\n",
    )
    with link(kind, b_port) as path:
        peer = {
            "name": "siteb",
            "url": f"https://127.0.0.1:{path.port}",
            "fingerprint": b_id,
            "pull": False,
        }
        site_a = NodeProcess(
            a_dir,
            extra_toml=peer_toml(free_port(), [peer]) + "\n[storage]\nstable_age_s = 2\n",
        )
        try:
            site_b.start()
            site_a.start()
            yield site_a, site_b, path
        finally:
            site_a.stop()
            site_b.stop()


def pacsnode_scenario(kind: str, blobs: list[bytes]) -> Result:
    with scratch("pacsnode") as work, pacsnode_sites(work, kind) as (site_a, site_b, path):
        progress(f"pacsnode, {kind}: loading {len(blobs)} instances into site A, sealing")
        post_instances(site_a.http_port, blobs, None)
        wait_sealed(site_a)
        progress(f"pacsnode, {kind}: timing POST /peers/siteb/sync?wait")
        answers: list[Any] = []
        setup = Setup("pacsnode", path, blobs, pid_of(site_a), pid_of(site_b))
        result = measure(
            setup,
            kind,
            lambda: answers.append(call(site_a.http_port, "POST", "/peers/siteb/sync?wait")),
        )
        if answers[0].get("State") != "Success":
            raise RuntimeError(f"sync failed: {answers[0]}")
        expect(instance_count(site_b.http_port), len(blobs), "site B")
    return result


# --- Orthanc -------------------------------------------------------------------------


@contextlib.contextmanager
def orthanc_pair(work: Path, kind: str) -> Iterator[tuple[OrthancProcess, OrthancProcess, Link]]:
    """Orthanc 1 declares Orthanc 2 (reached over ``kind``) as its peer "b"."""
    receiver = OrthancProcess(work / "orthanc2")
    try:
        with link(kind, receiver.port) as path:
            peers = {"b": [f"http://127.0.0.1:{path.port}/", *CREDENTIALS]}
            sender = OrthancProcess(work / "orthanc1", peers=peers)
            try:
                yield sender, receiver, path
            finally:
                sender.stop()
    finally:
        receiver.stop()


def orthanc_scenario(kind: str, blobs: list[bytes]) -> Result:
    with scratch("orthanc") as work, orthanc_pair(work, kind) as (sender, receiver, path):
        progress(f"Orthanc, {kind}: loading {len(blobs)} instances into Orthanc 1")
        study = post_instances(sender.port, blobs, CREDENTIALS)
        progress(f"Orthanc, {kind}: timing POST /peers/b/store")
        setup = Setup("Orthanc", path, blobs, sender.process.pid, receiver.process.pid)
        result = measure(
            setup,
            kind,
            lambda: call(sender.port, "POST", "/peers/b/store", study.encode(), CREDENTIALS),
        )
        expect(instance_count(receiver.port, CREDENTIALS), len(blobs), "Orthanc 2")
    return result


# --- output --------------------------------------------------------------------------


def markdown(results: list[Result]) -> str:
    orthanc = {r.link: r for r in results if r.system == "Orthanc"}
    lines = [
        "| link | system | instances | MB | wall s | MB/s | pacsnode/Orthanc speed "
        "| sender CPU s | receiver CPU s | connections | request turns | MB sent on the link |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        ratio = ""
        if r.system == "pacsnode" and r.link in orthanc:
            ratio = f"{orthanc[r.link].seconds / r.seconds:.2f}x"
        counted = r.link != "loopback"
        lines.append(
            f"| {r.link} | {r.system} | {r.instances} | {r.total_bytes / MB:.1f} "
            f"| {r.seconds:.2f} | {r.mb_per_s:.1f} | {ratio} | {r.sender_cpu_s:.2f} "
            f"| {r.receiver_cpu_s:.2f} | {r.connections if counted else '-'} "
            f"| {r.turns if counted else '-'} "
            f"| {f'{r.wire_bytes / MB:.1f}' if counted else '-'} |"
        )
    return "\n".join(lines)


def environment(count: int) -> dict[str, Any]:
    return {
        "instances": count,
        "one_way_delay_s": ONE_WAY_DELAY_S,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "orthanc": ORTHANC,
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified": git("status", "--porcelain", "--untracked-files=no").splitlines(),
    }


def run(count: int) -> list[Result]:
    progress(f"generating set A ({count} CT slices 512x512)")
    blobs = list(ct_study(count))
    results = []
    for kind in ("loopback", "WAN 50 ms RTT"):
        results.append(orthanc_scenario(kind, blobs))
        results.append(pacsnode_scenario(kind, blobs))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 instances instead of 300")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not Path(ORTHANC).exists():
        parser.error(f"Orthanc is not installed ({ORTHANC})")
    count = 30 if args.quick else 300
    env = environment(count)
    started = time.perf_counter()
    results = run(count)
    print(markdown(results))
    print(f"\n{LINK_NOTE}")
    if args.json:
        document = {
            "environment": env,
            "benchmark_seconds": time.perf_counter() - started,
            "results": [{**asdict(r), "mb_per_s": r.mb_per_s} for r in results],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
