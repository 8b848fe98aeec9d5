"""The REST application factory: shared state, middlewares, routes and services.

Route modules know nothing of this module; each has one ``setup_routes(app)``.
"""

from __future__ import annotations

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.dicomweb import service as dicomweb
from pacsnode.node.jobs import JobRegistry
from pacsnode.node.registry import Registry
from pacsnode.node.rest import (
    annotations,
    archives,
    content,
    dicom_attachment,
    hierarchy,
    modalities,
    peers,
    plugin_list,
    queries,
    resources,
    runtime_settings,
    search,
    services,
    system,
    tag_views,
    tools,
    upload,
)
from pacsnode.node.rest import jobs as job_routes
from pacsnode.node.rest.auth import basic_auth
from pacsnode.node.rest.context import CONFIG, CORE, JOBS, REGISTRY, REPLICATOR, ReplicatorSlot
from pacsnode.node.rest.errors import errors_as_json
from pacsnode.node.rest.paths import orthanc_paths
from pacsnode.node.rest.web_plugins import mount_web_plugins
from pacsnode.node.settings import NodeConfig
from pacsnode.node.ui import routes as ui
from pacsnode.node.viewer import routes as viewer

_ROUTES = (
    resources,
    hierarchy,
    tag_views,
    content,
    upload,
    dicom_attachment,  # before annotations: its routes answer the "dicom" attachment
    annotations,
    archives,
    tools,
    search,
    system,
    runtime_settings,
    modalities,
    job_routes,
    peers,
    queries,
    viewer,
    ui,
)


def create_app(
    core: NodeCore,
    config: NodeConfig,
    *,
    jobs: JobRegistry | None = None,
    registry: Registry | None = None,
    serve_dicom: bool = False,
) -> web.Application:
    """The node's REST app over an open core, with the ``[web] plugins`` mounted
    (:class:`~pacsnode.node.plugins.PluginError` if one is missing or broken).

    With ``serve_dicom`` the app also runs the DICOM server for its lifetime (``pacsnode
    serve`` does; in-process tests of the REST API need not). The replicator and the peering
    listener run when the configuration has peers.
    """
    # CORS preflights (when configured) are answered before authentication.
    middlewares = [*dicomweb.middlewares(config.dicomweb), errors_as_json]
    if config.users:  # authentication answers with the error envelope: it runs inside it
        middlewares.append(basic_auth(config.users))
    middlewares.append(orthanc_paths)  # innermost: it dispatches again, after the others
    app = web.Application(middlewares=middlewares, client_max_size=config.http.max_request_bytes)
    app[CORE] = core
    app[CONFIG] = config
    app[JOBS] = jobs or JobRegistry()
    app[REGISTRY] = registry or Registry.from_config(
        config, core.index.registry_entries(), core.index.save_registry_entry
    )
    app[REPLICATOR] = ReplicatorSlot(core, config, app[JOBS], app[REGISTRY])
    for module in _ROUTES:
        module.setup_routes(app)
    dicomweb.setup(app, config.dicomweb)
    mount_web_plugins(app, core, config)  # under /plugins/{name}/, behind the same middlewares
    plugin_list.setup_routes(app, config)
    if serve_dicom:
        app.cleanup_ctx.append(services.dicom_server)
    app.cleanup_ctx.append(services.replicator)
    app.cleanup_ctx.append(services.peering_listener)
    return app
