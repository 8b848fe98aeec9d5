"""The node's index plugins: the built-in main-tag index, the search index when
``[search] enabled``, then the ``[index] plugins`` in their order, each built through
:mod:`pacsnode.node.plugins` from its ``pacsnode.index`` entry point.

A query goes to the first of them that answers it (:mod:`.planning`); ``/tools/search``
goes to the search index alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacsnode.node import plugins
from pacsnode.node.index_plugins.contract import IndexFeed, IndexPlugin
from pacsnode.node.index_plugins.finder import Finder, FindSource
from pacsnode.node.search.plugin import SearchPlugin
from pacsnode.node.settings import CoreSettings

MAIN = "maintags"
SEARCH = "search"
#: built in: named in [index] plugins they would be loaded twice
BUILT_IN = frozenset({MAIN, SEARCH})


def build(name: str, settings: Mapping[str, Any], data_dir: Path) -> IndexPlugin:
    """Plugin ``name`` built from its entry point; PluginError when it is not one."""
    built = plugins.build(
        plugins.PluginKind.INDEX, name, lambda factory: factory(dict(settings), data_dir)
    )
    if not isinstance(built, IndexPlugin):
        raise plugins.PluginError(
            f"index plugin {name!r}: its factory made a {type(built).__name__}, which lacks "
            "what an index plugin has (exact, start, stop, lag, answers, find)"
        )
    return built


@dataclass
class IndexPlugins:
    """The plugins a node runs, built (so a broken one stops the start) but not started."""

    main: IndexPlugin
    others: list[tuple[str, IndexPlugin]] = field(default_factory=list)
    _started: list[IndexPlugin] = field(default_factory=list)

    @classmethod
    def configured(cls, settings: CoreSettings, feeders: bool) -> IndexPlugins:
        """The main-tag index always; the others only with ``feeders`` (a node serving,
        not a CLI command that opens the data for a moment)."""
        data_dir = Path(settings.data_dir)
        loaded = cls(build(MAIN, {}, data_dir))
        if not feeders:
            return loaded
        wanted: list[tuple[str, Mapping[str, Any]]] = []
        if settings.search.enabled:
            wanted.append((SEARCH, {"commit_interval_s": settings.search.commit_interval_s}))
        wanted.extend((name, settings.plugins.settings_of(name)) for name in settings.plugins.index)
        loaded.others = [(name, build(name, own, data_dir)) for name, own in wanted]
        return loaded

    @property
    def all(self) -> Sequence[tuple[str, IndexPlugin]]:
        return [(MAIN, self.main), *self.others]

    @property
    def search(self) -> SearchPlugin | None:
        """The built-in search index, when it runs."""
        return next((p for _, p in self.others if isinstance(p, SearchPlugin)), None)

    def start(self, feed: IndexFeed) -> None:
        """Start each in turn; if one fails, those started are stopped and it is raised
        (as a PluginError naming it)."""
        for name, plugin in self.all:
            try:
                plugin.start(feed)
            except Exception as exc:
                self.stop()
                raise plugins.PluginError(
                    f"index plugin {name!r} failed to start: {type(exc).__name__}: {exc}"
                ) from exc
            self._started.append(plugin)

    def stop(self) -> None:
        """Stop those started, the last first."""
        while self._started:
            self._started.pop().stop()

    def lags(self) -> dict[str, int]:
        return {name: plugin.lag() for name, plugin in self.others}

    def finder(self, node: FindSource) -> Finder:
        return Finder(node, self.main, self.others)
