"""Running a query's plan (:mod:`.planning`) against the index plugins and the node.

On the candidates route, a plugin that is behind has not seen the last ``lag`` changes of
the feed: the instances they added are read here (at most :data:`MAX_LAG` changes), so an
instance is found by any attribute as soon as it is stored. A plugin that raises is a
:class:`IndexPluginFailed` (a 500 or a DIMSE failure at the edge, logged with its
traceback), never anything else: queries only read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from pacsnode.node.errors import DomainError, SearchUnavailable, UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.index import ChangePage, InstanceRef
from pacsnode.node.index.changes import ChangeType
from pacsnode.node.index_plugins.contract import IndexPlugin, IndexPluginFailed, QueryTooBroad
from pacsnode.node.index_plugins.planning import (
    Plan,
    Route,
    instance_matches,
    page,
    plan,
    tags_match,
)
from pacsnode.node.query import Constraint

log = logging.getLogger(__name__)
T = TypeVar("T")

#: the changes a plugin may be behind and still be asked (the rest are read here)
MAX_LAG = 1000
#: the resources whose stored instances a query may read when no plugin answers it
FALLBACK_CANDIDATES = 1000
#: candidates asked of a plugin at first, and at most at once (the chunks grow)
FIRST_CHUNK = 100
LAST_CHUNK = 10_000


class FindSource(Protocol):
    """What the finder reads of the node (``NodeCore`` answers all of it)."""

    def query_answer(self, resource_id: str) -> tuple[dict[str, str], dict[str, int]]: ...

    def instances_of(self, resource_ids: list[str]) -> list[InstanceRef]: ...

    def instance_json(self, ref: InstanceRef) -> dict[str, Any]: ...

    def records(self, resource_ids: list[str]) -> list[dict[str, Any] | None]: ...

    def changes(self, since: int = 0, limit: int = 100) -> ChangePage: ...

    def last_change(self) -> int: ...


class Finder:
    """Answers a query from the main-tag index ``main`` and the ``others`` (name, plugin),
    in order of preference."""

    def __init__(
        self, node: FindSource, main: IndexPlugin, others: Sequence[tuple[str, IndexPlugin]]
    ) -> None:
        self._node = node
        self._main = main
        self._others = [plugin for _, plugin in others]
        self._names = {id(plugin): name for name, plugin in [("maintags", main), *others]}

    def find(
        self, level: Level, constraints: Sequence[Constraint], offset: int, limit: int | None
    ) -> list[str]:
        lags = _Lags(self._node, self._call)
        chosen = plan(level, constraints, self._main, self._others, lags.of, MAX_LAG)
        if chosen.route is Route.DIRECT:
            return self._call(chosen.plugin, chosen.plugin.find, level, chosen.sent, limit, offset)
        if chosen.route is Route.FALLBACK:
            candidates: Iterator[str] = iter(self._fallback_candidates(level, chosen))
        else:
            candidates = self._candidates(level, chosen, lags.unseen_from(chosen.plugin))
        return page((c for c in candidates if self._matches(c, chosen)), offset, limit)

    # --- candidates ----------------------------------------------------------------------

    def _candidates(self, level: Level, chosen: Plan, unseen_from: int | None) -> Iterator[str]:
        seen: set[str] = set()
        for resource_id in self._asked(level, chosen):
            if resource_id not in seen:
                seen.add(resource_id)
                yield resource_id
        if unseen_from is not None:
            for resource_id in self._unseen(level, unseen_from):
                if resource_id not in seen:
                    seen.add(resource_id)
                    yield resource_id

    def _asked(self, level: Level, chosen: Plan) -> Iterator[str]:
        """The plugin's answers, in chunks that grow: most queries want one page."""
        offset, size = 0, FIRST_CHUNK
        while True:
            found = self._call(chosen.plugin, chosen.plugin.find, level, chosen.sent, size, offset)
            yield from found
            if len(found) < size:
                return
            offset, size = offset + len(found), min(size * 4, LAST_CHUNK)

    def _unseen(self, level: Level, since: int) -> Iterator[str]:
        """The resources at ``level`` above the instances stored after change ``since``."""
        done = False
        while not done:
            feed = self._node.changes(since, 500)
            done = feed.done or not feed.changes
            for entry in feed.changes:
                since = int(entry["Seq"])
                if entry.get("ChangeType") == ChangeType.NEW_INSTANCE:
                    found = self._ancestor(str(entry["ID"]), level)
                    if found is not None:
                        yield found

    def _ancestor(self, resource_id: str, level: Level) -> str | None:
        record = self._node.records([resource_id])[0]
        while record is not None and record["level"] != level.value:
            parent = record.get("parent")
            record = self._node.records([parent])[0] if parent else None
        return None if record is None else str(record["id"])

    def _fallback_candidates(self, level: Level, chosen: Plan) -> list[str]:
        bound = FALLBACK_CANDIDATES + 1  # one more says there are too many
        found = self._call(self._main, self._main.find, level, chosen.sent, bound, 0)
        if len(found) <= FALLBACK_CANDIDATES:
            return found
        keywords = ", ".join(sorted({c.keyword for c in chosen.on_instances}))
        narrow = (
            f"narrow it with main tags (PatientID, StudyDate, AccessionNumber, Modality...) "
            f"to at most {FALLBACK_CANDIDATES} {level.plural}"
        )
        if chosen.behind is not None:
            raise SearchUnavailable(
                f"the index that answers {keywords} is {chosen.behind} changes behind "
                f"(catching up): try again shortly, or {narrow}"
            )
        raise QueryTooBroad(
            f"{keywords}: not main tags at the {level.value} level, and no index plugin "
            f"answers them ([search] is off): {narrow}, or turn [search] on"
        )

    # --- checking ------------------------------------------------------------------------

    def _matches(self, resource_id: str, chosen: Plan) -> bool:
        tags, _ = self._node.query_answer(resource_id)
        if not tags or not tags_match(chosen.on_tags, tags):
            return False  # deleted, or a candidate of an index that ignores case
        if not chosen.on_instances:
            return True
        try:
            refs = self._node.instances_of([resource_id])
        except UnknownResource:
            return False
        for ref in refs:
            try:
                metadata = self._node.instance_json(ref)
            except (DomainError, OSError):
                continue  # deleted meanwhile
            if instance_matches(chosen.on_instances, metadata):
                return True
        return False

    def _call(self, plugin: IndexPlugin, method: Callable[..., T], *args: Any) -> T:
        try:
            return method(*args)
        except DomainError:
            raise
        except Exception as exc:
            name = self._names.get(id(plugin), type(plugin).__name__)
            log.exception("index plugin %r failed", name)
            raise IndexPluginFailed(
                f"index plugin {name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc


class _Lags:
    """Each plugin's lag, read once a query, after the feed's position: the changes past
    ``position - lag`` are then surely among those the plugin has not seen."""

    def __init__(self, node: FindSource, call: Callable[..., Any]) -> None:
        self._node = node
        self._call = call
        self._position: int | None = None
        self._lags: dict[int, int] = {}

    def of(self, plugin: IndexPlugin) -> int:
        if id(plugin) not in self._lags:
            if self._position is None:
                self._position = self._node.last_change()
            self._lags[id(plugin)] = self._call(plugin, plugin.lag)
        return self._lags[id(plugin)]

    def unseen_from(self, plugin: IndexPlugin) -> int | None:
        lag = self.of(plugin)
        if lag == 0 or self._position is None:
            return None
        return max(0, self._position - lag)
