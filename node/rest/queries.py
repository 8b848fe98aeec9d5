"""Query/retrieve through the REST API, as Orthanc has it.

``POST /modalities/{name}/query`` runs a C-FIND and keeps its answers under
``/queries/{id}`` (in memory, until deleted or the node restarts); each answer can be
shown (``/content``), retrieved by C-MOVE (``/retrieve``, to us or to another AE), or
queried one level down (``/query-studies``, ``/query-series``, ``/query-instances``).
``POST /modalities/{name}/move`` and ``/get`` retrieve without a query first.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydicom.dataset import Dataset

from pacsnode.node.dicom import retrieve_scu
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.ids import Level
from pacsnode.node.registry import Registry
from pacsnode.node.rest.context import CONFIG, REGISTRY, blocking, core_of
from pacsnode.node.rest.formats import writer_for
from pacsnode.node.rest.params import flag_param, json_body
from pacsnode.node.rest.tags import TagFormat
from pacsnode.node.settings import Modality

_KEPT_QUERIES = 100
_CHILD = {"query-studies": Level.STUDY, "query-series": Level.SERIES,
          "query-instances": Level.INSTANCE}  # fmt: skip


@dataclass
class Query:
    modality: str
    level: Level
    query: dict[str, str]
    answers: list[Dataset] = field(default_factory=list)


class QueryStore:
    """The latest queries' answers, by random id (oldest dropped past a hundred)."""

    def __init__(self) -> None:
        self._queries: OrderedDict[str, Query] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, query: Query) -> str:
        query_id = uuid.uuid4().hex
        with self._lock:
            self._queries[query_id] = query
            while len(self._queries) > _KEPT_QUERIES:
                self._queries.popitem(last=False)
        return query_id

    def get(self, query_id: str) -> Query:
        with self._lock:
            found = self._queries.get(query_id)
        if found is None:
            raise NotFound(f"no query {query_id}")
        return found

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._queries)

    def delete(self, query_id: str) -> None:
        with self._lock:
            if self._queries.pop(query_id, None) is None:
                raise NotFound(f"no query {query_id}")


QUERIES = web.AppKey("queries", QueryStore)


def _level(body: dict[str, Any]) -> Level:
    try:
        return Level.parse(str(body.get("Level", "")))
    except ValueError:
        raise BadRequest("'Level' must be Patient, Study, Series or Instance") from None


def _keys(answer: Dataset, level: Level) -> dict[str, str]:
    return {k: str(answer.get(k, "")) for k in retrieve_scu.IDENTIFIERS[level]}


async def _run_query(
    request: web.Request, name: str, level: Level, query: dict[str, Any]
) -> web.Response:
    modality = request.app[REGISTRY].modality(name)
    aet = request.app[CONFIG].dicom.aet
    answers = await blocking(retrieve_scu.find, aet, modality, level, query)
    query_id = request.app[QUERIES].add(Query(name, level, dict(query), answers))
    return web.json_response({"ID": query_id, "Path": f"/queries/{query_id}"})


async def query_modality(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("Query", {}), dict):
        raise BadRequest('send {"Level": ..., "Query": {keyword: value}}')
    query = body.get("Query", {})  # no Query: every answer at that level
    return await _run_query(request, request.match_info["name"], _level(body), query)


def _query(request: web.Request) -> Query:
    return request.app[QUERIES].get(request.match_info["id"])


def _answer(request: web.Request) -> tuple[Query, Dataset]:
    query = _query(request)
    try:
        return query, query.answers[int(request.match_info["n"])]
    except (ValueError, IndexError):
        raise NotFound(f"no answer {request.match_info['n']}") from None


def _shown(request: web.Request, dataset: Dataset) -> dict[str, Any]:
    return writer_for(request, TagFormat.FULL).dataset(dataset.to_json_dict())


async def list_queries(request: web.Request) -> web.Response:
    return web.json_response(request.app[QUERIES].ids())


async def show_query(request: web.Request) -> web.Response:
    _query(request)
    return web.json_response(["answers", "level", "modality", "query", "retrieve"])


async def delete_query(request: web.Request) -> web.Response:
    request.app[QUERIES].delete(request.match_info["id"])
    return web.json_response({})


async def query_part(request: web.Request) -> web.Response:
    query = _query(request)
    part = request.match_info["part"]
    if part == "level":
        return web.Response(text=query.level.value, content_type="text/plain")
    if part == "modality":
        return web.Response(text=query.modality, content_type="text/plain")
    asked = retrieve_scu.identifier(query.level, query.query)
    del asked.QueryRetrieveLevel  # Orthanc shows the query's own keys
    for keyword in retrieve_scu.IDENTIFIERS[query.level]:
        if keyword not in query.query:
            delattr(asked, keyword)
    return web.json_response(_shown(request, asked))


