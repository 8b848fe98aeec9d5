"""Issue 13, the REST side: slow-loris, password checks, user-name timing, roles, request
sizes, the /changes page cap, private file modes. Pure decisions are tested directly;
each fix also against a real ``pacsnode serve`` (the ``e2e`` tests)."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import logging
import os
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from pacsnode.node.auth import check_user, decoy_hash, hash_password
from pacsnode.node.config import load_config
from pacsnode.node.errors import ConfigError
from pacsnode.node.log_limits import RepeatFilter
from pacsnode.node.rest.auth import Backoff, VerifiedCache, meant_methods, parse_basic
from pacsnode.node.rest.connections import (
    ConnectionLimits,
    ConnectionState,
    connection_cap,
    overdue,
)
from pacsnode.node.rest.roles import required_role, strictest
from pacsnode.node.server import exposure, raised_soft_limit
from pacsnode.node.settings import Role, User
from pacsnode.peer.identity import load_or_create
from tests.node.server import REPO, NodeProcess
from tests.storage.helpers import ct_bytes

READ, WRITE, ADMIN = Role.READ_ONLY, Role.READ_WRITE, Role.ADMIN
STUDY = "0a1b2c3d-00000000-00000000-00000000-00000000"


# --- roles: the policy table ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/studies", READ),
        ("HEAD", "/instances/x/file", READ),
        ("GET", "/dicom-web/studies", READ),
        ("POST", "/tools/find", READ),
        ("POST", "/tools/lookup", READ),
        ("POST", f"/studies/{STUDY}/archive", READ),
        ("POST", f"/patients/{STUDY}/media", READ),
        ("POST", "/tools/create-archive", READ),
        ("POST", "/modalities/pacs/query", READ),
        ("POST", "/instances", WRITE),
        ("POST", "//instances/", WRITE),  # as Orthanc reads paths
        ("POST", "/dicom-web/studies", WRITE),
        ("POST", f"/dicom-web/studies/{STUDY}", WRITE),
        ("PUT", f"/studies/{STUDY}/metadata/1024", WRITE),
        ("DELETE", f"/series/{STUDY}/attachments/report", WRITE),
        ("PUT", f"/patients/{STUDY}/protected", WRITE),
        ("POST", "/modalities/pacs/store", WRITE),
        ("POST", "/peers/site-b/sync", WRITE),
        ("POST", "/queries/q1/answers/0/retrieve", WRITE),
        ("PUT", "/modalities/pacs", ADMIN),
        ("DELETE", "/modalities/pacs", ADMIN),
        ("PUT", "/peers/site-b", ADMIN),
        ("DELETE", f"/studies/{STUDY}", ADMIN),
        ("DELETE", "/changes", ADMIN),
        ("PUT", "/tools/accepted-transfer-syntaxes", ADMIN),
        ("POST", "/tools/reset", ADMIN),
        ("POST", "/tools/execute-script", ADMIN),
        ("POST", "/tools/something-new", ADMIN),  # unlisted: closed by default
        ("PATCH", "/studies", ADMIN),
        ("POST", "/ui/upload", WRITE),
        ("POST", f"/ui/studies/{STUDY}/send", WRITE),
        ("POST", "/ui/jobs/j1/cancel", WRITE),
        ("POST", f"/ui/studies/{STUDY}/delete", ADMIN),
    ],
)
def test_required_role(method: str, path: str, role: Role) -> None:
    assert required_role(method, path) is role


def test_required_role_follows_the_dicomweb_root() -> None:
    assert required_role("POST", "/web/studies", "/web") is WRITE
    assert required_role("POST", "/dicom-web/studies", "/web") is ADMIN


def test_an_override_never_lowers_the_role_needed() -> None:
    request = make_mocked_request(
        "POST", "/tools/find", headers={"X-HTTP-Method-Override": "DELETE"}
    )
    assert meant_methods(request) == ["POST", "DELETE"]
    needed = strictest([required_role(m, f"/studies/{STUDY}") for m in meant_methods(request)])
    assert needed is ADMIN
    assert meant_methods(make_mocked_request("GET", "/studies/x?_method=delete")) == [
        "GET",
        "DELETE",
    ]


def test_roles_order() -> None:
    assert ADMIN.allows(WRITE) and WRITE.allows(READ) and READ.allows(READ)
    assert not READ.allows(WRITE) and not WRITE.allows(ADMIN)


def _config(tmp_path: Path, users: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(users)
    return path


def test_a_lone_user_without_role_is_admin_several_must_say(tmp_path: Path) -> None:
    alice = '[[users]]\nname = "alice"\npassword_hash = "scrypt$x"\n'
    assert load_config(_config(tmp_path, alice)).users[0].role is ADMIN
    bob = '[[users]]\nname = "bob"\npassword_hash = "scrypt$y"\n'
    with pytest.raises(ConfigError, match="'alice' needs a role"):
        load_config(_config(tmp_path, alice + bob))
    config = load_config(
        _config(tmp_path, alice + 'role = "admin"\n' + bob + 'role = "read-only"\n')
    )
    assert [u.role for u in config.users] == [ADMIN, READ]
    with pytest.raises(ConfigError, match=r"users\.role"):
        load_config(_config(tmp_path, alice + 'role = "root"\n'))


# --- authentication: pure parts --------------------------------------------------------------


def test_backoff_after_free_failures_doubles_and_forgets() -> None:
    backoff = Backoff(free_failures=2, base_s=1, max_s=4, forget_s=100)
    for _ in range(2):
        backoff.failed("10.0.0.1", 0)
    assert backoff.retry_after("10.0.0.1", 0) == 0
    backoff.failed("10.0.0.1", 0)
    assert backoff.retry_after("10.0.0.1", 0) == 1
    backoff.failed("10.0.0.1", 1)
    assert backoff.retry_after("10.0.0.1", 1) == 2
    for _ in range(5):
        backoff.failed("10.0.0.1", 10)
    assert backoff.retry_after("10.0.0.1", 10) == 4  # capped
    assert backoff.retry_after("10.0.0.2", 10) == 0  # per address
    assert backoff.retry_after("10.0.0.1", 200) == 0  # forgotten
    backoff.failed("10.0.0.3", 0)
    backoff.failed("10.0.0.3", 0)
    backoff.failed("10.0.0.3", 0)
    backoff.succeeded("10.0.0.3")
    assert backoff.retry_after("10.0.0.3", 0) == 0


def test_backoff_memory_is_bounded() -> None:
    backoff = Backoff(capacity=10)
    for n in range(100):
        backoff.failed(f"10.0.0.{n}", 0)
    assert len(backoff._state) == 10


def test_verified_headers_expire() -> None:
    cache = VerifiedCache(ttl_s=60)
    user = User("alice", "h")
    cache.put("Basic abc", user, now=0)
    assert cache.get("Basic abc", 59) is user
    assert cache.get("Basic abc", 61) is None


def test_parse_basic() -> None:
    token = base64.b64encode(b"alice:pa:ss").decode()
    assert parse_basic(f"Basic {token}") == ("alice", "pa:ss")
    assert parse_basic(f"basic {token}") == ("alice", "pa:ss")
    assert parse_basic("Bearer x") is None
    assert parse_basic("Basic ###") is None
    assert parse_basic("Basic " + base64.b64encode(b"nocolon").decode()) is None


def test_an_unknown_user_costs_the_same_scrypt() -> None:
    stored = hash_password("secret")
    decoy = decoy_hash(stored)
    assert decoy.split("$")[:4] == stored.split("$")[:4]  # same cost parameters

    def best(stored_hash: str | None) -> float:
        times = []
        for _ in range(3):  # CPU time of this thread: other processes' load does not count
            start = time.thread_time()
            assert not check_user("wrong", stored_hash, decoy)
            times.append(time.thread_time() - start)
        return min(times)

    known, unknown = best(stored), best(None)
    assert unknown > 0.6 * known, (known, unknown)
    assert check_user("secret", stored, decoy)


# --- connections, limits, logging: pure parts ------------------------------------------------


class _Payload:
    def __init__(self, eof: bool) -> None:
        self.eof = eof

    def is_eof(self) -> bool:
        return self.eof


def test_overdue() -> None:
    limits = ConnectionLimits(100, head_timeout_s=2, body_timeout_s=5)
    fresh = ConnectionState(opened_at=0, last_data_at=0)
    assert overdue(fresh, 1.9, limits, reading=True) is None
    assert overdue(fresh, 2.1, limits, reading=True) == "no complete request head in time"
    body = ConnectionState(0, 10, heads=1, payload=_Payload(eof=False))
    assert overdue(body, 14, limits, reading=True) is None
    assert overdue(body, 16, limits, reading=True) == "request body stalled"
    assert overdue(body, 16, limits, reading=False) is None  # the node is not reading yet
    done = ConnectionState(0, 10, heads=1, payload=_Payload(eof=True))
    assert overdue(done, 1000, limits, reading=True) is None  # idle: keep-alive's business


def test_connection_cap_and_open_file_limit() -> None:
    assert connection_cap(1000, 1024) == 512
    assert connection_cap(1000, 1 << 20) == 1000
    assert connection_cap(1000, 10) == 16
    assert raised_soft_limit(1024, 524288) == 524288
    assert raised_soft_limit(4096, 4096) == 4096


def test_repeat_filter() -> None:
    now = [0.0]
    repeat = RepeatFilter(burst=3, window_s=10, clock=lambda: now[0])

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, args, None)

    passed = [repeat.filter(record("accept failed from %s", n)) for n in range(100)]
    assert passed.count(True) == 3
    assert repeat.filter(record("another message"))
    now[0] = 11
    later = record("accept failed from %s", 1)
    assert repeat.filter(later) and "97 similar messages dropped" in later.getMessage()


def test_exposure_says_users_roles_and_warns_without_tls(tmp_path: Path) -> None:
    alice = '[[users]]\nname = "alice"\npassword_hash = "scrypt$x"\nrole = "admin"\n'
    reader = '[[users]]\nname = "rita"\npassword_hash = "scrypt$x"\nrole = "read-only"\n'
    config = load_config(_config(tmp_path, '[http]\nhost = "0.0.0.0"\n' + alice + reader))
    lines = exposure(config, ConnectionLimits(1000))
    text = "\n".join(line for _, line in lines)
    assert "http://0.0.0.0:8042/" in text and "no TLS" in text
    assert "alice (admin), rita (read-only)" in text
    assert any(level == logging.WARNING and "WITHOUT TLS" in line for level, line in lines)
    local = exposure(load_config(_config(tmp_path, "")), ConnectionLimits(1000))
    assert all(level == logging.INFO for level, _ in local)


# --- against a real node -------------------------------------------------------------------


def _node(tmp_path: Path, http: str = "", extra: str = "", credentials=None) -> NodeProcess:
    """A node whose [http] table also has ``http`` (NodeProcess writes that table)."""
    node = NodeProcess(tmp_path, extra_toml=extra, credentials=credentials)
    node.config.write_text(node.config.read_text().replace("[http]\n", f"[http]\n{http}"))
    return node.start()


def _half_open(node: NodeProcess, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", node.http_port), timeout=5)
        sock.sendall(b"GET /system HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
        sockets.append(sock)
    return sockets


def _closed_by_peer(sock: socket.socket, wait_s: float) -> bool:
    sock.settimeout(wait_s)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _timed_get(node: NodeProcess, path: str = "/system") -> tuple[int, float]:
    start = time.monotonic()
    status = node.request("GET", path).status
    return status, time.monotonic() - start


@pytest.mark.e2e
def test_slow_loris_connections_are_closed_and_others_served(tmp_path: Path) -> None:
    node = _node(tmp_path, "request_head_timeout_s = 1\n")
    try:
        sockets = _half_open(node, 50)
        status, took = _timed_get(node)
        assert status == 200 and took < 1.0
        # Each is closed once its head is 1 s late (the old node kept them for an hour).
        deadline = time.monotonic() + 4
        assert all(_closed_by_peer(s, max(0.01, deadline - time.monotonic())) for s in sockets)
        for sock in sockets:
            sock.close()
        # The soft open-file limit was raised to the hard one.
        assert node.process is not None
        limits = Path(f"/proc/{node.process.pid}/limits").read_text()
        soft, hard = next(line.split()[3:5] for line in limits.splitlines() if "open files" in line)
        assert soft == hard
        # Fifty closings are logged, but not fifty lines of the same thing.
        closed = node.log.read_text().count("no complete request head in time")
        assert 1 <= closed <= 10
    finally:
        node.stop()


@pytest.mark.e2e
def test_connection_cap_then_recovery(tmp_path: Path) -> None:
    node = _node(tmp_path, "max_connections = 20\nrequest_head_timeout_s = 1\n")
    try:
        sockets = _half_open(node, 20)
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", node.http_port), timeout=5)
        extra.sendall(b"GET /system HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        extra.close()
        time.sleep(1.6)  # the twenty are past their deadline
        status, took = _timed_get(node)
        assert status == 200 and took < 1.0
        for sock in sockets:
            sock.close()
    finally:
        node.stop()


@pytest.mark.e2e
def test_stalled_body_and_idle_keep_alive_are_closed(tmp_path: Path) -> None:
    node = _node(tmp_path, "request_body_timeout_s = 1\nkeepalive_timeout_s = 1\n")
    try:
        stalled = socket.create_connection(("127.0.0.1", node.http_port), timeout=5)
        stalled.sendall(
            b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10
        )
        start = time.monotonic()
        assert _closed_by_peer(stalled, 4) and time.monotonic() - start < 3.5
        stalled.close()
        idle = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=5)
        idle.request("GET", "/system")
        assert idle.getresponse().read()
        assert idle.sock is not None
        start = time.monotonic()
        assert _closed_by_peer(idle.sock, 4) and time.monotonic() - start < 3.5
        idle.close()
        # A later head on a kept-alive connection is bounded too (aiohttp's keep-alive timer
        # closes a connection still waiting for a complete head).
        again = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=5)
        again.request("GET", "/system")
        assert again.getresponse().read()
        assert again.sock is not None
        again.sock.sendall(b"GET /system HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        assert _closed_by_peer(again.sock, 4) and time.monotonic() - start < 3.5
        again.close()
    finally:
        node.stop()


def _basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


_USERS = "".join(
    f'[[users]]\nname = "{name}"\npassword_hash = "{hash_password(name + "-pw")}"\n'
    f'role = "{role}"\n'
    for name, role in (("ada", "admin"), ("wes", "read-write"), ("rita", "read-only"))
)


@pytest.mark.e2e
def test_roles_against_a_node(tmp_path: Path) -> None:
    node = _node(tmp_path, extra=_USERS)
    try:

        def call(user: str, method: str, path: str, body: bytes | None = None, **headers: str):
            return node.request(
                method, path, body, headers={**_basic(user, user + "-pw"), **headers}
            )

        for user in ("rita", "wes", "ada"):
            assert call(user, "GET", "/system").status == 200
            assert call(user, "POST", "/tools/find", b'{"Level":"Study","Query":{}}').status == 200
        denied = call("rita", "POST", "/instances", ct_bytes(0))
        assert denied.status == 403
        error = denied.json()
        assert error["ErrorCode"] == "forbidden" and error["HttpStatus"] == 403
        assert error["Method"] == "POST" and error["Uri"] == "/instances"
        stored = call("wes", "POST", "/instances", ct_bytes(0))
        assert stored.status == 200
        study = stored.json()["ParentStudy"]
        modality = b'{"AET":"X","Host":"127.0.0.1","Port":104}'
        assert call("wes", "PUT", "/modalities/x", modality).status == 403
        assert call("wes", "DELETE", f"/studies/{study}").status == 403
        overridden = call(
            "wes", "POST", f"/studies/{study}", **{"X-HTTP-Method-Override": "DELETE"}
        )
        assert overridden.status == 403
        assert call("ada", "PUT", "/modalities/x", modality).status == 200
        assert call("ada", "DELETE", f"/studies/{study}").status == 200
        log = node.log.read_text()
        assert "REST users (HTTP Basic): ada (admin), wes (read-write), rita (read-only)" in log
        assert "no TLS" in log
    finally:
        node.stop()


@pytest.mark.e2e
def test_wrong_passwords_neither_block_the_loop_nor_reveal_names(tmp_path: Path) -> None:
    node = _node(tmp_path, extra=_USERS)
    try:
        # Names by timing: an unknown user costs the scrypt a known one does (old: ~1 vs
        # ~45 ms). Two tries each stay under the backoff.
        # Each try from its own loopback address, so the backoff never answers instead.
        def took(user: str, address: str) -> float:
            connection = http.client.HTTPConnection(
                "127.0.0.1", node.http_port, timeout=10, source_address=(address, 0)
            )
            connection.connect()
            start = time.monotonic()
            connection.request("GET", "/system", headers=_basic(user, "bad"))
            assert connection.getresponse().status == 401
            elapsed = time.monotonic() - start
            connection.close()
            return elapsed

        known, unknown = [], []
        for n in range(4):  # interleaved: a burst of load elsewhere hits both
            known.append(took("ada", f"127.0.0.{10 + n}"))
            unknown.append(took("nobody", f"127.0.0.{20 + n}"))
        assert min(unknown) > 0.5 * min(known), (known, unknown)

        valid = _basic("rita", "rita-pw")
        assert node.request("GET", "/system", headers=valid).status == 200  # now remembered

        def wrong(n: int) -> int:
            return node.request("GET", "/system", headers=_basic("ada", f"guess{n}")).status

        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            flood = [pool.submit(wrong, n) for n in range(60)]
            time.sleep(0.05)
            start = time.monotonic()
            assert node.request("GET", "/system", headers=valid).status == 200
            assert time.monotonic() - start < 0.5  # old: >2 s behind 60 scrypts on the loop
            statuses = [f.result() for f in flood]
        # A few were checked (two at a time), then the address backs off.
        assert set(statuses) <= {401, 429} and statuses.count(401) <= 10
        start = time.monotonic()
        refused = node.request("GET", "/system", headers=_basic("ada", "again"))
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
        assert time.monotonic() - start < 0.2  # no scrypt spent while backing off
        assert refused.json()["ErrorCode"] == "too-many-failed-logins"
        failed = node.log.read_text().count("REST login failed")
        assert 1 <= failed <= 10  # logged, but not 60 times
    finally:
        node.stop()


@pytest.mark.e2e
def test_request_size_spool_and_changes_cap(tmp_path: Path) -> None:
    node = _node(tmp_path, "max_request_size_mb = 1\nmax_changes_limit = 2\n")
    try:
        big = node.request("POST", "/instances", b"x" * (2 << 20))
        assert big.status == 413 and big.json()["ErrorCode"] == "request-too-large"
        chunked = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
        chunked.request("POST", "/instances", iter([b"x" * (512 << 10)] * 4))  # no length
        answer = chunked.getresponse()
        assert answer.status == 413
        chunked.close()

        assert node.request("POST", "/instances", ct_bytes(0)).status == 200
        page = node.request("GET", "/changes?limit=1000").json()
        assert len(page["Changes"]) == 2 and page["Done"] is False
    finally:
        node.stop()


@pytest.mark.e2e
def test_uploads_spool_in_the_data_dir(tmp_path: Path) -> None:
    node = _node(tmp_path)
    try:
        upload = socket.create_connection(("127.0.0.1", node.http_port), timeout=5)
        upload.sendall(b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n")
        upload.sendall(b"x" * (12 << 20))  # past the 8 MiB kept in memory
        assert node.process is not None
        fd_dir = Path(f"/proc/{node.process.pid}/fd")
        data_dir = str((node.directory / "data").resolve())
        deadline, targets = time.monotonic() + 5, []
        while time.monotonic() < deadline:
            targets = [os.readlink(fd) for fd in fd_dir.iterdir() if fd.is_symlink()]
            if any(t.startswith(data_dir + "/#") for t in targets):
                break
            time.sleep(0.05)
        assert any(t.startswith(data_dir + "/#") for t in targets), targets
        assert not any(t.startswith(tempfile.gettempdir() + "/#") for t in targets)
        upload.close()
    finally:
        node.stop()


@pytest.mark.e2e
def test_data_files_are_private(tmp_path: Path) -> None:
    node = _node(tmp_path, extra="[storage]\nstable_age_s = 0\n")
    try:
        assert node.request("POST", "/instances", ct_bytes(0)).status == 200
        data = node.directory / "data"
        deadline = time.monotonic() + 10
        while not list(data.glob("studies/*/*/study.zip")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(data.glob("studies/*/*/study.zip")), "the study was not sealed"
        assert list(data.glob("index/*.mdb"))
        paths = [data, *data.rglob("*")]
        opened = [
            f"{p}: {stat.S_IMODE(p.stat().st_mode):o}"
            for p in paths
            if stat.S_IMODE(p.stat().st_mode) & 0o077
        ]
        assert not opened
    finally:
        node.stop()


@pytest.mark.e2e
def test_tls_handshakes_are_on_the_clock_and_requests_served(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path / "tls")
    tls = f'tls_cert = "{identity.cert_path}"\ntls_key = "{identity.key_path}"\n'
    node = NodeProcess(tmp_path / "node")
    node.config.write_text(
        node.config.read_text().replace(
            "[http]\n", f"[http]\n{tls}request_head_timeout_s = 1\nmax_connections = 20\n"
        )
    )
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE

    def get() -> int:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", node.http_port, timeout=5, context=client
        )
        connection.request("GET", "/system")
        status = connection.getresponse().status
        connection.close()
        return status

    try:  # NodeProcess.start() polls over plain HTTP: start and poll here
        with open(node.log, "ab") as log:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "pacsnode.node.cli", "--config", str(node.config), "serve"],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get() == 200
                break
            except OSError:
                assert time.monotonic() < deadline, node.log.read_text()
                time.sleep(0.1)
        # Connections that never finish the handshake count against the cap and are
        # closed on the head deadline (asyncio's own handshake gave them a minute).
        silent = [
            socket.create_connection(("127.0.0.1", node.http_port), timeout=5) for _ in range(20)
        ]
        time.sleep(0.3)
        with pytest.raises(OSError):
            get()  # the cap is full: closed before the handshake
        assert all(_closed_by_peer(s, 3) for s in silent)
        for sock in silent:
            sock.close()
        assert get() == 200
        assert "REST API on https://" in node.log.read_text()
    finally:
        node.stop()
