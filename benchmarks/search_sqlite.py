"""Two SQLite (standard library) search engines, for the comparison in search_engines.py.

Both intern each distinct field value in ``vals(id, key, text, number)`` (a
wildcard or a range first finds the matching values there, by GLOB over one key's
values or by a number index) and keep one row per instance in ``docs`` with its
level ids, the ids of its values and its free text (zlib), which deleting needs:
FTS5 tables without content cannot forget a row otherwise before SQLite 3.43
(``contentless_delete``), and Python 3.11 here has 3.40.

- ``sqlite-fts5``: one FTS5 table holds the free text (column ``body``) and the field
  values as one token each, ``v<id>`` (column ``terms``); a whole query becomes one
  FTS5 MATCH expression.
- ``sqlite-table``: an attribute table ``postings(value, doc)`` (WITHOUT ROWID, primary
  key first by value) answers fields, an FTS5 table the free text; a query becomes
  a compound SELECT (INTERSECT, UNION, EXCEPT).

Answers at a level: the distinct level ids of the matching docs, in id order.
Only what the benchmark asks is supported (free-text words and phrases; fields with
words, wildcards, ranges; AND, OR, NOT).
"""

from __future__ import annotations

import sqlite3
import zlib
from array import array
from pathlib import Path

from pacsnode.node.ids import Level
from pacsnode.node.search.documents import Document
from pacsnode.node.search.fields import fold, sort_number
from pacsnode.node.search.query_language import (
    All,
    And,
    Joker,
    Match,
    Node,
    Not,
    Or,
    Phrase,
    Range,
    Text,
    Wildcard,
    Word,
)
from pacsnode.node.search.terms import words
from pacsnode.node.search.translate import _vr

LEVEL_COLUMNS = {
    Level.PATIENT: "patient",
    Level.STUDY: "study",
    Level.SERIES: "series",
    Level.INSTANCE: "instance",
}
COMMON_SCHEMA = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS docs (
    doc INTEGER PRIMARY KEY, instance TEXT UNIQUE, series TEXT, study TEXT, patient TEXT,
    vals BLOB, body BLOB);
