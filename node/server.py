"""``pacsnode serve``: the node core, the DICOM server, the REST app and peering in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from typing import TYPE_CHECKING

from aiohttp import web

from pacsnode.node.config import NodeConfig
from pacsnode.node.core import NodeCore
from pacsnode.node.dicom.services import start_dicom_server
from pacsnode.node.jobs import JobRegistry

if TYPE_CHECKING:
    from pacsnode.node.replication import Replicator
from pacsnode.node.rest.app import create_app

log = logging.getLogger(__name__)


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    if config.http.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.http.tls_cert, config.http.tls_key)
    return context


async def _run(config: NodeConfig, core: NodeCore) -> None:
    jobs = JobRegistry()
    replicator = None
    if config.peers:  # the peering code (TLS, scheduler) is loaded only when it is used
        from pacsnode.node.replication import Replicator

        replicator = Replicator(core, config, jobs)
    runners = [web.AppRunner(create_app(core, config, jobs, replicator), access_log=None)]
    await runners[0].setup()
    await web.TCPSite(
        runners[0], config.http.host, config.http.port, ssl_context=tls_context(config)
    ).start()
    log.info(
        "REST API on http%s://%s:%d/ (data in %s)",
        "s" if config.http.tls_cert else "",
        config.http.host,
        config.http.port,
        config.data_dir,
    )
    if replicator is not None:
        if any(peer.kind == "pacsnode" for peer in config.peers):
            runners.append(await _start_peering(config, replicator))
        replicator.start_schedule()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await stop.wait()
    finally:
        if replicator is not None:
            replicator.stop()
        for runner in reversed(runners):
            await runner.cleanup()


async def _start_peering(config: NodeConfig, replicator: Replicator) -> web.AppRunner:
    """The mutual-TLS listener for pacsnode peers."""
    from pacsnode.peer.server import create_peer_app
    from pacsnode.peer.tls import server_context

    spool = config.data_dir / "peer-spool"
    app = create_peer_app(
        replicator.peering, replicator.identity.fingerprint, replicator.pins, spool
    )

    async def record_contact(request: web.Request, response: web.StreamResponse) -> None:
        # The listener's middleware names the pinned peer; a refused or failed request
        # is not a contact.
        if response.status < 400 and "peer" in request:
            replicator.heard_from(request["peer"])

    app.on_response_prepare.append(record_contact)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = server_context(replicator.identity, config.peering.shared_ca)
    await web.TCPSite(runner, config.peering.host, config.peering.port, ssl_context=context).start()
    log.info(
        "peering on https://%s:%d/ as %s",
        config.peering.host,
        config.peering.port,
        replicator.identity.fingerprint,
    )
    return runner


def serve(config: NodeConfig) -> None:
    core = NodeCore(config.core)
    report = core.open()
    if report.indexed or report.unindexed:
        log.warning(
            "recovery: indexed %d and unindexed %d instances", report.indexed, report.unindexed
        )
    dicom = start_dicom_server(core, config)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(config, core))
    finally:
        for association in dicom.active_associations:
            association.abort()  # a peer that never releases must not hold up the exit
        dicom.shutdown()
        core.close()
