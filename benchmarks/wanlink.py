"""An emulated WAN link: two network namespaces joined by TUN devices and a delay line.

This kernel has no ``tc netem``, so the delay is added in user space: each namespace
gets a TUN device, and a forwarder process (``python -m benchmarks.wanlink``) reads
every IP packet that leaves one namespace and writes it into the other after a
fixed one-way delay. Because whole IP packets are delayed, TCP itself sees the
real round-trip time: handshakes, ACKs, slow start and window growth all pay it.
There is no throughput cap and no loss; the forwarder's own speed is the ceiling,
and ``measure_ceiling`` reports it so a table can say when it was reached.

Needs root (``ip netns``, ``/dev/net/tun``). Everything is removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import http.client
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")
ADDRESS_A = "10.231.0.1"
ADDRESS_B = "10.231.0.2"
MTU = 1500
READ_BURST = 256  # packets read per wake-up, so one busy direction cannot starve the other
SLACK_S = 0.0005  # packets due this close together leave together

T = TypeVar("T")


@dataclass(frozen=True)
class WanLink:
    """Namespace ``a`` reaches ``address_b`` in namespace ``b`` across the delay line."""

    a: str
    b: str
    address_a: str
    address_b: str
    one_way_delay_s: float
    mtu: int


def available() -> str | None:
    """Why a link cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (ip netns and /dev/net/tun)"
    if not Path("/dev/net/tun").exists():
        return "no /dev/net/tun"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` does not work (iproute2 missing?)"
    return None


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def in_namespace(namespace: str | None) -> list[str]:
    """The argv prefix that runs a command inside ``namespace`` (nothing for the host's)."""
    return [] if namespace is None else ["ip", "netns", "exec", namespace]


# --- reaching into a namespace from this process --------------------------------------


def _enter(namespace: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    with open(NETNS_DIR / namespace) as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({namespace}): {os.strerror(error)}")


def run_in_namespace(namespace: str | None, work: Callable[[], T]) -> T:
    """Run ``work`` on a thread that lives in ``namespace``.

    setns() moves only the calling thread, and a socket stays in the namespace it
    was made in, so the returned socket works from any thread afterwards.
    """
    if namespace is None:
        return work()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            _enter(namespace)
            outcome.append(work())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=body, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


class NamespacedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is opened inside a network namespace."""

    def __init__(self, namespace: str | None, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.namespace = namespace

    def connect(self) -> None:
        address = (self.host, self.port)
        self.sock = run_in_namespace(
            self.namespace, lambda: socket.create_connection(address, self.timeout)
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --- the forwarder process --------------------------------------------------------------


def open_tun(name: str) -> int:
    descriptor = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    request = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(descriptor, TUNSETIFF, request)
    return descriptor


def configure(namespace: str, device: str, address: str, peer: str, mtu: int) -> None:
    ip("link", "set", device, "netns", namespace)
    inside = ["-n", namespace]
    ip(*inside, "link", "set", "lo", "up")
    ip(*inside, "addr", "add", address, "peer", peer, "dev", device)
    ip(*inside, "link", "set", device, "mtu", str(mtu), "up")


def forward(tun_a: int, tun_b: int, delay_s: float, stop: threading.Event) -> None:
    """Move packets between the two TUN devices, each ``delay_s`` after it was read.

    One FIFO per direction: the delay is constant, so the oldest packet is always
    the next one due and no heap is needed. Packets due within ``SLACK_S`` are
    written together, which keeps the loop to a few wake-ups per millisecond.
    """
    lines: dict[int, tuple[int, deque[tuple[float, bytes]]]] = {
        tun_a: (tun_b, deque()),
        tun_b: (tun_a, deque()),
    }
    sources = list(lines)
    read, write, now_s = os.read, os.write, time.monotonic
    while not stop.is_set():
        horizon = now_s() + SLACK_S
        next_due = horizon + 0.2
        for sink, line in lines.values():
            while line and line[0][0] <= horizon:
                try:
                    write(sink, line.popleft()[1])
                except OSError:  # a full sink queue drops the packet, as a router would
                    pass
            if line:
                next_due = min(next_due, line[0][0])
        readable, _, _ = select.select(sources, [], [], max(0.0, next_due - now_s() - SLACK_S))
        due = now_s() + delay_s
        for source in readable:
            append = lines[source][1].append
            for _ in range(READ_BURST):
                try:
                    append((due, read(source, 65536)))
                except BlockingIOError:
                    break


def serve(a: str, b: str, delay_s: float, mtu: int) -> None:
    """Create both namespaces and devices, say "ready", forward until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    created: list[str] = []
    try:
        suffix = str(os.getpid())[-6:]
        devices = {}
        for namespace, address, peer in ((a, ADDRESS_A, ADDRESS_B), (b, ADDRESS_B, ADDRESS_A)):
            ip("netns", "add", namespace)
            created.append(namespace)
            device = f"pnw{namespace[-1]}{suffix}"
            devices[namespace] = open_tun(device)
            configure(namespace, device, address, peer, mtu)
        print("ready", flush=True)
        forward(devices[a], devices[b], delay_s, stop)
    finally:
        for namespace in created:
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", namespace)


@contextlib.contextmanager
def wan_link(one_way_delay_s: float = 0.025, mtu: int = MTU) -> Iterator[WanLink]:
    """A fresh pair of namespaces joined by the delay line, removed afterwards."""
    problem = available()
    if problem:
        raise RuntimeError(f"cannot emulate a WAN link: {problem}")
    tag = str(os.getpid())
    link = WanLink(f"pnwan{tag}a", f"pnwan{tag}b", ADDRESS_A, ADDRESS_B, one_way_delay_s, mtu)
    command = [sys.executable, "-m", "benchmarks.wanlink", link.a, link.b]
    command += ["--delay", str(one_way_delay_s), "--mtu", str(mtu)]
    forwarder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert forwarder.stdout is not None
        if forwarder.stdout.readline().strip() != "ready":
            raise RuntimeError("the WAN forwarder did not start")
        yield link
    finally:
        forwarder.terminate()
        try:
            forwarder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            forwarder.kill()
        for namespace in (link.a, link.b):
            if (NETNS_DIR / namespace).exists():
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


# --- what the link itself does ------------------------------------------------------------


@dataclass(frozen=True)
class Ceiling:
    rtt_ms: float
    bulk_mb_per_s: float


def measure_ceiling(link: WanLink, megabytes: int = 100) -> Ceiling:
    """Median TCP connect time (one RTT) and one bulk TCP stream's rate, a -> b."""
    listener = run_in_namespace(link.b, lambda: socket.create_server((link.address_b, 0)))
    port = listener.getsockname()[1]
    received: list[int] = []

    def drain() -> None:
        for _ in range(6):
            peer, _ = listener.accept()
            total = 0
            while chunk := peer.recv(1 << 20):
                total += len(chunk)
            received.append(total)
            peer.close()

    drainer = threading.Thread(target=drain)
    drainer.start()
    rtts = []
    for _ in range(5):
        start = time.perf_counter()
        probe = run_in_namespace(
            link.a, lambda: socket.create_connection((link.address_b, port), 10)
        )
        rtts.append(time.perf_counter() - start)
        probe.close()
    block = b"\0" * (1 << 20)
    sender = run_in_namespace(link.a, lambda: socket.create_connection((link.address_b, port)))
    start = time.perf_counter()
    for _ in range(megabytes):
        sender.sendall(block)
    sender.shutdown(socket.SHUT_WR)
    drainer.join()
    seconds = time.perf_counter() - start
    sender.close()
    listener.close()
    return Ceiling(sorted(rtts)[2] * 1000, received[-1] / 1e6 / seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Forward packets between two namespaces.")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--delay", type=float, default=0.025, help="one-way seconds")
    parser.add_argument("--mtu", type=int, default=MTU)
    args = parser.parse_args(argv)
    serve(args.a, args.b, args.delay, args.mtu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
