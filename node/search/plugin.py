"""The search index as an index plugin (the ``search`` entry point, set by ``[search]``).

It answers a constraint on any attribute of the DICOM dictionary, at any level, from the
tantivy index (:mod:`.engine`) its feeder keeps following the change feed
(:mod:`.feeder`). Its answers ignore case (the index folds values) where DICOM matching
does not, so it is not exact: the node checks each answer again (:mod:`.from_dicom`).
The same index answers ``POST /tools/search`` in the search language (:meth:`search`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pacsnode.node.ids import Level
from pacsnode.node.index_plugins.contract import IndexFeed
from pacsnode.node.query import Constraint, keyword_tags
from pacsnode.node.search import feeder
from pacsnode.node.search.from_dicom import constraints_query
from pacsnode.node.search.query_ast import Node

FOLDER = "search"
#: no limit: more than any index holds
_EVERYTHING = 1 << 62


class SearchPlugin:
    """The search index and the feeder that keeps it up to date."""

    exact = False

    def __init__(self, path: Path, commit_interval_s: float = 1.0) -> None:
        self.path = path
        self._interval = commit_interval_s
        self._feeder: feeder.Feeder | None = None

    def start(self, feed: IndexFeed) -> None:
        self._feeder = feeder.Feeder(feeder.open_index(self.path), feed, self._interval)
        self._feeder.start()

    def stop(self) -> None:
        if self._feeder is not None:
            self._feeder.stop()
            self._feeder = None

    def lag(self) -> int:
        return self._running().lag()

    def answers(self, level: Level, keyword: str) -> bool:
        return keyword == "ModalitiesInStudy" or keyword_tags(keyword) is not None

    def find(
        self, level: Level, constraints: Sequence[Constraint], limit: int | None, offset: int = 0
    ) -> list[str]:
        return self.search(constraints_query(constraints), level, limit, offset)

    def search(self, query: Node, level: Level, limit: int | None, offset: int = 0) -> list[str]:
        """The ids at ``level`` of the resources with an instance matching a query of the
        search language, in id order."""
        wanted = _EVERYTHING if limit is None else limit
        return self._running().index.search(query, level, wanted, offset)

    def _running(self) -> feeder.Feeder:
        if self._feeder is None:
            raise RuntimeError("the search index plugin is not started")
        return self._feeder


def search(settings: Mapping[str, Any], data_dir: Path) -> SearchPlugin:
    """The ``search`` entry point; its settings are ``[search]``'s (``commit_interval_s``;
    ``enabled`` decides whether the node loads it at all)."""
    unknown = set(settings) - {"commit_interval_s", "enabled"}
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    interval = settings.get("commit_interval_s", 1.0)
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval < 0:
        raise ValueError("commit_interval_s must be a number of seconds, 0 or more")
    return SearchPlugin(data_dir / FOLDER, float(interval))
