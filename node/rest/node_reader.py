"""What a web plugin may read of the node: a narrow, read-only view of :class:`NodeCore`.

Web plugins (:mod:`.web_plugins`) get this, never the core: they can find and read
resources, their tags and metadata, search and the statistics, and nothing that stores,
changes or deletes. Every method is a coroutine that does its reading off the event loop,
as the REST handlers do; answers are shaped as the REST API's, so what a plugin shows
matches what ``GET /studies/{id}`` and friends show.

Domain errors propagate as they are (an unknown id is ``UnknownResource``, a bad query
``BadRequest``); raised from a plugin's handler they are answered as the REST API answers
them (404, 400), so a plugin need not catch them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.rest.context import blocking
from pacsnode.node.rest.resources import describe
from pacsnode.node.rest.system import statistics_of

LevelName = Level | str


def _level(level: LevelName) -> Level:
    try:
        return level if isinstance(level, Level) else Level.parse(level)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


class NodeReader:
    """Read-only access to the node's resources for plugins.

    Levels are ``"Patient"``, ``"Study"``, ``"Series"``, ``"Instance"`` (or
    :class:`~pacsnode.node.ids.Level`, or ``"studies"``…); ids are Orthanc's resource ids.
    """

    def __init__(self, core: NodeCore) -> None:
        self._core = core

    async def find(
        self,
        level: LevelName,
        query: Mapping[str, str] | None = None,
        *,
        limit: int | None = None,
        since: int = 0,
    ) -> list[str]:
        """Ids at ``level`` whose main tags match ``query`` (``/tools/find``'s ``Query``:
        ``*``/``?`` wildcards, ``a-b`` date ranges, case-insensitive), in id order; no
        query lists them all. ``since``/``limit`` page through them."""
        return await blocking(
            self._core.find, _level(level), dict(query or {}), since=since, limit=limit
        )

    async def resource(self, resource_id: str, level: LevelName | None = None) -> dict[str, Any]:
        """One resource as ``GET /{level}/{id}`` shows it (``MainDicomTags``, parent and
        children ids...); ``UnknownResource`` if there is none (at ``level``, if given)."""
        wanted = None if level is None else _level(level)
        return await blocking(describe, self._core, resource_id, wanted)

    async def resources(self, resource_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Many resources as :meth:`resource` shows them, read at once; those deleted
        meanwhile are left out."""
        return await blocking(self._described, list(resource_ids))

    def _described(self, resource_ids: list[str]) -> list[dict[str, Any]]:
        pending = self._core.pending_studies()
        shown = []
        for resource_id in resource_ids:
            try:
                shown.append(describe(self._core, resource_id, None, pending))
            except UnknownResource:
                continue
        return shown

    async def tags(self, instance_id: str) -> dict[str, Any]:
        """An instance's DICOM JSON (PS3.18 F.2; bulk data as ``BulkDataURI``)."""
        return await blocking(self._instance_json, instance_id)

    def _instance_json(self, instance_id: str) -> dict[str, Any]:
        return self._core.instance_json(self._core.instance_ref(instance_id))

    async def metadata(self, resource_id: str) -> dict[str, str]:
        """A resource's metadata by name, as ``GET /{level}/{id}/metadata?expand``."""
        return await blocking(self._metadata, resource_id)

    def _metadata(self, resource_id: str) -> dict[str, str]:
        if not self._core.exists(resource_id):
            raise UnknownResource(f"no resource {resource_id}")
        return self._core.annotations.metadata(resource_id)

    async def search(
        self, query: str, level: LevelName = Level.STUDY, *, limit: int = 100, offset: int = 0
    ) -> list[str]:
        """Ids at ``level`` with an instance matching ``query`` in search over every
        attribute (``POST /tools/search``'s language); ``SearchUnavailable`` when it is
        off."""
        return await blocking(self._core.search, query, _level(level), limit, offset)

    async def statistics(self) -> dict[str, object]:
        """Counts and sizes, as ``GET /statistics`` (sizes in bytes, as numbers)."""
        return await blocking(statistics_of, self._core)
