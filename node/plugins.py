"""Finding and loading plugins: Python entry points chosen in the configuration.

Three kinds, one entry point group each: ``pacsnode.storage`` (where sealed study ZIPs
are kept, :mod:`pacsnode.storage.backends.base`), ``pacsnode.index`` (query plugins fed
from the change feed) and ``pacsnode.web`` (routes under ``/plugins/{name}/``,
:mod:`pacsnode.node.rest.web_plugins`). The built-in ones are registered the same way, in
pacsnode's own ``pyproject.toml``. ``docs/plugins.md`` is the guide.

A plugin that is missing, does not import or refuses its settings stops the start with a
:class:`PluginError` naming it and its entry point; the node never starts half-configured.
The CLI prints its message alone; the traceback goes to the log at DEBUG (and ``pacsnode
-v`` prints it), so an operator sees one line saying which plugin to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pacsnode.node.errors import ConfigError

log = logging.getLogger(__name__)


class PluginKind(StrEnum):
    STORAGE = "storage"
    INDEX = "index"
    WEB = "web"

    @property
    def group(self) -> str:
        return f"pacsnode.{self.value}"


class PluginError(ConfigError):
    """A configured plugin is missing, broken, or refuses its settings."""

    code = "plugin-error"


def available(kind: PluginKind) -> dict[str, EntryPoint]:
    """The installed plugins of a kind, by name."""
    return {entry.name: entry for entry in entry_points(group=kind.group)}


def entry_point(kind: PluginKind, name: str) -> EntryPoint:
    found = available(kind)
    if name not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise PluginError(
            f"no {kind.value} plugin {name!r}: no entry point {name!r} in group "
            f"{kind.group!r} (installed: {installed})"
        )
    return found[name]


def located(kind: PluginKind, name: str) -> str:
    """Where a plugin comes from, for messages: ``group: module:attribute``."""
    try:
        return f"{kind.group}: {entry_point(kind, name).value}"
    except PluginError:  # uninstalled while starting: the group is all there is to say
        return kind.group


def refused(kind: PluginKind, name: str, problem: str) -> PluginError:
    """A :class:`PluginError` naming the plugin and its entry point, saying ``problem``."""
    return PluginError(f"{kind.value} plugin {name!r} ({located(kind, name)}) {problem}")


def failure(kind: PluginKind, name: str, what: str, exc: BaseException) -> PluginError:
    """A :class:`PluginError` saying which plugin, which entry point, and what went wrong
    (``what``: "does not load", "failed to start"...); the traceback to the log."""
    log.debug("%s plugin %r %s", kind.value, name, what, exc_info=exc)
    return refused(kind, name, f"{what}: {type(exc).__name__}: {exc}")


def load(kind: PluginKind, name: str) -> Any:
    """The object a plugin's entry point names, imported."""
    entry = entry_point(kind, name)
    try:
        return entry.load()
    except Exception as exc:  # any failure to import is the plugin's: name it
        raise failure(kind, name, "does not load", exc) from exc


def build(kind: PluginKind, name: str, factory_call: Callable[[Any], Any]) -> Any:
    """Load plugin ``name`` and build it with ``factory_call(factory)``; a ``ValueError``
    (bad settings) or any other failure becomes a :class:`PluginError` naming it."""
    factory = load(kind, name)
    try:
        return factory_call(factory)
    except PluginError:
        raise
    except ValueError as exc:
        raise refused(kind, name, f"refuses its settings: [plugins.{name}] {exc}") from exc
    except Exception as exc:
        raise failure(kind, name, "failed to start", exc) from exc


def import_configured(storage: str, index: tuple[str, ...], web: tuple[str, ...]) -> None:
    """Import every configured plugin, building none: run before the data directory is
    opened, so that one missing or broken stops the start before recovery runs."""
    for kind, names in (
        (PluginKind.STORAGE, (storage,)),
        (PluginKind.INDEX, index),
        (PluginKind.WEB, web),
    ):
        for name in names:
            load(kind, name)
