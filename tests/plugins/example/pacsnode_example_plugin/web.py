"""The ``example`` web plugin: how many studies hold each modality.

``GET /plugins/example/modalities`` answers ``{"CT": 2, "MR": 1}`` (a study with CT and MR
series counts for both); ``GET /plugins/example/`` shows the same as a page, linked from
the UI's navigation by a panel. Everything it knows comes through ``context.node``, the
read-only view of the node every web plugin is given.

Settings, in ``[plugins.example]``: ``title`` (the panel's title, "Modalities" by
default). Anything else is refused, so a typo stops the start instead of being ignored.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import web

from pacsnode.node.rest.web_plugins import NodeReader, Panel, WebContext, WebPlugin

NODE = web.AppKey("node", NodeReader)
TITLE = web.AppKey("title", str)
_SETTINGS = {"title"}


def modalities_plugin(context: WebContext) -> WebPlugin:
    """The entry point: check the settings, make the app, declare the panel."""
    unknown = set(context.settings) - _SETTINGS
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    title = context.settings.get("title", "Modalities")
    if not isinstance(title, str):
        raise ValueError(f"'title' must be a string, not {title!r}")
    app = web.Application()
    app[NODE] = context.node
    app[TITLE] = title
    app.router.add_get("/modalities", modalities)
    app.router.add_get("/", page)
    context.log.info("counting studies per modality at %smodalities", context.prefix)
    return WebPlugin(app, Panel(title))


async def studies_per_modality(node: NodeReader) -> dict[str, int]:
    """Modality -> studies with at least one series of it."""
    series = await node.resources(await node.find("Series"))
    pairs = {(s["MainDicomTags"].get("Modality", ""), s["ParentStudy"]) for s in series}
    counts = Counter(modality for modality, _ in pairs if modality)
    return dict(sorted(counts.items()))


async def modalities(request: web.Request) -> web.Response:
    return web.json_response(await studies_per_modality(request.app[NODE]))


async def page(request: web.Request) -> web.Response:
    counts = await studies_per_modality(request.app[NODE])
    rows = "".join(
        f"<tr><td>{html.escape(modality)}</td><td>{count}</td></tr>"
        for modality, count in counts.items()
    )
    title = html.escape(request.app[TITLE])
    body = (
        f"<!doctype html><title>{title}</title><h1>{title}</h1>"
        f"<table><tr><th>Modality</th><th>Studies</th></tr>{rows}</table>"
        '<p><a href="/ui/studies">Back to the studies</a></p>'
    )
    return web.Response(text=body, content_type="text/html")


# --- for the tests of failures -----------------------------------------------------------

routes = web.RouteTableDef()


@routes.get("/fail")
async def fail(request: web.Request) -> web.Response:
    """A handler with a bug: the node answers 500 naming the plugin and keeps serving."""
    raise KeyError("/secret/path/of/the/plugin")


@routes.post("/echo")
async def echo(request: web.Request) -> web.Response:
    """A write: needs the read-write role, as storing does."""
    return web.json_response(await request.json())


def faulty_plugin(context: WebContext) -> web.Application | web.RouteTableDef:
    """Plain routes, no panel: the other form a factory may return. With
    ``fail_at_start = true`` its app's start-up (a cleanup context) raises instead."""
    if not context.settings.get("fail_at_start"):
        return routes
    app = web.Application()
    app.add_routes(routes)
    app.cleanup_ctx.append(_unreachable_database)
    return app


async def _unreachable_database(app: web.Application) -> AsyncIterator[None]:
    raise ConnectionRefusedError("the example's database does not answer")
    yield
