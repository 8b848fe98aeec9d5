"""Web plugins (``pacsnode.web`` entry points): routes under ``/plugins/{name}/``.

What a plugin author uses: an entry point naming a factory ``(WebContext) -> app``, where
app is an :class:`aiohttp.web.Application`, routes (a ``web.RouteTableDef`` or a list of
``web.get(...)``...), or a :class:`WebPlugin` (either, plus a :class:`Panel` in the UI's
navigation). The factory reads its settings from the context and raises ``ValueError``
for bad ones; it is called once, at start. ``docs/plugins.md`` walks through an example.

What the node does with it: each configured plugin is mounted as a sub-app, so the node's
middlewares (authentication and roles, the JSON error envelope, the audit log) wrap its
routes as they wrap the REST API's. A guard, outermost in the plugin's own app, answers
whatever its handlers raise (other than HTTP and domain errors) with a JSON 500 naming the
plugin, logged once with its traceback; the client sees neither the traceback nor a path.
Plugins read the node through :class:`NodeReader` only, so a failing one cannot damage
what is stored.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from pacsnode.node import plugins
from pacsnode.node.core import NodeCore
from pacsnode.node.errors import DomainError
from pacsnode.node.plugins import PluginKind
from pacsnode.node.rest.errors import error_response
from pacsnode.node.rest.node_reader import NodeReader
from pacsnode.node.settings import NodeConfig
from pacsnode.node.ui.panels import PANELS, NavLink, Panel, nav_link

__all__ = ["NodeReader", "Panel", "WebContext", "WebPlugin", "mount_web_plugins"]

log = logging.getLogger(__name__)
PREFIX = "/plugins"


@dataclass(frozen=True)
class WebContext:
    """What a web plugin's factory is given."""

    #: the plugin's name, as ``[web] plugins`` lists it
    name: str
    #: its ``[plugins.NAME]`` table (a read-only copy; empty when there is none)
    settings: Mapping[str, Any]
    #: a logger of its own (``pacsnode.plugins.NAME``), in the node's log
    log: logging.Logger
    #: read-only access to the node's resources
    node: NodeReader
    #: where its routes answer, ``/plugins/NAME/`` (for links in its pages)
    prefix: str


@dataclass(frozen=True)
class WebPlugin:
    """A factory's answer when the plugin also shows a panel in the UI's navigation."""

    routes: web.Application | Iterable[web.AbstractRouteDef]
    panel: Panel | None = None


WebFactory = Callable[[WebContext], web.Application | Iterable[web.AbstractRouteDef] | WebPlugin]


def mount_web_plugins(app: web.Application, core: NodeCore, config: NodeConfig) -> None:
    """Build every ``[web] plugins`` entry and mount it; a plugin that is missing, does not
    load, refuses its settings or answers with something else raises
    :class:`~pacsnode.node.plugins.PluginError`. Their panels go to the UI (``PANELS``)."""
    links: list[NavLink] = []
    reader = NodeReader(core)
    for name in config.core.plugins.web:
        link = _mount(app, name, config.core.plugins.settings_of(name), reader)
        if link is not None:
            links.append(link)
    app[PANELS] = tuple(links)


def _mount(
    app: web.Application, name: str, settings: Mapping[str, Any], reader: NodeReader
) -> NavLink | None:
    context = WebContext(
        name=name,
        settings=MappingProxyType(copy.deepcopy(dict(settings))),
        log=logging.getLogger(f"pacsnode.plugins.{name}"),
        node=reader,
        prefix=f"{PREFIX}/{name}/",
    )
    made = plugins.build(PluginKind.WEB, name, lambda factory: factory(context))
    sub_app, panel = _as_app(name, made)
    _guard(name, sub_app)
    # /plugins/NAME is its folder: the page's relative links need the slash
    sub_app.router.add_get("", _to_folder)
    app.add_subapp(f"{PREFIX}/{name}", sub_app)
    return None if panel is None else nav_link(name, panel)


async def _to_folder(request: web.Request) -> web.StreamResponse:
    url = request.rel_url
    raise web.HTTPPermanentRedirect(url.with_path(url.path + "/").with_query(url.query))


def _as_app(name: str, made: Any) -> tuple[web.Application, Panel | None]:
    panel = None
    if isinstance(made, WebPlugin):
        made, panel = made.routes, made.panel
    if panel is not None and (problem := panel.problem()):
        raise plugins.refused(PluginKind.WEB, name, problem)
    if isinstance(made, web.Application):
        return made, panel
    routes = list(made) if isinstance(made, Iterable) else [made]
    if not all(isinstance(route, web.AbstractRouteDef) for route in routes):
        raise plugins.refused(
            PluginKind.WEB,
            name,
            f"made a {type(made).__name__}, not a web.Application, routes or a WebPlugin",
        )
    sub_app = web.Application()
    sub_app.add_routes(routes)
    return sub_app, panel


def _guard(name: str, sub_app: web.Application) -> None:
    """Errors of the plugin's handlers answered and logged in its name; its start-up
    hooks' failures stop the start as any broken plugin does."""
    sub_app.middlewares.insert(0, _answering_for(name))
    sub_app.on_startup[:] = [_starting(name, hook) for hook in sub_app.on_startup]
    sub_app.cleanup_ctx[:] = [_starting_context(name, ctx) for ctx in sub_app.cleanup_ctx]


def _answering_for(name: str) -> Middleware:
    @web.middleware
    async def answering(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPException, DomainError):
            raise  # meant answers: the node's error envelope shows them as for any route
        except Exception:
            log.exception("web plugin %r failed on %s %s", name, request.method, request.path)
            if request.writer.output_size > 0:
                raise  # part of an answer is out: only closing the connection is left
            return error_response(
                request, 500, "plugin-error", f"web plugin {name!r} failed; see the node's log"
            )

    return answering


Hook = Callable[[web.Application], Awaitable[None]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def _starting(name: str, hook: Hook) -> Hook:
    async def started(app: web.Application) -> None:
        try:
            await hook(app)
        except Exception as exc:
            raise plugins.failure(PluginKind.WEB, name, "failed to start", exc) from exc

    return started


def _starting_context(name: str, context: CleanupContext) -> CleanupContext:
    async def started(app: web.Application) -> AsyncIterator[None]:
        steps = context(app)
        try:
            await anext(steps)
        except Exception as exc:
            raise plugins.failure(PluginKind.WEB, name, "failed to start", exc) from exc
        yield
        async for _ in steps:  # its cleanup: aiohttp reports what that raises
            break

    return started
