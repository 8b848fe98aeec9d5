"""The index plugin contract: a query plugin fed from the node's change feed.

A factory registered as a ``pacsnode.index`` entry point builds one from its settings (the
``[plugins.NAME]`` table, or ``[search]`` for the built-in search index) and the node's data
directory (a plugin keeps its files under ``data_dir/plugins/NAME``; the built-in search
index keeps ``data_dir/search``). The node starts it with the feed it follows, asks it
queries from many threads at once, and stops it once. Every implementation passes the same
contract suite (``tests/node/index_plugins/test_contract.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pacsnode.node.errors import DomainError
from pacsnode.node.ids import Level
from pacsnode.node.query import Constraint
from pacsnode.node.search.feeder import FeedSource


class IndexFeed(FeedSource, Protocol):
    """What a plugin reads of the node: the change feed and each instance's DICOM JSON
    (:class:`FeedSource`), and the main-tag index's own answer to a query."""

    def find_main_tags(
        self, level: Level, constraints: Sequence[Constraint], offset: int, limit: int | None
    ) -> list[str]: ...


@runtime_checkable
class IndexPlugin(Protocol):
    """Answers queries on the attributes it was fed.

    ``find`` answers the ids (the node's ids, :mod:`pacsnode.node.ids`) of the resources at
    ``level`` with an instance whose attributes match every constraint (DICOM matching,
    :mod:`pacsnode.node.query`), in an order that stays the same while nothing is stored or
    deleted, ``offset`` of them skipped and at most ``limit`` (``None``: all). It may
    answer resources that do not match when it is not ``exact`` (an index that ignores
    case): the node checks those again. It never leaves out a match it has been fed; what
    it has not been fed yet is counted by ``lag``, and the node looks at those changes
    itself. It may answer a resource deleted since it was fed: the node drops those.
    """

    #: every answer of ``find`` surely matches (else the node checks each one again)
    exact: bool

    def start(self, feed: IndexFeed) -> None:
        """Begin following ``feed`` (e.g. in a thread of its own); return at once."""

    def stop(self) -> None:
        """Stop following the feed and release what it holds; called once."""

    def lag(self) -> int:
        """Changes of the feed that ``find`` does not see yet (0 when caught up)."""

    def answers(self, level: Level, keyword: str) -> bool:
        """Whether ``find`` decides a constraint on ``keyword`` at ``level``."""

    def find(
        self, level: Level, constraints: Sequence[Constraint], limit: int | None, offset: int = 0
    ) -> list[str]:
        """See the class: the resources of ``level`` matching every constraint."""


#: what an entry point names: ``factory(settings, data_dir) -> IndexPlugin``; a ValueError
#: says the settings are wrong
class IndexPluginFactory(Protocol):
    def __call__(self, settings: Mapping[str, Any], data_dir: Path) -> IndexPlugin: ...


class IndexPluginFailed(DomainError):
    """An index plugin raised while answering: the query fails, nothing else does."""

    code = "index-plugin-failed"
    http_status = 500
    dimse_status = 0xC000  # unable to process


class QueryTooBroad(DomainError):
    """A query on attributes no running plugin answers would read too many stored files."""

    code = "query-too-broad"
    http_status = 400
    dimse_status = 0xC000
