"""Which index plugin answers a query, and how its answers are checked (pure).

The constraints that ask something (not universal) decide the route:

- **direct**: an exact plugin that is caught up decides them all (the main-tag index, for
  a query on main tags only: the route every query took before plugins, as fast);
- **candidates**: a plugin that answers every attribute asked (the search index) finds
  the candidates, the node checks each: main tags on the index's tags, the other
  attributes on the DICOM JSON of an instance below it (any of them);
- **fallback**: no such plugin runs, or it is too far behind: the main-tag index finds
  the candidates from the main tags alone, at most a bounded number of them, and the
  node checks the other attributes on the stored instances.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from pydicom.datadict import dictionary_VR

from pacsnode.node.ids import Level
from pacsnode.node.index_plugins.contract import IndexPlugin
from pacsnode.node.index_plugins.maintags import main_tag_keywords
from pacsnode.node.query import Constraint, Kind, keyword_tags

T = TypeVar("T")

#: attributes of a resource that no one instance holds (a study's modalities): a plugin
#: matching per instance is not asked them, the main-tag index checks them
AGGREGATES = frozenset({"ModalitiesInStudy"})
_NUMBER_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"})


class Route(Enum):
    DIRECT = "direct"
    CANDIDATES = "candidates"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Plan:
    route: Route
    #: the plugin asked: every route asks one
    plugin: IndexPlugin
    #: what it is asked
    sent: tuple[Constraint, ...]
    #: checked on the main-tag index's tags of each candidate
    on_tags: tuple[Constraint, ...] = ()
    #: checked on the DICOM JSON of the candidate's instances (one must match them all)
    on_instances: tuple[Constraint, ...] = ()
    #: on the fallback route, the lag of the plugin that was passed over for it (None:
    #: no plugin answers these attributes)
    behind: int | None = None


def asking(constraints: Iterable[Constraint]) -> list[Constraint]:
    return [c for c in constraints if c.kind is not Kind.UNIVERSAL]


def matches_empty(constraint: Constraint) -> bool:
    """A pattern of ``*`` alone: it matches an attribute present but empty, which no
    index of values holds, so an index cannot find its matches."""
    return constraint.kind is Kind.WILDCARD and set(constraint.values[0]) <= {"*"}


def plan(
    level: Level,
    constraints: Sequence[Constraint],
    main: IndexPlugin,
    others: Sequence[IndexPlugin],
    lag_of: Callable[[IndexPlugin], int],
    max_lag: int,
) -> Plan:
    """The route of a query. ``main`` is the main-tag index; ``others`` the other plugins,
    in order of preference; ``lag_of`` tells a plugin's lag (asked only of a plugin that
    answers the attributes, so a query on main tags asks none), and one more than
    ``max_lag`` changes behind is not asked."""
    asked = asking(constraints)
    if all(main.answers(level, c.keyword) for c in asked):
        return Plan(Route.DIRECT, main, tuple(constraints))
    on_tags = tuple(c for c in asked if main.answers(level, c.keyword))
    on_instances = tuple(c for c in asked if not main.answers(level, c.keyword))
    behind: int | None = None
    for plugin in others:
        if not all(plugin.answers(level, c.keyword) for c in on_instances):
            continue
        lag = lag_of(plugin)
        if lag > max_lag:
            behind = lag if behind is None else min(behind, lag)
            continue
        if plugin.exact and lag == 0 and all(plugin.answers(level, c.keyword) for c in asked):
            return Plan(Route.DIRECT, plugin, tuple(asked))
        sent = tuple(
            c
            for c in asked
            if c.keyword not in AGGREGATES
            and not matches_empty(c)
            and plugin.answers(level, c.keyword)
        )
        if sent:
            return Plan(Route.CANDIDATES, plugin, sent, on_tags, on_instances)
    return Plan(Route.FALLBACK, main, on_tags, (), on_instances, behind)


# --- checking a candidate ---------------------------------------------------------------


def tags_match(constraints: Iterable[Constraint], tags: Mapping[str, str]) -> bool:
    """Whether the index's tags of a resource (with its ancestors') match."""
    return all(c.matches(tags.get(c.keyword)) for c in constraints)


@functools.lru_cache(maxsize=1024)
def _json_keys_and_vr(keyword: str) -> tuple[tuple[str, ...], str]:
    """The DICOM JSON keys on an attribute's path (one per sequence level) and its VR."""
    tags = keyword_tags(keyword)
    if tags is None:
        return (), "UN"
    return tuple(f"{tag:08X}" for tag in tags), dictionary_VR(tags[-1]).split(" or ")[0]


def _elements_at(
    data: Mapping[str, Any], keys: tuple[str, ...]
) -> Iterator[Mapping[str, Any] | None]:
    """The elements at a path in a DICOM JSON object: the one element at the top level
    (None when absent), and inside sequences the element of every item that has one."""
    element = data.get(keys[0]) if keys else None
    if len(keys) <= 1:
        yield element
        return
    for item in (element or {}).get("Value") or []:
        if isinstance(item, Mapping):
            yield from (found for found in _elements_at(item, keys[1:]) if found is not None)


def _as_text(value: Any) -> str:
    if isinstance(value, dict):  # a person name
        return str(value.get("Alphabetic", ""))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _same_number(constraint: Constraint, values: list[Any]) -> bool:
    """A number matched by value, as DICOM JSON keeps it (``5.0`` is stored ``5``)."""
    if constraint.kind not in (Kind.EXACT, Kind.LIST):
        return False
    try:
        wanted = {float(v) for v in constraint.values}
    except ValueError:
        return False
    return any(isinstance(v, int | float) and float(v) in wanted for v in values)


def element_matches(constraint: Constraint, element: Mapping[str, Any] | None) -> bool:
    """Whether one attribute of an instance's DICOM JSON matches: its whole value (values
    joined by ``\\``, as the main-tag index keeps them) or any one of its values."""
    if constraint.kind is Kind.UNIVERSAL:
        return True
    if element is None:
        return False
    values = element.get("Value") or []
    texts = [_as_text(v) for v in values]
    if constraint.matches("\\".join(texts)):
        return True
    if len(texts) > 1 and any(constraint.matches(text) for text in texts):
        return True
    return _json_keys_and_vr(constraint.keyword)[1] in _NUMBER_VRS and _same_number(
        constraint, values
    )


def _attribute_matches(constraint: Constraint, metadata: Mapping[str, Any]) -> bool:
    """Whether an instance matches one constraint: inside sequences, when any item does
    (PS3.4 C.2.2.2.6)."""
    if constraint.kind is Kind.UNIVERSAL:
        return True
    keys = _json_keys_and_vr(constraint.keyword)[0]
    return any(element_matches(constraint, e) for e in _elements_at(metadata, keys))


def instance_matches(constraints: Iterable[Constraint], metadata: Mapping[str, Any]) -> bool:
    """Whether one instance's DICOM JSON matches every constraint."""
    return all(_attribute_matches(c, metadata) for c in constraints)


def on_instances(level: Level, constraints: Iterable[Constraint]) -> list[Constraint]:
    """The constraints that an instance below a resource of ``level`` must match, those its
    main tags do not decide (nor a study's modalities, which no one instance holds)."""
    main = main_tag_keywords(level)
    return [c for c in asking(constraints) if c.keyword not in main and c.keyword not in AGGREGATES]


def page(found: Iterable[T], offset: int, limit: int | None) -> list[T]:
    """``offset`` skipped, then at most ``limit`` (``None`` or 0: all)."""
    stop = None if not limit else offset + limit
    return list(itertools.islice(found, offset, stop))
