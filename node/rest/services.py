"""The node's long-lived services, opened and closed with the app (``app.cleanup_ctx``).

- the DICOM server (only when the app is built to serve DICOM);
- the replicator and its schedule, when peers are configured (at exit also one that
  ``PUT /peers`` made);
- the mutual-TLS peering listener, when pacsnode peers are configured.

Each context owns one service. Closing runs in the reverse order of opening, after the
REST listener has stopped; a context whose opening failed leaves the earlier ones to be
closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from pacsnode.node.dicom.services import start_dicom_server, stop_dicom_server
from pacsnode.node.rest.context import CONFIG, CORE, JOBS, REGISTRY, REPLICATOR, blocking
from pacsnode.node.settings import NodeConfig

if TYPE_CHECKING:
    from pacsnode.node.replication import Replicator

log = logging.getLogger(__name__)


async def dicom_server(app: web.Application) -> AsyncIterator[None]:
    server = start_dicom_server(app[CORE], app[CONFIG], app[REGISTRY], app[JOBS])
    yield
    # Aborting associations and joining the server's thread blocks.
    await asyncio.to_thread(stop_dicom_server, server)


async def replicator(app: web.Application) -> AsyncIterator[None]:
    """Made at start-up when there are peers; stopped at exit whoever made it."""
    if app[REGISTRY].peers():
        await blocking(app[REPLICATOR].ensure)
    yield
    app[REPLICATOR].close()


async def peering_listener(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    runner = None
    if any(peer.kind == "pacsnode" for peer in app[REGISTRY].peers().values()):
        runner = await _start_listener(config, await blocking(app[REPLICATOR].ensure))
    yield
    if runner is not None:
        await runner.cleanup()


async def _start_listener(config: NodeConfig, replicator: Replicator) -> web.AppRunner:
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
    try:
        await web.TCPSite(
            runner, config.peering.host, config.peering.port, ssl_context=context
        ).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info(
        "peering on https://%s:%d/ as %s",
        config.peering.host,
        config.peering.port,
        replicator.identity.fingerprint,
    )
    return runner
