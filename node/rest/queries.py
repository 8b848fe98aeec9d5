"""Query/retrieve through the REST API, as Orthanc has it.

``POST /modalities/{name}/query`` runs a C-FIND and keeps its answers under
``/queries/{id}`` (in memory, until deleted or the node restarts); each answer can be
shown (``/content``), retrieved by C-MOVE (``/retrieve``, to us or to another AE), or
queried one level down (``/query-studies``, ``/query-series``, ``/query-instances``).
``POST /modalities/{name}/move`` and ``/get`` retrieve without a query first.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydicom.dataset import Dataset

from pacsnode.node.dicom import retrieve_scu
from pacsnode.node.dicom.scu import RemoteDicomError
from pacsnode.node.errors import BadRequest, NotFound
from pacsnode.node.ids import Level
from pacsnode.node.jobs import JobContext
from pacsnode.node.registry import Registry
from pacsnode.node.rest.context import CONFIG, JOBS, REGISTRY, blocking, core_of
from pacsnode.node.rest.formats import names_of, writer_for
from pacsnode.node.rest.params import flag_param, json_body
from pacsnode.node.rest.tags import TagFormat, TagWriter, body_format
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


def _keys(answer: Dataset) -> dict[str, str]:
    """The identifying keys of an answer that a retrieve of it sends back."""
    return {k: str(answer.get(k, "")) for k in retrieve_scu.RETRIEVE_KEYS if answer.get(k)}


#: what a query one level down keeps of the answer it starts from
_PARENT_KEYS = {
    Level.PATIENT: ("PatientID",),
    Level.STUDY: ("PatientID", "StudyInstanceUID"),
    Level.SERIES: ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
}


def _normalize_flag(body: dict[str, Any]) -> bool:
    value = body.get("Normalize", True)
    if not isinstance(value, bool):
        raise BadRequest("'Normalize' must be true or false")
    return value


async def _run_query(
    request: web.Request, name: str, level: Level, query: dict[str, Any], normalize: bool
) -> web.Response:
    """Run the C-FIND and keep its answers. Normalized (the default), the query loses the
    attributes that do not belong to its level, as Orthanc's does."""
    modality = request.app[REGISTRY].modality(name)
    aet = request.app[CONFIG].dicom.aet
    sent = retrieve_scu.normalized(level, query) if normalize else query
    answers = await blocking(retrieve_scu.find, aet, modality, level, sent)
    query_id = request.app[QUERIES].add(Query(name, level, dict(query), answers))
    return web.json_response({"ID": query_id, "Path": f"/queries/{query_id}"})


async def query_modality(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("Query", {}), dict):
        raise BadRequest('send {"Level": ..., "Query": {keyword: value}}')
    query = body.get("Query", {})  # no Query: every answer at that level
    name, normalize = request.match_info["name"], _normalize_flag(body)
    return await _run_query(request, name, _level(body), query, normalize)


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


@dataclass(frozen=True)
class RetrieveOptions:
    """A ``/retrieve`` body: the target AE title, in the body as text or JSON."""

    target: str
    asynchronous: bool = False
    fmt: TagFormat = TagFormat.SHORT  # how the job's content shows the C-MOVE queries


async def _retrieve_options(request: web.Request) -> RetrieveOptions:
    own_aet = request.app[CONFIG].dicom.aet
    text = (await request.text()).strip()
    if not text.startswith("{"):
        return RetrieveOptions(text.strip('"') or own_aet)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest('send an AE title, or {"TargetAet": ..., "Synchronous": ...}')
    return _options_of(body, own_aet)


def _options_of(body: dict[str, Any], own_aet: str) -> RetrieveOptions:
    asynchronous = body.get("Synchronous") is False or body.get("Asynchronous") is True
    target = str(body.get("TargetAet") or "") or own_aet
    fmt = TagFormat.HUMAN if body.get("Simplify") is True else body_format(body, TagFormat.SHORT)
    return RetrieveOptions(target, asynchronous, fmt)


async def retrieve_answer(request: web.Request) -> web.Response:
    query, answer = _answer(request)
    return await _move(request, query, [answer], await _retrieve_options(request))


async def retrieve_all(request: web.Request) -> web.Response:
    query = _query(request)
    return await _move(request, query, query.answers, await _retrieve_options(request))


async def _move(
    request: web.Request, query: Query, answers: list[Dataset], options: RetrieveOptions
) -> web.Response:
    keys = [_keys(answer) for answer in answers]
    return await _move_job(request, query.modality, query.level, keys, options)


async def _move_job(
    request: web.Request,
    name: str,
    level: Level,
    keys: list[dict[str, str]],
    options: RetrieveOptions,
) -> web.Response:
    """C-MOVE what ``keys`` identify to the target, as a job (Orthanc's ``DicomMoveScu``):
    answered when done with the job's content, or at once with its id when asynchronous."""
    registry: Registry = request.app[REGISTRY]
    modality, aet = registry.modality(name), request.app[CONFIG].dicom.aet
    identifiers = [retrieve_scu.retrieve_identifier(level, k) for k in keys]
    writer = TagWriter(fmt=options.fmt, names=names_of(request.app))
    content = {
        "Description": "REST API",
        "LocalAet": modality.local_aet or aet,
        "RemoteAet": modality.aet,
        "TargetAet": options.target,
        "Query": [writer.dataset(i.to_json_dict()) for i in identifiers],
    }

    def work(context: JobContext) -> dict[str, Any]:
        for done, one in enumerate(keys):
            context.progress(done, len(keys))
            retrieve_scu.move(aet, modality, level, one, options.target)
        return content

    job = request.app[JOBS].submit("DicomMoveScu", content, work)
    if options.asynchronous:
        return web.json_response({"ID": job.id, "Path": f"/jobs/{job.id}"})
    await asyncio.to_thread(job.finished.wait)
    if job.error is not None:
        raise RemoteDicomError(job.error)
    return web.json_response(content)


async def query_children(request: web.Request) -> web.Response:
    query, answer = _answer(request)
    child = _CHILD[request.match_info["kind"]]
    if child.depth <= query.level.depth:
        raise BadRequest(f"a {query.level.value.lower()} answer has no {child.plural} below it")
    body = await json_body(request) if request.can_read_body else {}
    body = body if isinstance(body, dict) else {}
    asked = dict(body.get("Query", {}))
    for keyword in _PARENT_KEYS[query.level]:
        if answer.get(keyword):
            asked.setdefault(keyword, str(answer.get(keyword)))
    return await _run_query(request, query.modality, child, asked, _normalize_flag(body))


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
    """Orthanc's ``POST /modalities/{name}/move``: {"Level", "Resources": [uids], "TargetAet",
    "Asynchronous"}, a ``DicomMoveScu`` job as a query's retrieve is."""
    level, _, aet, resources, body = await _retrieve_request(request)
    keys = [{k: str(v) for k, v in resource.items()} for resource in resources]
    options = _options_of(body, aet)
    return await _move_job(request, request.match_info["name"], level, keys, options)


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
