"""Finding and loading plugins: Python entry points chosen in the configuration.

Three kinds, one entry point group each: ``pacsnode.storage`` (where sealed study ZIPs
are kept, :mod:`pacsnode.storage.backends.base`), ``pacsnode.index`` (query plugins fed
from the change feed) and ``pacsnode.web`` (routes under ``/plugins/{name}/``). The
built-in ones are registered the same way, in pacsnode's own ``pyproject.toml``.

A plugin that is missing, does not import or refuses its settings stops the start with a
:class:`PluginError` naming it and its entry point; the node never starts half-configured.
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


def load(kind: PluginKind, name: str) -> Any:
    """The object a plugin's entry point names, imported."""
    entry = entry_point(kind, name)
    try:
        return entry.load()
    except Exception as exc:  # any failure to import is the plugin's: name it
        log.exception("loading %s plugin %r (%s) failed", kind.value, name, entry.value)
        raise PluginError(
            f"{kind.value} plugin {name!r} ({kind.group}: {entry.value}) does not load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def build(kind: PluginKind, name: str, factory_call: Callable[[Any], Any]) -> Any:
    """Load plugin ``name`` and build it with ``factory_call(factory)``; a ``ValueError``
    (bad settings) or any other failure becomes a :class:`PluginError` naming it."""
    factory = load(kind, name)
    try:
        return factory_call(factory)
    except PluginError:
        raise
    except ValueError as exc:
        raise PluginError(f"{kind.value} plugin {name!r}: [plugins.{name}] {exc}") from exc
    except Exception as exc:
        log.exception("starting %s plugin %r failed", kind.value, name)
        raise PluginError(
            f"{kind.value} plugin {name!r} ({entry_point(kind, name).value}) failed to "
            f"start: {type(exc).__name__}: {exc}"
        ) from exc
