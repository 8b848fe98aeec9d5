"""``pacsnode serve``: open the core, run the app (REST, DICOM, peering) until a signal.

The app opens and closes the long-lived services itself (``pacsnode.node.rest.services``);
this module owns the process: the core's recovery and closing, the REST listener (with its
connection guard, :mod:`pacsnode.node.rest.connections`), the open-file limit, the log's
flood filter, the file mode of what the node writes, and SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import ssl
import stat
from pathlib import Path

from aiohttp import web

from pacsnode.node import audit, plugins
from pacsnode.node.config import is_loopback
from pacsnode.node.core import NodeCore
from pacsnode.node.dicom.admission import exposure_lines as dicom_exposure
from pacsnode.node.log_limits import limit_repeats
from pacsnode.node.rest.app import create_app
from pacsnode.node.rest.connections import (
    ConnectionGuard,
    ConnectionLimits,
    GuardedRunner,
    connection_cap,
)
from pacsnode.node.settings import NodeConfig

#: files the node creates are 0600 and directories 0700: they hold patient data
PRIVATE_UMASK = 0o077
#: the soft open-file limit asked for when the hard limit is unlimited
_UNLIMITED_FILES = 1 << 20

log = logging.getLogger(__name__)


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    if config.http.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.http.tls_cert, config.http.tls_key)
    return context


def raised_soft_limit(soft: int, hard: int) -> int:
    """The soft open-file limit to ask for: the hard one (each REST connection, study file
    and DICOM association holds a descriptor; the usual soft 1024 runs out first)."""
    infinity = resource.RLIM_INFINITY
    if soft == infinity:
        return soft
    return max(soft, _UNLIMITED_FILES if hard == infinity else hard)


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; the soft limit in force after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = raised_soft_limit(soft, hard)
    if wanted != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, exc)
            return soft
    return wanted


def exposure(config: NodeConfig, limits: ConnectionLimits) -> list[tuple[int, str]]:
    """What ``serve`` says at start about its REST exposure: (log level, line)."""
    http = config.http
    tls = http.tls_cert is not None
    lines = [
        (
            logging.INFO,
            f"REST API on http{'s' if tls else ''}://{http.host}:{http.port}/ "
            f"({'TLS' if tls else 'no TLS'}; at most {limits.max_connections} connections; "
            f"data in {config.data_dir})",
        )
    ]
    if config.users:
        users = ", ".join(f"{user.name} ({user.role})" for user in config.users)
        lines.append((logging.INFO, f"REST users (HTTP Basic): {users}"))
    else:
        lines.append((logging.INFO, "REST users: none; every local caller has full access"))
    if not is_loopback(http.host) and not tls:
        lines.append(
            (
                logging.WARNING,
                f"REST IS EXPOSED ON {http.host} WITHOUT TLS: passwords and patient data cross "
                "the network in clear; set [http] tls_cert and tls_key",
            )
        )
    lines.extend(dicom_exposure(config.dicom, config.modalities))
    if config.audit.enabled:
        hashed = "hashed" if config.audit.hash_patient_ids else "IN CLEAR"
        lines.append((logging.INFO, f"audit log: {audit.log_path(config)} (patient ids {hashed})"))
    else:
        lines.append((logging.WARNING, "audit log: OFF ([audit] enabled = false)"))
    return lines


async def _run(config: NodeConfig, core: NodeCore, open_files: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    http = config.http
    limits = ConnectionLimits(
        connection_cap(http.max_connections, open_files),
        http.request_head_timeout_s,
        http.request_body_timeout_s,
    )
    guard = ConnectionGuard(limits, tls_context(config))  # the guard runs the TLS handshake
    runner = GuardedRunner(
        create_app(core, config, serve_dicom=True),
        guard,
        access_log=None,
        keepalive_timeout=http.keepalive_timeout_s,
    )
    try:
        await runner.setup()  # opens the services
        guard.start()
        await web.TCPSite(runner, http.host, http.port).start()
        for level, line in exposure(config, limits):
            log.log(level, line)
        await stop.wait()
    finally:
        await guard.stop()
        await runner.cleanup()  # stops listening, then closes the services


def close_data_dir(path: Path) -> None:
    """A data directory made before the node wrote 0600/0700 (or by hand) may be open to
    other users: closing the top directory keeps them out of everything below it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & 0o700)
        log.warning(
            "data directory %s was open to other users (%o); now %o", path, mode, mode & 0o700
        )


def serve(config: NodeConfig) -> None:
    os.umask(PRIVATE_UMASK)  # before anything is written (the CLI sets it too)
    open_files = raise_open_file_limit()
    limit_repeats()
    chosen = config.core.plugins
    plugins.import_configured(chosen.storage_backend, chosen.index, chosen.web)
    core = NodeCore(config.core)
    report = core.open()
    close_data_dir(config.data_dir)
    stop_audit = audit.start(config)  # after the umask: its key and files are 0600
    if report.indexed or report.unindexed:
        log.warning(
            "recovery: indexed %d and unindexed %d instances", report.indexed, report.unindexed
        )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(config, core, open_files))
    finally:
        core.close()
        stop_audit()
