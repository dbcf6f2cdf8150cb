"""Row storage for the emulator: one SQLite table per Dataverse table, one column per attribute.

Layout (what FetchXML, change tracking and webhooks can build on):

* table `<logical name>` (e.g. `account`), primary key column `<primary id>` (TEXT, lower-case
  GUID), then one column per attribute under its logical name. Value encodings: GUIDs and lookups
  as lower-case text; DateTime as ISO-8601 UTC text `YYYY-MM-DDTHH:MM:SSZ` (sorts and compares as
  text); Boolean, choice and whole numbers as INTEGER; Money/Decimal/Double as REAL; text as
  `TEXT COLLATE NOCASE` (Dataverse compares strings case-insensitively). Multi-select choices as
  a comma-separated string of integers.
* a lookup with several targets (owner, customer, regarding) stores the target's logical name in
  the hidden column `<lookup>type` (`owneridtype`, `parentcustomeridtype`).
* every row has `versionnumber` (a store-wide counter bumped on every write: the row version
  behind `@odata.etag`), `createdon`/`modifiedon`, `createdby`/`modifiedby`/`createdonbehalfby`/
  `modifiedonbehalfby` and, for user-owned tables, `ownerid`/`owneridtype`/`owningbusinessunit`.
* indexes: primary key; every lookup column (partial: NULLs left out); `(modifiedon, id)`; `(primary name, id)`; a unique
  index per alternate key.
* N:N relationships use an intersect table `<intersect name>(<id1>, <id2>)`.
* every task, phonecall, email and appointment also has a row in `activitypointer` (same id,
  common columns, `activitytypecode`), kept in step on each write and not reported to listeners.

API: `table(name)` (schema lookup), `insert`, `update`, `delete`, `get`, `select` (SQL
where-clause + parameters, order, limit), `count`, `transaction()` (SAVEPOINT; nested; rolled back
if an exception escapes), `associate`/`disassociate`, `add_column`. `listeners` are called after
each committed create/update/delete as `listener(message, table, row_before, row_after)` with
message "Create"/"Update"/"Delete" and full rows (None for the missing side); N:N links call them
as ("Associate"|"Disassociate", <intersect table>, ids or None, ids or None), where ids is
{<id column 1>: ..., <id column 2>: ...}. Inside a transaction they wait for the outermost commit
and are dropped on rollback; outside one they run at once, under the store's lock.

All access goes through one connection guarded by an RLock, so uvicorn's event-loop thread and
any worker threads can share a Store.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from d365_components.emulator import defaults
from d365_components.emulator.protocol.errors import duplicate_entity_key, duplicate_key
from d365_components.emulator.storage import time_limit
from d365_components.emulator.storage.schema import Column, ManyToMany, Schema, Table, new_id

log = logging.getLogger(__name__)

Listener = Callable[[str, str, "dict[str, Any] | None", "dict[str, Any] | None"], None]
SYSTEM_COLUMNS = ("createdon", "modifiedon", "createdby", "modifiedby", "createdonbehalfby",
                  "modifiedonbehalfby", "versionnumber")
FULLNAME_TABLES = frozenset({"contact", "lead", "systemuser"})
ACTIVITY_TABLES = frozenset({"task", "phonecall", "email", "appointment"})


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def q(name: str) -> str:
    """Quote an identifier (names come from the schema, never from a request)."""
    return '"' + name.replace('"', '""') + '"'


def _connect(path: str) -> sqlite3.Connection:
    """A connection to `path`. `:memory:` becomes a private database of the `memdb` VFS: SQLite's
    classic in-memory pager keeps every page it ever wrote on its dirty list and walks that list
    at each commit, so a single-row write costs more with every row the table holds (100,000
    upserts: 11 -> 18 -> 27 s of server CPU as rows accumulated); `memdb` stores the database as
    an in-memory file behind a normal pager, and a write costs the same at 1,000 rows as at
    1,000,000. SQLite builds without `memdb` (before 3.36) fall back to the classic pager."""
    if path == ":memory:":
        try:
            return sqlite3.connect(f"file:/d365-emulator-{uuid.uuid4().hex}?vfs=memdb", uri=True,
                                   check_same_thread=False, isolation_level=None)
        except sqlite3.OperationalError:  # no such vfs: memdb
            pass
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip([d[0] for d in cursor.description], row, strict=False))


class Store:
    def __init__(self, schema: Schema, path: str = ":memory:"):
        self.schema = schema
        self.path = path
        self.conn = _connect(path)
        self.conn.row_factory = _dict_row
        time_limit.install(self.conn)          # SQL stops at the calling thread's deadline, if any
        self.lock = threading.RLock()
        self.listeners: list[Listener] = []
        self.installed: set[str] = set()          # add-ons set up on this store ("files", ...)
        self._depth = 0
        self._pending: list[tuple[Any, ...]] = []
        self._sql: dict[Any, Any] = {}
        self.plans: dict[tuple[Any, ...], Any] = {}            # serialization plans cached by the records layer
        if path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA cache_size=-65536")          # 64 MB of pages: big tables keep their index tops
        # OFF: an emulator's file survives a crash of its process (WAL), only an OS crash can lose
        # the last writes; in exchange a single-row write costs a third less
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA temp_store=MEMORY")
        for table in schema.tables.values():
            self.create_table(table)
        for rel in schema.relationships.values():
            if isinstance(rel, ManyToMany):
                self.create_intersect(rel)
        self._version = max([self._max_version(t) for t in schema.tables] + [0])

    # ---- schema ----------------------------------------------------------------------------

    def table(self, name: str) -> Table:
        return self.schema.tables[name]

    def columns_of(self, table: str) -> list[str]:
        """All SQL column names of a table, hidden lookup-type columns included."""
        key = ("cols", table)
        cols = self._sql.get(key)
        if cols is None:
            cols = []
            for col in self.schema.tables[table].columns.values():
                cols.append(col.name)
                if col.type_column:
                    cols.append(col.type_column)
            self._sql[key] = cols
        return cols

    def create_table(self, table: Table) -> None:
        defs = []
        for col in table.columns.values():
            defs.append(f"{q(col.name)} {col.sql_type}" + (" PRIMARY KEY" if col.is_primary_id else ""))
            if col.type_column:
                defs.append(f"{q(col.type_column)} TEXT")
        name = table.logical_name
        with self.lock:
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {q(name)} ({', '.join(defs)})")
            for col in table.columns.values():
                if col.is_lookup:
                    self._index(name, [col.name], partial=True)
            if "modifiedon" in table.columns:
                self._index(name, ["modifiedon", table.primary_id])
            self._index(name, [table.primary_name, table.primary_id])
            for key in table.keys:
                self._key_index(table, key.name, key.columns)
        self._sql.clear()

    def _index(self, table: str, cols: list[str], partial: bool = False) -> None:
        """`partial`: leave NULLs out (most lookups are empty; `col = ?` still uses the index)."""
        ix = "ix_" + table + "_" + "_".join(cols)
        where = f" WHERE {q(cols[0])} IS NOT NULL" if partial else ""
        self.conn.execute(f"CREATE INDEX IF NOT EXISTS {q(ix)} ON {q(table)} ({', '.join(map(q, cols))}){where}")

    def _key_index(self, table: Table, key_name: str, cols: tuple[str, ...]) -> None:
        where = " AND ".join(f"{q(c)} IS NOT NULL" for c in cols)
        self.conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {q('uk_' + table.logical_name + '_' + key_name)} "
                          f"ON {q(table.logical_name)} ({', '.join(map(q, cols))}) WHERE {where}")

    def create_intersect(self, rel: ManyToMany) -> None:
        a = self.schema.tables[rel.entity1].primary_id
        b = self.schema.tables[rel.entity2].primary_id
        with self.lock:
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {q(rel.intersect)} "
                              f"({q(a)} TEXT NOT NULL, {q(b)} TEXT NOT NULL, PRIMARY KEY ({q(a)}, {q(b)}))")
            self._index(rel.intersect, [b])

    def add_column(self, table: str, column: Column) -> None:
        """Add an attribute to a live table: the column is usable by the next request."""
        with self.lock:
            t = self.schema.tables[table]
            t.add(column)
            self.conn.execute(f"ALTER TABLE {q(table)} ADD COLUMN {q(column.name)} {column.sql_type}")
            if column.type_column:
                self.conn.execute(f"ALTER TABLE {q(table)} ADD COLUMN {q(column.type_column)} TEXT")
            if column.is_lookup:
                self._index(table, [column.name], partial=True)
            self._sql.clear()

    def _max_version(self, table: str) -> int:
        if "versionnumber" not in self.schema.tables[table].columns:
            return 0
        row = self.conn.execute(f"SELECT max(versionnumber) AS v FROM {q(table)}").fetchone()
        return row["v"] or 0

    # ---- transactions and events -----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One atomic unit (a SQLite SAVEPOINT; nests). Rolled back if an exception escapes;
        listeners fire once the outermost transaction commits."""
        with self.lock:
            name = f"sp{self._depth}"
            mark = len(self._pending)
            self.conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                del self._pending[mark:]
                raise
            self._depth -= 1
            self.conn.execute(f"RELEASE {name}")
            if self._depth == 0 and self._pending:
                events, self._pending = self._pending, []
                for event in events:
                    self._fire(event)

    def _emit(self, message: str, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if not self.listeners:
            return
        event = (message, table, before, after)
        if self._depth:
            self._pending.append(event)
        else:
            self._fire(event)

    def _fire(self, event: tuple[Any, ...]) -> None:
        for listener in list(self.listeners):
            try:
                listener(*event)
            except Exception:  # a listener must never break the write that triggered it
                log.exception("store listener %r failed", listener)

    def next_version(self) -> int:
        self._version += 1
        return self._version

    # ---- rows ------------------------------------------------------------------------------

    def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        sql = self._sql.get(("get", table))
        if sql is None:
            t = self.schema.tables[table]
            sql = self._sql[("get", table)] = f"SELECT * FROM {q(table)} WHERE {q(t.primary_id)} = ?"
        with self.lock:
            row: dict[str, Any] | None = self.conn.execute(sql, (row_id,)).fetchone()
            return row

    def select(self, table: str, where: str = "", params: tuple[Any, ...] | list[Any] = (), order: str = "",
               limit: int | None = None, columns: str = "*", alias: str = "t0") -> list[dict[str, Any]]:
        """Rows of `table` (aliased `alias`) matching a parameterized SQL where-clause."""
        sql = f"SELECT {columns} FROM {q(table)} AS {alias}"
        if where:
            sql += " WHERE " + where
        if order:
            sql += " ORDER BY " + order
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    def count(self, table: str, where: str = "", params: tuple[Any, ...] | list[Any] = (), cap: int | None = None,
              alias: str = "t0") -> int:
        inner = f"SELECT 1 FROM {q(table)} AS {alias}" + (f" WHERE {where}" if where else "")
        if cap is not None:
            inner += f" LIMIT {int(cap)}"
        with self.lock:
            n: int = self.conn.execute(f"SELECT count(*) AS n FROM ({inner})", tuple(params)).fetchone()["n"]
            return n

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    def insert(self, table: str, values: dict[str, Any], *, user: str, on_behalf_of: str | None = None) -> dict[str, Any]:
        """Create a row: fills id, stamps, owner, state and version; returns the full row."""
        t = self.schema.tables[table]
        row: dict[str, Any] = dict.fromkeys(self.columns_of(table))
        row.update(values)
        row[t.primary_id] = (values.get(t.primary_id) or new_id()).lower()
        cols = t.columns
        now = utc_now()
        if "createdon" in cols:
            row["createdon"] = row["modifiedon"] = now
            row["createdby"] = row["modifiedby"] = user
            row["createdonbehalfby"] = row["modifiedonbehalfby"] = on_behalf_of
        if "ownerid" in cols and not row.get("ownerid"):
            row["ownerid"], row["owneridtype"] = user, "systemuser"
        if "owningbusinessunit" in cols and not row.get("owningbusinessunit"):
            row["owningbusinessunit"] = defaults.BUSINESS_UNIT_ID
        if "statecode" in cols:
            if row.get("statecode") is None:
                row["statecode"] = 0
            if row.get("statuscode") is None:
                row["statuscode"] = default_status(t, row["statecode"])
        if "transactioncurrencyid" in cols and row.get("transactioncurrencyid") is None and table != "transactioncurrency":
            row["transactioncurrencyid"] = defaults.USD_ID
            if row.get("exchangerate") is None:
                row["exchangerate"] = 1.0
        if table in FULLNAME_TABLES:
            _fullname(row)
        with self.lock:
            row["versionnumber"] = self.next_version()
            names = tuple(k for k, v in row.items() if v is not None)
            sql = self._sql.get(("ins", table, names))
            if sql is None:
                sql = self._sql[("ins", table, names)] = (
                    f"INSERT INTO {q(table)} ({', '.join(map(q, names))}) VALUES ({', '.join('?' * len(names))})")
            try:
                self.conn.execute(sql, [row[n] for n in names])
            except sqlite3.IntegrityError as exc:
                raise self._integrity(t, exc) from None
            if table in ACTIVITY_TABLES:
                self._mirror_activity(table, row)
            self._emit("Create", table, None, row)
        return row

    def update(self, table: str, row_id: str, values: dict[str, Any], *, user: str, on_behalf_of: str | None = None,
               before: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Change some columns of a row; returns (before, after), or None if it does not exist."""
        t = self.schema.tables[table]
        with self.lock:
            before = before or self.get(table, row_id)
            if before is None:
                return None
            changes = dict(values)
            if "modifiedon" in t.columns:
                changes["modifiedon"] = utc_now()
                changes["modifiedby"] = user
                changes["modifiedonbehalfby"] = on_behalf_of
            if "statecode" in changes and "statuscode" not in changes and changes["statecode"] is not None:
                changes["statuscode"] = default_status(t, changes["statecode"])
            if table in FULLNAME_TABLES and ("firstname" in changes or "lastname" in changes) and "fullname" not in changes:
                merged = {**before, **changes, "fullname": None}
                _fullname(merged)
                changes["fullname"] = merged["fullname"]
            changes["versionnumber"] = self.next_version()
            names = tuple(changes)
            sql = self._sql.get(("upd", table, names))
            if sql is None:
                sets = ", ".join(f"{q(n)} = ?" for n in names)
                sql = self._sql[("upd", table, names)] = f"UPDATE {q(table)} SET {sets} WHERE {q(t.primary_id)} = ?"
            try:
                self.conn.execute(sql, [*changes.values(), before[t.primary_id]])
            except sqlite3.IntegrityError as exc:
                raise self._integrity(t, exc) from None
            after = {**before, **changes}
            if table in ACTIVITY_TABLES:
                self._mirror_activity(table, after)
            self._emit("Update", table, before, after)
        return before, after

    def delete(self, table: str, row_id: str) -> dict[str, Any] | None:
        """Delete a row, unlink rows that point at it and its N:N links; returns the old row."""
        t = self.schema.tables[table]
        with self.transaction():
            before = self.get(table, row_id)
            if before is None:
                return None
            self.conn.execute(f"DELETE FROM {q(table)} WHERE {q(t.primary_id)} = ?", (row_id,))
            if table in ACTIVITY_TABLES:
                self.conn.execute('DELETE FROM "activitypointer" WHERE activityid = ?', (row_id,))
            for nav in t.collection_navs.values():
                if nav.many_to_many:
                    self.conn.execute(f"DELETE FROM {q(nav.intersect)} WHERE {q(nav.own_id)} = ?", (row_id,))
                elif nav.target != table or nav.column != t.primary_id:
                    target = self.schema.tables[nav.target].columns[nav.column]
                    extra = f", {q(target.type_column)} = NULL" if target.type_column else ""
                    self.conn.execute(f"UPDATE {q(nav.target)} SET {q(nav.column)} = NULL{extra} "
                                      f"WHERE {q(nav.column)} = ?", (row_id,))
            self._emit("Delete", table, before, None)
        return before

    def _mirror_activity(self, table: str, row: dict[str, Any]) -> None:
        """Keep the activitypointer row of a task/phone call/email/appointment in step with it:
        activitypointers (and Account_ActivityPointers) list every activity, as in Dataverse."""
        pointer = self.schema.tables.get("activitypointer")
        if pointer is None:
            return
        values = {c: row[c] for c in self.columns_of("activitypointer") if c in row}
        values["activitytypecode"] = table
        values["statuscode"] = default_status(pointer, row.get("statecode") or 0)
        names = tuple(values)
        sql = self._sql.get(("ptr", names))
        if sql is None:
            sql = self._sql[("ptr", names)] = (f'INSERT OR REPLACE INTO "activitypointer" ({", ".join(map(q, names))}) '
                                               f'VALUES ({", ".join("?" * len(names))})')
        self.conn.execute(sql, list(values.values()))

    def associate(self, intersect: str, id_columns: tuple[str, str], ids: tuple[str, str]) -> bool:
        """Link two rows of an N:N relationship; False if they were already linked."""
        with self.lock:
            try:
                self.conn.execute(f"INSERT INTO {q(intersect)} ({q(id_columns[0])}, {q(id_columns[1])}) VALUES (?, ?)", ids)
            except sqlite3.IntegrityError:
                return False
            self._emit("Associate", intersect, None, dict(zip(id_columns, ids, strict=False)))
        return True

    def disassociate(self, intersect: str, id_columns: tuple[str, str], ids: tuple[str, str]) -> bool:
        with self.lock:
            cur = self.conn.execute(f"DELETE FROM {q(intersect)} WHERE {q(id_columns[0])} = ? AND {q(id_columns[1])} = ?", ids)
            if cur.rowcount:
                self._emit("Disassociate", intersect, dict(zip(id_columns, ids, strict=False)), None)
            return bool(cur.rowcount)

    def _integrity(self, t: Table, exc: sqlite3.IntegrityError) -> Exception:
        failed = re.findall(r"\w+\.(\w+)", str(exc))
        for key in t.keys:
            if set(failed) == set(key.columns):
                return duplicate_entity_key(t.logical_name, key.name, list(key.columns))
        return duplicate_key()

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def default_status(table: Table, state: int) -> int | None:
    """The first status reason of a state: what Dataverse sets when only statecode is given."""
    col = table.columns.get("statuscode")
    if col is None or col.option_set is None:
        return None
    for option in col.option_set.options:
        if option.state == state:
            return option.value
    return None


def _fullname(row: dict[str, Any]) -> None:
    if not row.get("fullname"):
        parts = [row.get("firstname"), row.get("lastname")]
        name = " ".join(p for p in parts if p)
        row["fullname"] = name or None