CREATE INDEX IF NOT EXISTS docs_series ON docs (series);
CREATE INDEX IF NOT EXISTS docs_study ON docs (study);
CREATE INDEX IF NOT EXISTS docs_patient ON docs (patient);
CREATE TABLE IF NOT EXISTS vals (id INTEGER PRIMARY KEY, key TEXT, text TEXT, number REAL);
CREATE UNIQUE INDEX IF NOT EXISTS vals_key_text ON vals (key, text);
CREATE INDEX IF NOT EXISTS vals_number ON vals (key, number) WHERE number IS NOT NULL;
"""


def _glob(value: Wildcard) -> str:
    """A wildcard as a GLOB pattern (GLOB's own [ ] escape its specials)."""
    pieces = []
    for part in value.parts:
        if isinstance(part, Joker):
            pieces.append(part.value)
        else:
            pieces.append("".join(f"[{c}]" if c in "*?[" else c for c in fold(part)))
    return "".join(pieces)


class _SqliteEngine:
    """What both engines share: values, docs, level answers."""

    name = ""
    schema = ""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path / "search.sqlite", isolation_level=None)
        self.db.executescript(COMMON_SCHEMA + self.schema)
        self.value_ids: dict[tuple[str, str], int] = {}
        self.db.execute("BEGIN")

    # -- writes

    def _value_id(self, key: str, text: str, number: float | None) -> int:
        found = self.value_ids.get((key, text))
        if found is None:
            row = self.db.execute("SELECT id FROM vals WHERE key = ? AND text = ?", (key, text))
            hit = row.fetchone()
            if hit is None:
                insert = "INSERT INTO vals (key, text, number) VALUES (?, ?, ?)"
                found = self.db.execute(insert, (key, text, number)).lastrowid
            else:
                found = hit[0]
            assert found is not None
            self.value_ids[(key, text)] = found
        return found

    def add(self, document: Document) -> None:
        ids = sorted({self._value_id(v.key, v.text, v.number) for v in document.values})
        ids_blob = array("q", ids).tobytes()
        i = document.ids
        self._delete_where("instance", i.instance)
        body = zlib.compress(document.text.encode())
        doc = self.db.execute(
            "INSERT INTO docs (instance, series, study, patient, vals, body) VALUES (?,?,?,?,?,?)",
            (i.instance, i.series, i.study, i.patient, ids_blob, body),
        ).lastrowid
        assert doc is not None
        self._index(doc, ids, document.text)

    def _delete_where(self, column: str, value: str) -> None:
        rows = self.db.execute(f"SELECT doc, vals, body FROM docs WHERE {column} = ?", (value,))
        for doc, vals, body in rows.fetchall():
            ids = array("q")
            ids.frombytes(vals)
            self._unindex(doc, list(ids), zlib.decompress(body).decode())
            self.db.execute("DELETE FROM docs WHERE doc = ?", (doc,))

    def delete(self, level: Level, resource_id: str) -> None:
        self._delete_where(LEVEL_COLUMNS[level], resource_id)

    def commit(self) -> None:
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def close(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()

    def _index(self, doc: int, ids: list[int], text: str) -> None:
        raise NotImplementedError

    def _unindex(self, doc: int, ids: list[int], text: str) -> None:
        raise NotImplementedError

    # -- reads

    def _matching_values(self, node: Match) -> list[int]:
        key = node.field.key
        value = node.value
        if isinstance(value, Wildcard):
            sql = "SELECT id FROM vals WHERE key = ? AND text GLOB ?"
            return [row[0] for row in self.db.execute(sql, (key, _glob(value)))]
        if isinstance(value, Range):
            vr = _vr(node.field)
            low = -1e300 if value.low is None else sort_number(vr, value.low)
            high = 1e300 if value.high is None else sort_number(vr, value.high)
            low_op = ">=" if value.include_low else ">"
            high_op = "<=" if value.include_high else "<"
            sql = f"SELECT id FROM vals WHERE key = ? AND number {low_op} ? AND number {high_op} ?"
            return [row[0] for row in self.db.execute(sql, (key, low, high))]
        sql = "SELECT id FROM vals WHERE key = ? AND text = ?"
        return [row[0] for row in self.db.execute(sql, (key, fold(value.text)))]

    def docs_sql(self, node: Node) -> tuple[str, list[object]]:
        """A SELECT of the matching docs' rowids, and its parameters."""
        raise NotImplementedError

    def search(self, query: Node, level: Level, limit: int = 100, offset: int = 0) -> list[str]:
        column = LEVEL_COLUMNS[level]
        matches, params = self.docs_sql(query)
        sql = (
            f"SELECT DISTINCT d.{column} FROM ({matches}) AS m CROSS JOIN docs AS d"
            f" ON d.doc = m.r ORDER BY 1 LIMIT ? OFFSET ?"
        )
        return [row[0] for row in self.db.execute(sql, [*params, limit, offset])]

    def count(self, query: Node, level: Level) -> int:
        column = LEVEL_COLUMNS[level]
        matches, params = self.docs_sql(query)
        sql = (
            f"SELECT count(DISTINCT d.{column}) FROM ({matches}) AS m CROSS JOIN docs AS d"
            " ON d.doc = m.r"
        )
        return int(self.db.execute(sql, params).fetchone()[0])


def _fts_phrase(text: str) -> str:
    return '"' + " ".join(words(text)).replace('"', '""') + '"'


class Fts5Engine(_SqliteEngine):
    name = "sqlite-fts5"
    schema = """
    CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
        body, terms, content='', tokenize='unicode61 remove_diacritics 2');
    """

    def _terms(self, ids: list[int]) -> str:
        return "vall " + " ".join(f"v{i}" for i in ids)

    def _index(self, doc: int, ids: list[int], text: str) -> None:
        sql = "INSERT INTO fts (rowid, body, terms) VALUES (?, ?, ?)"
        self.db.execute(sql, (doc, text, self._terms(ids)))

    def _unindex(self, doc: int, ids: list[int], text: str) -> None:
        sql = "INSERT INTO fts (fts, rowid, body, terms) VALUES ('delete', ?, ?, ?)"
        self.db.execute(sql, (doc, text, self._terms(ids)))

    def _expression(self, node: Node) -> str:
        if isinstance(node, All):
            return "terms : vall"
        if isinstance(node, Text):
            if not isinstance(node.value, Word | Phrase):
                raise NotImplementedError("free-text wildcards")
            return f"body : {_fts_phrase(node.value.text)}"
        if isinstance(node, Match):
            ids = self._matching_values(node)
            return "terms : (" + (" OR ".join(f"v{i}" for i in ids) or "vnone") + ")"
        if isinstance(node, Not):
            return f"(terms : vall) NOT ({self._expression(node.item)})"
        joiner = " AND " if isinstance(node, And) else " OR "
        assert isinstance(node, And | Or)
        return joiner.join(f"({self._expression(item)})" for item in node.items)

    def docs_sql(self, node: Node) -> tuple[str, list[object]]:
        return "SELECT rowid AS r FROM fts WHERE fts MATCH ?", [self._expression(node)]


class TableEngine(_SqliteEngine):
    name = "sqlite-table"
    schema = """
    CREATE TABLE IF NOT EXISTS postings (
        value INTEGER, doc INTEGER, PRIMARY KEY (value, doc)) WITHOUT ROWID;
    CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5(
        body, content='', tokenize='unicode61 remove_diacritics 2');
    """

    def _index(self, doc: int, ids: list[int], text: str) -> None:
        self.db.executemany("INSERT INTO postings VALUES (?, ?)", [(i, doc) for i in ids])
        self.db.execute("INSERT INTO words (rowid, body) VALUES (?, ?)", (doc, text))

    def _unindex(self, doc: int, ids: list[int], text: str) -> None:
        sql = "DELETE FROM postings WHERE value = ? AND doc = ?"
        self.db.executemany(sql, [(i, doc) for i in ids])
        sql = "INSERT INTO words (words, rowid, body) VALUES ('delete', ?, ?)"
        self.db.execute(sql, (doc, text))

    def _select(self, node: Node, params: list[object]) -> str:
        if isinstance(node, All):
            return "SELECT doc FROM docs"
        if isinstance(node, Text):
            if not isinstance(node.value, Word | Phrase):
                raise NotImplementedError("free-text wildcards")
            params.append(_fts_phrase(node.value.text))
            return "SELECT rowid AS doc FROM words WHERE words MATCH ?"
        if isinstance(node, Match):
            ids = ",".join(str(i) for i in self._matching_values(node)) or "-1"
            return f"SELECT doc FROM postings WHERE value IN ({ids})"
        if isinstance(node, Not):
            return f"SELECT doc FROM docs EXCEPT SELECT * FROM ({self._select(node.item, params)})"
        joiner = " INTERSECT " if isinstance(node, And) else " UNION "
        assert isinstance(node, And | Or)
        return joiner.join(f"SELECT * FROM ({self._select(item, params)})" for item in node.items)

    def docs_sql(self, node: Node) -> tuple[str, list[object]]:
        params: list[object] = []
        return f"SELECT doc AS r FROM ({self._select(node, params)})", params
