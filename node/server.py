"""``pacsnode serve``: the node core, the DICOM server and the REST app in one process."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from node.config import NodeConfig
from node.core import NodeCore
from node.dicom.services import start_dicom_server
from node.rest.app import create_app

log = logging.getLogger(__name__)


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    if config.http.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.http.tls_cert, config.http.tls_key)
    return context


def serve(config: NodeConfig) -> None:
    core = NodeCore(config.core)
    report = core.open()
    if report.indexed or report.unindexed:
        log.warning(
            "recovery: indexed %d and unindexed %d instances", report.indexed, report.unindexed
        )
    dicom = start_dicom_server(core, config)
    app = create_app(core, config)

    async def shutdown(_: web.Application) -> None:
        for association in dicom.active_associations:
            association.abort()  # a peer that never releases must not hold up the exit
        dicom.shutdown()
        core.close()

    app.on_cleanup.append(shutdown)
    log.info(
        "REST API on http%s://%s:%d/ (data in %s)",
        "s" if config.http.tls_cert else "",
        config.http.host,
        config.http.port,
        config.data_dir,
    )
    web.run_app(
        app,
        host=config.http.host,
        port=config.http.port,
        ssl_context=tls_context(config),
        print=None,
        access_log=None,
    )
