"""The built-in main-tag index as an index plugin (the ``maintags`` entry point).

The main tags live in the node's LMDB index, written by ingest in the same transaction as
the instance (:mod:`pacsnode.node.index`), so this plugin has nothing to follow: it is
never behind, and it answers exactly, by asking the node's main-tag lookups.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pacsnode.node.ids import Level
from pacsnode.node.index.maintags import MAIN_TAGS
from pacsnode.node.index_plugins.contract import IndexFeed
from pacsnode.node.query import Constraint


@functools.cache
def main_tag_keywords(level: Level) -> frozenset[str]:
    """The attributes the index keeps for a resource of ``level``: its level's and its
    ancestors' main tags (and, from the study down, the study's modalities)."""
    keywords = {k for lvl in Level if lvl.depth <= level.depth for k in MAIN_TAGS[lvl]}
    if level.depth >= Level.STUDY.depth:
        keywords.add("ModalitiesInStudy")
    return frozenset(keywords)


class MainTagIndex:
    """Exact answers on the main tags, from the node's own index."""

    exact = True

    def __init__(self) -> None:
        self._feed: IndexFeed | None = None

    def start(self, feed: IndexFeed) -> None:
        self._feed = feed

    def stop(self) -> None:
        self._feed = None

    def lag(self) -> int:
        return 0  # written with the instance, in the same transaction

    def answers(self, level: Level, keyword: str) -> bool:
        return keyword in main_tag_keywords(level)

    def find(
        self, level: Level, constraints: Sequence[Constraint], limit: int | None, offset: int = 0
    ) -> list[str]:
        if self._feed is None:
            raise RuntimeError("the main-tag index plugin is not started")
        return self._feed.find_main_tags(level, constraints, offset, limit)


def maintags(settings: Mapping[str, Any], data_dir: Path) -> MainTagIndex:
    """The ``maintags`` entry point: no settings of its own."""
    if settings:
        raise ValueError(f"takes no settings (got {', '.join(sorted(settings))})")
    return MainTagIndex()
