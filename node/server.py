"""``pacsnode serve``: open the core, run the app (REST, DICOM, peering) until a signal.

The app opens and closes the long-lived services itself (``pacsnode.node.rest.services``);
this module owns the process: the core's recovery and closing, the REST listener, and
SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.rest.app import create_app
from pacsnode.node.settings import NodeConfig

log = logging.getLogger(__name__)


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    if config.http.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.http.tls_cert, config.http.tls_key)
    return context


async def _run(config: NodeConfig, core: NodeCore) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    runner = web.AppRunner(create_app(core, config, serve_dicom=True), access_log=None)
    try:
        await runner.setup()  # opens the services
        await web.TCPSite(
            runner, config.http.host, config.http.port, ssl_context=tls_context(config)
        ).start()
        log.info(
            "REST API on http%s://%s:%d/ (data in %s)",
            "s" if config.http.tls_cert else "",
            config.http.host,
            config.http.port,
            config.data_dir,
        )
        await stop.wait()
    finally:
        await runner.cleanup()  # stops listening, then closes the services


def serve(config: NodeConfig) -> None:
    core = NodeCore(config.core)
    report = core.open()
    if report.indexed or report.unindexed:
        log.warning(
            "recovery: indexed %d and unindexed %d instances", report.indexed, report.unindexed
        )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(config, core))
    finally:
        core.close()
