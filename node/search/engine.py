"""The search index: every attribute of every instance, in an embedded tantivy index.

One tantivy document per instance (:mod:`.terms` says which terms). A query is an
AST of :mod:`.query_language`, matched per instance; at a level above Instance the
answer is the distinct ids of the matching instances' ancestors. Answers are in
the order of the ids (stable: the same index gives the same pages), computed by
tantivy's terms aggregation on the level's id column, in chunks (keyset paging on
the id) so that no aggregation passes tantivy's bucket limit.

Writes are buffered by tantivy until :meth:`SearchIndex.commit`, which also records
the last change of the node's change feed that the index holds (``state.json``,
written after tantivy's own commit: a crash in between replays a few changes, which
adding is idempotent for). One process opens an index for writing at a time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import tantivy

from pacsnode.node.errors import SearchUnavailable, StorageFull
from pacsnode.node.ids import Level
from pacsnode.node.search.documents import Document
from pacsnode.node.search.query_ast import Node
from pacsnode.node.search.terms import range_term, value_term
from pacsnode.node.search.translate import RANGES, TEXT, VALUES, to_query

#: bump when the schema or the terms change: an index of another format is rebuilt
FORMAT = 1
STATE_FILE = "state.json"
#: tantivy refuses aggregations of more than 65,000 buckets; pages stay below it
AGGREGATION_CHUNK = 50_000
WRITER_HEAP_BYTES = 32 * 1024 * 1024
_LEVEL_FIELDS = {
    Level.PATIENT: "patient",
    Level.STUDY: "study",
    Level.SERIES: "series",
    Level.INSTANCE: "instance",
}


#: what tantivy says once its writer thread failed (a full disk, most likely)
_WRITER_KILLED = "index writer was killed"


@contextlib.contextmanager
def _disk_full_as_storage_full(index: SearchIndex) -> Iterator[None]:
    """tantivy reports a full disk as a ValueError naming the OS error; the node's error
    model has StorageFull for it (a condition to wait out, not a bug). When the disk
    filled under the writer's own thread, the writer is dead and says only that: the
    index is unavailable until a new one starts. Either way the writer is dropped with
    what it had not committed (a writer whose commit failed keeps none of it reliably;
    the feeder replays those changes from the last commit)."""
    try:
        yield
    except ValueError as exc:
        if "No space left on device" in str(exc):
            index.drop_writer()
            raise StorageFull("the disk of the search index is full") from None
        if _WRITER_KILLED not in str(exc):
            raise
        index.drop_writer()
        raise SearchUnavailable(
            "the search index's writer stopped on an I/O error (a full disk, most likely);"
            " it starts again from the last commit"
        ) from None
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        index.drop_writer()
        raise StorageFull("the disk of the search index is full") from None


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    for field in _LEVEL_FIELDS.values():
        # indexed for deletes, a fast column for the answers
        builder.add_text_field(field, tokenizer_name="raw", fast=True, index_option="basic")
    builder.add_text_field(VALUES, tokenizer_name="whitespace", index_option="basic")
    builder.add_text_field(RANGES, tokenizer_name="whitespace", index_option="basic")
    builder.add_text_field(TEXT, tokenizer_name="default", index_option="position")
    return builder.build()


def _tantivy_document(document: Document) -> tantivy.Document:
    ids = document.ids
    return tantivy.Document(
        patient=ids.patient,
        study=ids.study,
        series=ids.series,
        instance=ids.instance,
        v=" ".join([value_term(v.key, v.text) for v in document.values]),
        r=" ".join([range_term(v.key, v.number) for v in document.values if v.number is not None]),
        t=document.text,
    )


class SearchIndex:
    """An index at ``path``, created when missing, rebuilt empty when of another format."""

    def __init__(self, path: Path, writer_heap_bytes: int = WRITER_HEAP_BYTES) -> None:
        self.path = Path(path)
        self._heap = writer_heap_bytes
        self._lock = threading.Lock()  # one writer; searches need no lock
        self._writer: tantivy.IndexWriter | None = None
        state = self._read_state()
        if state.get("format") != FORMAT:
            shutil.rmtree(self.path, ignore_errors=True)
            state = {"format": FORMAT, "last_change": 0}
        self.path.mkdir(parents=True, exist_ok=True)
        self._index = tantivy.Index(_schema(), path=str(self.path), reuse=True)
        self._last_change = int(state["last_change"])
        self._write_state()

    # -- bookkeeping

    @property
    def last_change(self) -> int:
        """The last change of the node's feed that the committed index holds."""
        return self._last_change

    def _read_state(self) -> dict[str, int]:
        try:
            state = json.loads((self.path / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        valid = isinstance(state, dict) and isinstance(state.get("last_change"), int)
        return state if valid else {}  # a damaged file: the index is rebuilt

    def _write_state(self) -> None:
        temporary = self.path / f"{STATE_FILE}.tmp"
        with open(temporary, "w") as file:
            json.dump({"format": FORMAT, "last_change": self._last_change}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path / STATE_FILE)

    # -- writes

    def _writer_now(self) -> tantivy.IndexWriter:
        if self._writer is None:
            self._writer = self._index.writer(heap_size=self._heap, num_threads=1)
        return self._writer

    def drop_writer(self) -> None:
        """Forget the writer and what it had not committed (the feeder replays those
        changes from the last commit). A dead writer refuses even to roll back."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(ValueError, OSError):
                writer.rollback()

    def add(self, document: Document) -> None:
        """Add an instance's document, replacing the one it had (visible after commit)."""
        with self._lock, _disk_full_as_storage_full(self):
            writer = self._writer_now()
            writer.delete_documents_by_term("instance", document.ids.instance)
            writer.add_document(_tantivy_document(document))

    def add_many(self, documents: Iterable[Document]) -> int:
        count = 0
        for document in documents:
            self.add(document)
            count += 1
        return count

    def delete(self, level: Level, resource_id: str) -> None:
        """Remove every instance of this patient, study, series or instance."""
        with self._lock, _disk_full_as_storage_full(self):
            self._writer_now().delete_documents_by_term(_LEVEL_FIELDS[level], resource_id)

    def commit(self, last_change: int | None = None) -> None:
        """Publish the writes since the last commit, and record ``last_change``; a full
        disk is StorageFull (the writes are dropped: the feeder replays them)."""
        with self._lock, _disk_full_as_storage_full(self):
            if self._writer is not None:
                self._writer.commit()
            if last_change is not None:
                self._last_change = last_change
            self._write_state()
        self._index.reload()

    def clear(self) -> None:
        """Remove every document and forget the change sequence (committed)."""
        with self._lock:
            writer = self._writer_now()
            writer.delete_all_documents()
            writer.commit()
            self._last_change = 0
            self._write_state()
        self._index.reload()

    def rebuild(self, documents: Iterable[Document], last_change: int, batch: int = 10_000) -> int:
        """Replace the whole index with ``documents`` (the archive as of ``last_change``)."""
        self.clear()
        count = 0
        for document in documents:
            self.add(document)
            count += 1
            if count % batch == 0:
                self.commit()
        self.commit(last_change)
        return count

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.rollback()  # what was not committed is not kept
                self._writer.wait_merging_threads()
                self._writer = None

    # -- reads

    def search(self, query: Node, level: Level, limit: int = 100, offset: int = 0) -> list[str]:
        """The ids at ``level`` of the resources holding a match, in id order."""
        if limit <= 0:
            return []
        compiled = to_query(query, self._index)
        searcher = self._index.searcher()
        field = _LEVEL_FIELDS[level]
        answer: list[str] = []
        after: str | None = None
        to_skip = offset
        while True:
            wanted = min(AGGREGATION_CHUNK, to_skip + limit - len(answer))
            keys = self._keys(searcher, compiled, field, after, wanted)
            skipped = min(to_skip, len(keys))
            to_skip -= skipped
            answer.extend(keys[skipped:])
            if len(answer) >= limit or len(keys) < wanted:
                return answer[:limit]
            after = keys[-1]

    def count(self, query: Node, level: Level) -> int:
        """How many resources at ``level`` hold a match."""
        compiled = to_query(query, self._index)
        searcher = self._index.searcher()
        if level is Level.INSTANCE:
            return int(searcher.search(compiled, 1, count=True).count or 0)
        field = _LEVEL_FIELDS[level]
        total, after = 0, None
        while True:
            keys = self._keys(searcher, compiled, field, after, AGGREGATION_CHUNK)
            total += len(keys)
            if len(keys) < AGGREGATION_CHUNK:
                return total
            after = keys[-1]

    def _keys(
        self,
        searcher: tantivy.Searcher,
        query: tantivy.Query,
        field: str,
        after: str | None,
        size: int,
    ) -> list[str]:
        """The first ``size`` distinct values of ``field`` among matches, past ``after``."""
        if after is not None:
            # ids are hex digits and dashes, which the query parser takes as they are
            # (it refuses quoted bounds in a range)
            beyond = self._index.parse_query(f"{field}:{{{after} TO *}}", [field])
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), (tantivy.Occur.Must, beyond)]
            )
        aggregation = {"k": {"terms": {"field": field, "size": size, "order": {"_key": "asc"}}}}
        answer = searcher.aggregate(query, aggregation)
        return [bucket["key"] for bucket in answer["k"]["buckets"]]

    def document_count(self) -> int:
        return int(self._index.searcher().num_docs)
