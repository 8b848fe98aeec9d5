"""The ``example-bodypart`` index plugin: Body Part Examined, which the main-tag index
does not keep, so that queries on it need neither the search index nor reading files.

It follows the node's change feed in a thread of its own, keeps each instance's body part
(and the ids of the instance's patient, study and series) in memory, and answers queries
that constrain it, with DICOM matching (``Constraint.matches``). Constraints on main tags
it leaves to the node's main-tag index (``feed.find_main_tags``), asking it which
instances match them, so that one instance must match them all, as the contract says.

Kept in memory, it reads the whole feed again at each start: fine for an example, not for
millions of instances (the search index, :mod:`pacsnode.node.search`, keeps its files and
rebuilds them from the archive when the feed was cleared). No settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pacsnode.node.ids import Level, resource_ids
from pacsnode.node.index_plugins.contract import IndexFeed
from pacsnode.node.index_plugins.maintags import main_tag_keywords
from pacsnode.node.query import Constraint

log = logging.getLogger(__name__)

BODY_PART = "BodyPartExamined"
#: DICOM JSON tags of what it reads of an instance
_TAGS = {"patient": "00100020", "study": "0020000D", "series": "0020000E", "sop": "00080018"}
_BODY_PART_TAG = "00180015"
_PAGE = 500
_POLL_S = 0.05


def _text(dataset: Mapping[str, Any], tag: str) -> str | None:
    values = (dataset.get(tag) or {}).get("Value") or [None]
    return None if values[0] is None else str(values[0]).strip()


class BodyPartIndex:
    """Instance id -> (its ids by level, its body part), fed from the change feed."""

    exact = True  # DICOM matching itself: the node need not check the answers again

    def __init__(self) -> None:
        self._instances: dict[str, tuple[dict[Level, str], str | None]] = {}
        self._position = 0  # the last change applied
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._feed: IndexFeed | None = None
        self._thread: threading.Thread | None = None

    def start(self, feed: IndexFeed) -> None:
        self._feed = feed
        self._thread = threading.Thread(target=self._follow, name="example-bodypart", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def lag(self) -> int:
        return max(0, self._running().last_change() - self._position)

    def answers(self, level: Level, keyword: str) -> bool:
        return keyword == BODY_PART or keyword in main_tag_keywords(level)

    def find(
        self, level: Level, constraints: Sequence[Constraint], limit: int | None, offset: int = 0
    ) -> list[str]:
        feed = self._running()
        own = [c for c in constraints if c.keyword == BODY_PART]
        main = [c for c in constraints if c.keyword != BODY_PART]
        if not own:  # nothing of its own asked: the main-tag index answers it all
            return feed.find_main_tags(level, main, offset, limit)
        with self._lock:
            matching = {
                instance: ids
                for instance, (ids, part) in self._instances.items()
                if all(c.matches(part) for c in own)
            }
        if main:
            allowed = set(feed.find_main_tags(Level.INSTANCE, main, 0, None))
            matching = {i: ids for i, ids in matching.items() if i in allowed}
        found = sorted({ids[level] for ids in matching.values()})  # a stable order
        return found[offset : None if limit is None else offset + limit]

    def _running(self) -> IndexFeed:
        if self._feed is None:
            raise RuntimeError("the example-bodypart index is not started")
        return self._feed

    # --- following the feed ------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                done = self._next_page()
            except Exception:  # a failed read is tried again; the thread never gives up
                log.exception("example-bodypart: following the change feed failed")
                done = True
            if done:
                self._stop.wait(_POLL_S)

    def _next_page(self) -> bool:
        page = self._running().changes(self._position, _PAGE)
        for entry in page.changes:
            if entry["ChangeType"] == "NewInstance":
                self._add(entry["ID"])
            elif entry["ChangeType"] == "Deleted":
                self._forget(Level(entry["ResourceType"]), entry["ID"])
            with self._lock:
                self._position = int(entry["Seq"])
        return page.done

    def _add(self, instance_id: str) -> None:
        feed = self._running()
        try:
            dataset = feed.instance_json(feed.instance_ref(instance_id))
        except Exception as exc:  # deleted since (its Deleted change follows), or damaged
            log.info("example-bodypart: instance %s left out: %s", instance_id, exc)
            return
        uids = {name: _text(dataset, tag) or "" for name, tag in _TAGS.items()}
        ids = resource_ids(uids["patient"], uids["study"], uids["series"], uids["sop"])
        with self._lock:
            self._instances[instance_id] = (ids, _text(dataset, _BODY_PART_TAG))

    def _forget(self, level: Level, resource_id: str) -> None:
        with self._lock:
            gone = [i for i, (ids, _) in self._instances.items() if ids[level] == resource_id]
            for instance in gone:
                del self._instances[instance]


def body_part_index(settings: Mapping[str, Any], data_dir: Path) -> BodyPartIndex:
    """The entry point: no settings of its own, nothing on disk."""
    if settings:
        raise ValueError(f"takes no settings (got {', '.join(sorted(settings))})")
    return BodyPartIndex()
