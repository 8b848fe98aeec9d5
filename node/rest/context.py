"""What the REST handlers share through the app: its keys, and accessors for handlers."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.index import Origin, OriginKind
from pacsnode.node.jobs import JobRegistry
from pacsnode.node.registry import Registry
from pacsnode.node.settings import NodeConfig

if TYPE_CHECKING:
    from pacsnode.node.replication import Replicator

T = TypeVar("T")


class ReplicatorSlot:
    """The node's Replicator, made when the first peer appears (at start-up from the
    configuration, or by ``PUT /peers/{name}``) and stopped with the app.

    A node without peers never imports the peering code (TLS, apscheduler): idle memory
    matters.
    """

    def __init__(
        self, core: NodeCore, config: NodeConfig, jobs: JobRegistry, registry: Registry
    ) -> None:
        self._core, self._config, self._jobs, self._registry = core, config, jobs, registry
        self._replicator: Replicator | None = None
        self._closed = False
        # Making one reads or creates the node's identity: two requests must not race.
        self._lock = threading.Lock()

    @property
    def current(self) -> Replicator | None:
        return self._replicator

    def ensure(self) -> Replicator:
        """The replicator, made and its schedule started if there is none yet (blocking)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the node is shutting down")
            if self._replicator is None:
                from pacsnode.node.replication import Replicator

                replicator = Replicator(self._core, self._config, self._jobs, self._registry)
                replicator.start_schedule()
                self._replicator = replicator
            return self._replicator

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._replicator is not None:
                self._replicator.stop()


CORE = web.AppKey("core", NodeCore)
CONFIG = web.AppKey("config", NodeConfig)
JOBS = web.AppKey("jobs", JobRegistry)
REGISTRY = web.AppKey("registry", Registry)
REPLICATOR = web.AppKey("replicator", ReplicatorSlot)


#: the authenticated user's name (set by the auth middleware), for handlers and logs
USER = "pacsnode.user"


def rest_origin(request: web.Request) -> Origin:
    """How an instance stored by this request arrived: over HTTP, from whom and where."""
    return Origin(
        kind=OriginKind.REST_API,
        remote_ip=request.remote or "",
        http_username=request.get(USER, ""),
    )


def core_of(request: web.Request) -> NodeCore:
    return request.app[CORE]


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run disk and index work off the event loop."""
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
