"""``GET /plugins`` and ``GET /plugins/{name}``: what the node runs, in Orthanc's shape.

Scripts and viewers written for Orthanc ask ``/plugins`` whether a feature is there
(``"dicom-web" in plugins``) and ``/plugins/{name}`` for its ``Version``. pacsnode
serves DICOMweb itself, so it is listed under the name of Orthanc's DICOMweb plugin
when it is on; the storage backend, the index plugins and the web plugins the
configuration chose follow, by their entry point names. A web plugin's own
``/plugins/{name}`` stays its folder (a redirect to its pages, see
:mod:`pacsnode.node.rest.web_plugins`), so only the others answer a description there.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint

from aiohttp import web

from pacsnode.node import plugins
from pacsnode.node.index_plugins.loading import MAIN, SEARCH
from pacsnode.node.plugins import PluginKind
from pacsnode.node.rest.system import VERSION
from pacsnode.node.settings import NodeConfig

#: Orthanc's DICOMweb plugin's name, which Orthanc clients look for
DICOMWEB = "dicom-web"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    #: "built in" (DICOMweb), or the plugin kind: "storage", "index", "web"
    kind: str
    version: str
    description: str

    def as_json(self) -> dict[str, str]:
        return {
            "ID": self.name,
            "Version": self.version,
            "Description": self.description,
            "Kind": self.kind,
        }


def _version(entry: EntryPoint | None) -> str:
    """The version of the package that registered a plugin (pacsnode's for its own)."""
    dist = getattr(entry, "dist", None)
    return str(dist.version) if dist is not None else VERSION


def _configured(kind: PluginKind, name: str, what: str) -> PluginInfo:
    entry = plugins.available(kind).get(name)
    return PluginInfo(name, kind.value, _version(entry), f"{what} ({plugins.located(kind, name)})")


def listed(config: NodeConfig) -> list[PluginInfo]:
    """Every plugin the configuration runs, each name once (the first kind wins)."""
    chosen = config.core.plugins
    found: list[PluginInfo] = []
    if config.dicomweb.enabled:
        found.append(
            PluginInfo(
                DICOMWEB,
                "built in",
                VERSION,
                f"DICOMweb (QIDO-RS, WADO-RS, STOW-RS) under {config.dicomweb.root}/, "
                "part of pacsnode",
            )
        )
    found.append(
        _configured(PluginKind.STORAGE, chosen.storage_backend, "storage of sealed studies")
    )
    index = [MAIN, *([SEARCH] if config.core.search.enabled else []), *chosen.index]
    found.extend(_configured(PluginKind.INDEX, name, "index plugin") for name in index)
    found.extend(
        _configured(PluginKind.WEB, name, f"web plugin, under /plugins/{name}/")
        for name in chosen.web
    )
    unique: dict[str, PluginInfo] = {}
    for info in found:
        unique.setdefault(info.name, info)
    return list(unique.values())


def setup_routes(app: web.Application, config: NodeConfig) -> None:
    infos = listed(config)
    names = [info.name for info in infos]

    async def plugin_names(request: web.Request) -> web.Response:
        return web.json_response(names)

    app.router.add_get("/plugins", plugin_names)
    for info in infos:
        if info.name not in config.core.plugins.web:  # a web plugin's is its folder
            app.router.add_get(f"/plugins/{info.name}", _describing(info))


def _describing(info: PluginInfo) -> web.Handler:
    async def describe(request: web.Request) -> web.Response:
        return web.json_response(info.as_json())

    return describe