async def list_answers(request: web.Request) -> web.Response:
    query = _query(request)
    if flag_param(request, "expand"):
        return web.json_response([_shown(request, a) for a in query.answers])
    return web.json_response([str(n) for n in range(len(query.answers))])


async def show_answer(request: web.Request) -> web.Response:
    _answer(request)
    return web.json_response(["content", "retrieve", *_CHILD])


async def answer_content(request: web.Request) -> web.Response:
    return web.json_response(_shown(request, _answer(request)[1]))


async def _target(request: web.Request) -> str:
    text = (await request.text()).strip()
    if text.startswith("{"):
        body = await json_body(request)
        text = str(body.get("TargetAet", "")) if isinstance(body, dict) else ""
    target = text.strip('"') or request.app[CONFIG].dicom.aet
    return target


async def retrieve_answer(request: web.Request) -> web.Response:
    query, answer = _answer(request)
    await _move(request, query, [answer], await _target(request))
    return web.json_response({})


async def retrieve_all(request: web.Request) -> web.Response:
    query = _query(request)
    await _move(request, query, query.answers, await _target(request))
    return web.json_response({})


async def _move(request: web.Request, query: Query, answers: list[Dataset], target: str) -> None:
    registry: Registry = request.app[REGISTRY]
    modality, aet = registry.modality(query.modality), request.app[CONFIG].dicom.aet
    for answer in answers:
        keys = _keys(answer, query.level)
        await blocking(retrieve_scu.move, aet, modality, query.level, keys, target)


async def query_children(request: web.Request) -> web.Response:
    query, answer = _answer(request)
    child = _CHILD[request.match_info["kind"]]
    if child.depth <= query.level.depth:
        raise BadRequest(f"a {query.level.value.lower()} answer has no {child.plural} below it")
    body = await json_body(request) if request.can_read_body else {}
    asked = dict(body.get("Query", {})) if isinstance(body, dict) else {}
    for keyword in retrieve_scu.IDENTIFIERS[query.level]:
        asked.setdefault(keyword, str(answer.get(keyword, "")))
    return await _run_query(request, query.modality, child, asked)


async def _retrieve_request(
    request: web.Request,
) -> tuple[Level, Modality, str, list[dict[str, str]], dict[str, Any]]:
    """(level, modality, our AE title, resources, body) of a ``/move`` or ``/get`` body."""
    body = await json_body(request)
    resources = body.get("Resources") if isinstance(body, dict) else None
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise BadRequest('send {"Level": ..., "Resources": [{"StudyInstanceUID": ...}, ...]}')
    modality = request.app[REGISTRY].modality(request.match_info["name"])
    return _level(body), modality, request.app[CONFIG].dicom.aet, resources, body


async def move_from_modality(request: web.Request) -> web.Response:
    """Orthanc's ``POST /modalities/{name}/move``: {"Level", "Resources": [uids], "TargetAet"}."""
    level, modality, aet, resources, body = await _retrieve_request(request)
    target = str(body.get("TargetAet") or aet)
    for keys in resources:
        await blocking(retrieve_scu.move, aet, modality, level, keys, target)
    return web.json_response({})


async def get_from_modality(request: web.Request) -> web.Response:
    """Orthanc's ``POST /modalities/{name}/get``: C-GET the resources into this node."""
    level, modality, aet, resources, _ = await _retrieve_request(request)
    core, received = core_of(request), []
    for keys in resources:
        received += await blocking(retrieve_scu.get, core, aet, modality, level, keys)
    # Orthanc's shape of a finished C-GET job's content
    details = {"ReceivedInstancesIds": received}
    return web.json_response({"Details": [details], "ReceivedInstancesCount": len(received)})


def setup_routes(app: web.Application) -> None:
    app[QUERIES] = QueryStore()
    route = app.router
    route.add_post("/modalities/{name}/query", query_modality)
    route.add_post("/modalities/{name}/move", move_from_modality)
    route.add_post("/modalities/{name}/get", get_from_modality)
    route.add_get("/queries", list_queries)
    route.add_get("/queries/{id}", show_query)
    route.add_delete("/queries/{id}", delete_query)
    route.add_get("/queries/{id}/{part:level|modality|query}", query_part)
    route.add_get("/queries/{id}/answers", list_answers)
    route.add_post("/queries/{id}/retrieve", retrieve_all)
    route.add_get("/queries/{id}/answers/{n}", show_answer)
    route.add_get("/queries/{id}/answers/{n}/content", answer_content)
    route.add_post("/queries/{id}/answers/{n}/retrieve", retrieve_answer)
    kinds = "{kind:query-studies|query-series|query-instances}"
    route.add_post(f"/queries/{{id}}/answers/{{n}}/{kinds}", query_children)
