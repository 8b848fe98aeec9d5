"""QIDO-RS handlers: run a parsed search against the index and answer DICOM JSON.

A search on main tags scoped by the path (``/studies/{S}/series``) walks down from the
study the index finds by its UID; any other lets the index (and, for attributes that are
not main tags, the index plugins) pick its best lookup. Either way
answers come from the index's tags; attributes it does not keep are read from the stored
metadata of one instance (for the instance level, from the study's metadata, read once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.dicomweb import qido
from pacsnode.node.dicomweb.errors import NotAcceptable
from pacsnode.node.dicomweb.negotiation import DICOM_JSON, accepts_json, parse_accept
from pacsnode.node.dicomweb.paths import service_url, uid
from pacsnode.node.ids import Level
from pacsnode.node.index_plugins.maintags import main_tag_keywords
from pacsnode.node.query import Constraint, Kind
from pacsnode.node.rest.context import CONFIG, blocking, core_of
from pacsnode.storage.archive import SOP_UID_KEY, first_value

_PERSON_NAME_VR = "PN"


@dataclass
class Match:
    resource_id: str
    tags: dict[str, str]
    counts: dict[str, int]


def _exact(search: qido.Search, keyword: str) -> str | None:
    value = search.matches.get(keyword, "")
    return value if value and not any(c in value for c in "*?\\-") else None


def _children(core: NodeCore, parent_ids: list[str], depth: int) -> Iterator[str]:
    for parent_id in parent_ids:
        children = core.resource(parent_id)["children"]
        if depth == 1:
            yield from children
        else:
            yield from _children(core, children, depth - 1)


def _scoped_candidates(core: NodeCore, search: qido.Search) -> Iterator[str] | None:
    """Candidates below the study (or series) an exact UID names; ``None`` if unscoped."""
    if search.level is Level.INSTANCE and _exact(search, "SeriesInstanceUID"):
        series = core.find(Level.SERIES, {"SeriesInstanceUID": search.matches["SeriesInstanceUID"]})
        return _children(core, series, 1)
    if search.level is not Level.STUDY and _exact(search, "StudyInstanceUID"):
        studies = core.find(Level.STUDY, {"StudyInstanceUID": search.matches["StudyInstanceUID"]})
        return _children(core, studies, 1 if search.level is Level.SERIES else 2)
    return None


def _matches(
    core: NodeCore, candidates: Iterator[str], constraints: list[Constraint]
) -> Iterator[Match]:
    for resource_id in candidates:
        tags, counts = core.query_answer(resource_id)
        if tags and all(c.matches(tags.get(c.keyword)) for c in constraints):
            yield Match(resource_id, tags, counts)


def _fuzzy(constraints: list[Constraint], search: qido.Search) -> list[Constraint]:
    """Fuzzy matching of person names: a name without wildcards matches as a prefix of
    the name (``doe`` finds ``DOE^JOHN``), case-insensitively."""
    if not search.fuzzy:
        return constraints
    result = []
    for constraint in constraints:
        if constraint.kind is Kind.EXACT and qido.vr_of(constraint.keyword) == _PERSON_NAME_VR:
            constraint = Constraint(
                constraint.keyword, Kind.WILDCARD, (constraint.values[0] + "*",), False
            )
        result.append(constraint)
    return result


def run_search(core: NodeCore, search: qido.Search, cap: int | None) -> tuple[list[Match], bool]:
    """The page of matches asked for, and whether more would have followed it."""
    sizes = [size for size in (search.limit, cap) if size]  # limit=0 asks for no limit
    limit = min(sizes) if sizes else None
    constraints = _fuzzy(search.constraints(), search)
    wanted = None if limit is None else limit + 1
    # Walking down from the study a path names is only for main tags: on any other
    # attribute the index plugins find the matches (the scope is a main tag to them).
    main_tags = main_tag_keywords(search.level)
    on_main_tags = all(c.keyword in main_tags for c in constraints if c.kind is not Kind.UNIVERSAL)
    scoped = _scoped_candidates(core, search) if on_main_tags else None
    if scoped is not None:
        found = _matches(core, scoped, constraints)
        page = []
        for index, match in enumerate(found):
            if index < search.offset:
                continue
            page.append(match)
            if wanted is not None and len(page) >= wanted:
                break
    else:
        ids = core.find_constraints(search.level, constraints, offset=search.offset, limit=wanted)
        page = list(_matches(core, iter(ids), []))
    more = limit is not None and len(page) > limit
    return page[:limit] if limit is not None else page, more


def _retrieve_url(base: str, level: Level, tags: dict[str, str]) -> str:
    url = f"{base}/studies/{tags.get('StudyInstanceUID', '')}"
    if level in (Level.SERIES, Level.INSTANCE):
        url += f"/series/{tags.get('SeriesInstanceUID', '')}"
    if level is Level.INSTANCE:
        url += f"/instances/{tags.get('SOPInstanceUID', '')}"
    return url


def _stored_for(
    core: NodeCore, search: qido.Search, matches: list[Match]
) -> list[dict[str, Any] | None]:
    """For each match, stored metadata of one of its instances, when an answer needs it."""
    by_study: dict[str, dict[str, dict[str, Any]]] = {}
    stored: list[dict[str, Any] | None] = []
    constraints = search.constraints()
    for match in matches:
        if not qido.needs_stored(search, match.tags):
            stored.append(None)
        elif search.level is Level.INSTANCE:
            study_uid = match.tags.get("StudyInstanceUID", "")
            if study_uid not in by_study:
                by_study[study_uid] = {
                    first_value(item, SOP_UID_KEY): item for item in core.study_metadata(study_uid)
                }
            stored.append(by_study[study_uid].get(match.tags.get("SOPInstanceUID", "")))
        else:
            stored.append(core.matching_instance_json(match.resource_id, search.level, constraints))
    return stored


def _answers(
    core: NodeCore, search: qido.Search, cap: int | None, base: str
) -> tuple[list[dict[str, Any]], bool]:
    matches, more = run_search(core, search, cap)
    stored = _stored_for(core, search, matches)
    return [
        qido.answer(search, m.tags, m.counts, s, _retrieve_url(base, search.level, m.tags))
        for m, s in zip(matches, stored, strict=True)
    ], more


def _search_handler(level: Level, scope_names: tuple[str, ...]) -> Any:
    keywords = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID"}

    async def handler(request: web.Request) -> web.Response:
        if not accepts_json(parse_accept(request.headers.get("Accept"))):
            raise NotAcceptable("search results are sent as application/dicom+json only")
        scope = {keywords[name]: uid(request, name) for name in scope_names}
        search = qido.parse_search(level, request.query.items(), scope)
        cap = request.app[CONFIG].find.cap(level is Level.INSTANCE)
        answers, more = await blocking(
            _answers, core_of(request), search, cap, service_url(request)
        )
        headers = {"Content-Type": DICOM_JSON}
        if more:
            host = request.host.replace('"', "")
            headers["Warning"] = (
                f'299 {host} "there are more results: ask again with a higher offset"'
            )
        return web.Response(
            body=json.dumps(answers, separators=(",", ":")).encode(), headers=headers
        )

    return handler


def setup_routes(app: web.Application, root: str) -> None:
    app.router.add_get(root + "/studies", _search_handler(Level.STUDY, ()))
    app.router.add_get(root + "/series", _search_handler(Level.SERIES, ()))
    app.router.add_get(root + "/instances", _search_handler(Level.INSTANCE, ()))
    app.router.add_get(root + "/studies/{study}/series", _search_handler(Level.SERIES, ("study",)))
    app.router.add_get(
        root + "/studies/{study}/instances", _search_handler(Level.INSTANCE, ("study",))
    )
    app.router.add_get(
        root + "/studies/{study}/series/{series}/instances",
        _search_handler(Level.INSTANCE, ("study", "series")),
    )
