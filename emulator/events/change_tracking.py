"""Change tracking (reference §11): `Prefer: odata.track-changes`, delta links, `$deletedEntity`.

Two parts:

* a store listener that keeps a change log in the store's SQLite database: one row per changed
  record of a table with ChangeTrackingEnabled (table, id, operation, time) under an increasing
  sequence number. Re-writing a record replaces its entry, so the log never outgrows the tables,
  and a record created and deleted between two syncs still shows up as deleted;
* ASGI middleware answering the change-tracking requests itself. The initial sync is the normal
  collection GET (served by the app) plus `@odata.deltaLink` on the last page; following the delta
  link returns the records created or updated since (read back through `app.state.dispatch`, so
  they look exactly like query results), then one `$deletedEntity` entry per deleted record.

The delta token reads `<sequence>!<MM/dd/yyyy HH:mm:ss>` like Dataverse's. Tokens older than
`max_age` fail; Dataverse's exact error for that is UNCONFIRMED, so status, code and message are
settings (`ChangeTrackingErrors`), as is the error for tables without change tracking.
"""

from __future__ import annotations

import calendar
import collections
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from d365_components.emulator.protocol.asgi import buffered
from d365_components.emulator.protocol.errors import QUERY_NOT_SUPPORTED, error_body
from d365_components.emulator.storage.schema import Table
from d365_components.emulator.storage.store import Store

LOG_TABLE = "d365_change_log"
TRACK = "odata.track-changes"
REJECTED = ("$filter", "$orderby", "$expand", "$top")
MAX_PAGE = 5000
ID_CHUNK = 500
_COLLECTION = re.compile(r"^/api/data/(v9\.[012])/([A-Za-z_][A-Za-z0-9_]*)(/\$count)?/?$")
_TOKEN = re.compile(r"^(\d+)!(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d)$")
_STAMP = "%m/%d/%Y %H:%M:%S"


@dataclass(frozen=True)
class ChangeTrackingErrors:
    """Status, code and message of the two change-tracking errors (both UNCONFIRMED)."""

    expired: tuple[int, str, str] = (
        400, "0x80044352",
        "The change tracking token has expired. Version stamp associated with the client has expired. "
        "Please perform a full sync.")
    not_enabled: tuple[int, str, str] = (
        400, "0x80040203", "Change tracking is not enabled for the entity '{table}'.")
    invalid: tuple[int, str, str] = (
        400, "0x80040203", "The change tracking token '{token}' is not valid for the entity '{table}'.")


class ChangeLog:
    """The store listener: records every change of a tracked table under a new sequence number."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        store.execute(f'CREATE TABLE IF NOT EXISTS "{LOG_TABLE}" (seq INTEGER PRIMARY KEY AUTOINCREMENT, '
                      'tbl TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL, at REAL NOT NULL, UNIQUE (tbl, id))')

    def __call__(self, message: str, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if message not in ("Create", "Update", "Delete"):
            return
        t = self.store.schema.tables.get(table)
        if t is None or not t.change_tracking:
            return
        row = after if after is not None else before
        assert row is not None, "a write has a before or an after image"
        self.store.execute(f'INSERT OR REPLACE INTO "{LOG_TABLE}" (tbl, id, op, at) VALUES (?, ?, ?, ?)',
                           (table, row[t.primary_id], message, self.clock()))

    def current(self) -> int:
        rows = self.store.execute(f'SELECT max(seq) AS seq FROM "{LOG_TABLE}"')
        return rows[0]["seq"] or 0

    def since(self, table: str, after: int, upto: int, limit: int | None = None) -> list[dict[str, Any]]:
        sql = f'SELECT seq, id, op FROM "{LOG_TABLE}" WHERE tbl = ? AND seq > ? AND seq <= ? ORDER BY seq'
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.store.execute(sql, (table, after, upto))


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ChangeTracking:
    """ASGI middleware for track-changes and delta requests; `app.state.change_tracking` is this object."""

    def __init__(self, app: ASGIApp, state: State, *, max_age: float = 7 * 86400, errors: ChangeTrackingErrors | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.state = state
        self.max_age = max_age
        self.errors = errors or ChangeTrackingErrors()
        self.clock = clock
        self.log = ChangeLog(state.store, clock=lambda: self.clock())
        state.store.listeners.append(self.log)
        self._starts: collections.OrderedDict[str, int] = collections.OrderedDict()  # skiptoken -> sequence
        self._lock = threading.Lock()

    # ---- tokens ------------------------------------------------------------------------------

    def token(self, seq: int) -> str:
        return f"{seq}!{time.strftime(_STAMP, time.gmtime(self.clock()))}"

    def _read_token(self, raw: str, table: str) -> int:
        m = _TOKEN.match(raw)
        if m is None:
            status, code, message = self.errors.invalid
            raise _Refused(status, code, message.format(token=raw, table=table))
        issued = calendar.timegm(time.strptime(m.group(2), _STAMP))
        if self.clock() - issued > self.max_age:
            raise _Refused(*self.errors.expired[:2], self.errors.expired[2].format(token=raw, table=table))
        return int(m.group(1))

    # ---- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = _COLLECTION.match(scope.get("path", "")) if scope["type"] == "http" and scope["method"] == "GET" else None
        table = self.state.schema.by_set.get(m.group(2)) if m else None
        if m is None or table is None:
            return await self.app(scope, receive, send)
        if b"token" not in scope.get("query_string", b"") and not _asks_to_track(scope):
            return await self.app(scope, receive, send)       # the usual query: no need to parse it
        headers = _headers(scope)
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        tracking = TRACK in [p.strip().split("=")[0].lower() for p in headers.get("prefer", "").split(",")]
        skiptoken = query.get("$skiptoken")
        continuing = skiptoken is not None and skiptoken in self._starts
        if "$deltatoken" not in query and not tracking and not continuing:
            return await self.app(scope, receive, send)
        try:
            caller = self.state.identity.verify(headers.get("authorization"))
        except Exception:   # let the app answer the 401 in its usual shape
            return await self.app(scope, receive, send)
        api = f"{self.state.org_url}/api/data/{m.group(1)}"
        try:
            if not table.change_tracking:
                status, code, message = self.errors.not_enabled
                raise _Refused(status, code, message.format(table=table.logical_name))
            for option in REJECTED:
                if option in query:
                    raise _Refused(400, QUERY_NOT_SUPPORTED,
                                   f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.')
            if "$deltatoken" in query:
                since = self._read_token(query["$deltatoken"], table.logical_name)
                if m.group(3):
                    return await _send(send, 200, str(len(self._changes(table, since, None, None)[0])).encode(),
                                       "text/plain")
                body = self._delta(api, table, query, headers, caller, since)
                return await _send(send, 200, json.dumps(body, separators=(",", ":")).encode(), _JSON,
                                   [(b"preference-applied", TRACK.encode())])
        except _Refused as exc:
            return await _send(send, exc.status, error_body(exc.code, exc.message), _JSON)
        if m.group(3):
            return await self.app(scope, receive, send)
        await self._initial(scope, receive, send, api, table, query, skiptoken if continuing else None)

    # ---- initial sync: the app's page, plus the delta link on the last one -------------------

    async def _initial(self, scope: Scope, receive: Receive, send: Send, api: str, table: Table, query: dict[str, str], skiptoken: str | None) -> None:
        start = self._starts.get(skiptoken) if skiptoken else None
        if start is None:
            start = self.log.current()
        status, headers, body = await buffered(self.app, scope, receive)
        if status == 200:
            payload = json.loads(body)
            next_link = payload.get("@odata.nextLink")
            if next_link:
                self._remember(dict(parse_qsl(urlsplit(next_link).query)).get("$skiptoken"), start)
            else:
                kept = {k: v for k, v in query.items() if k not in ("$skiptoken", "$deltatoken")}
                payload["@odata.deltaLink"] = _link(api, table.entity_set, kept, {"$deltatoken": self.token(start)})
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            headers = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"preference-applied")]
            applied = [v.decode("latin-1") for k, v in headers if k.lower() == b"preference-applied"]
            headers.append((b"preference-applied", ",".join([*applied, TRACK]).encode()))
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _remember(self, skiptoken: str | None, start: int) -> None:
        if skiptoken is None:
            return
        with self._lock:
            self._starts[skiptoken] = start
            while len(self._starts) > 10_000:
                self._starts.popitem(last=False)

    # ---- delta ---------------------------------------------------------------------------------

    def _changes(self, table: Table, since: int, page: int | None, position: str | None) -> tuple[list[dict[str, Any]], int]:
        after, upto = since, self.log.current()
        if position:
            done, _, top = position.partition("!")
            if not (done.isdigit() and top.isdigit()):
                raise _Refused(400, "0x80040203", f"The $skiptoken '{position}' is not valid.")
            after, upto = int(done), int(top)
        return self.log.since(table.logical_name, after, upto, None if page is None else page + 1), upto

    def _delta(self, api: str, table: Table, query: dict[str, str], headers: dict[str, str], caller: dict[str, Any], since: int) -> dict[str, Any]:
        page = _page_size(headers.get("prefer", ""))
        changes, upto = self._changes(table, since, page, query.get("$skiptoken"))
        more = len(changes) > page
        changes = changes[:page]
        alive = [c["id"] for c in changes if c["op"] != "Delete"]
        rows = self._fetch(api, table, query, headers, caller, alive)
        select = query.get("$select")
        context = f"{api}/$metadata#{table.entity_set}" + (f"({select})" if select else "")
        values = []
        for change in changes:
            if change["op"] != "Delete" and change["id"] in rows:
                values.append(rows[change["id"]])
        for change in changes:
            if change["op"] == "Delete":
                values.append({"@odata.context": f"{api}/$metadata#{table.entity_set}/$deletedEntity",
                               "id": change["id"], "reason": "deleted"})
        body = {"@odata.context": context + "/$delta", "value": values}
        kept = {k: v for k, v in query.items() if k not in ("$skiptoken", "$deltatoken")}
        if more:
            body["@odata.nextLink"] = _link(api, table.entity_set, kept, {
                "$deltatoken": query["$deltatoken"], "$skiptoken": f"{changes[-1]['seq']}!{upto}"})
        else:
            body["@odata.deltaLink"] = _link(api, table.entity_set, kept, {"$deltatoken": self.token(upto)})
        return body

    def _fetch(self, api: str, table: Table, query: dict[str, str], headers: dict[str, str], caller: dict[str, Any], ids: list[str]) -> dict[str, dict[str, Any]]:
        """The current representation of `ids`, through the app's own query path."""
        found: dict[str, dict[str, Any]] = {}
        prefer = ",".join(p for p in headers.get("prefer", "").split(",")
                          if p.strip() and p.strip().split("=")[0].lower() not in (TRACK, "odata.maxpagesize"))
        inner = {k: v for k, v in headers.items() if k in ("prefer", "callerobjectid", "mscrmcallerid")}
        inner["prefer"] = prefer
        for i in range(0, len(ids), ID_CHUNK):
            chunk = ids[i:i + ID_CHUNK]
            values = ",".join(f"'{v}'" for v in chunk)
            options = {k: v for k, v in query.items() if k in ("$select",) or k.startswith("@")}
            options["$filter"] = f"Microsoft.Dynamics.CRM.In(PropertyName='{table.primary_id}',PropertyValues=[{values}])"
            status, _, body = self.state.dispatch("GET", _link(api, table.entity_set, options, {}), inner, b"",
                                                  caller=caller)
            if status != 200:
                error = json.loads(body).get("error", {})
                raise _Refused(status, error.get("code", "0x0"), error.get("message", "The changes could not be read."))
            for row in json.loads(body)["value"]:
                found[row[table.primary_id]] = row
        return found


_JSON = "application/json; odata.metadata=minimal"
_SAFE = ",()'=$"


def _page_size(prefer: str) -> int:
    for item in prefer.split(","):
        name, _, value = item.strip().partition("=")
        if name.lower() == "odata.maxpagesize" and value.strip().isdigit() and int(value) > 0:
            return min(int(value), MAX_PAGE)
    return MAX_PAGE


def _link(api: str, entity_set: str, options: dict[str, Any], extra: dict[str, Any]) -> str:
    parts = [f"{k}={quote(v, safe=_SAFE)}" for k, v in options.items()]
    parts += [f"{k}={quote(v, safe='')}" for k, v in extra.items()]
    return f"{api}/{entity_set}" + ("?" + "&".join(parts) if parts else "")


def _asks_to_track(scope: Scope) -> bool:
    return any(k == b"prefer" and b"track-changes" in v.lower() for k, v in scope.get("headers", ()))


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", ()):
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


async def _send(send: Send, status: int, body: bytes, content_type: str, extra: list[Any] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"odata-version", b"4.0"),
               (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def decode_token(link: str) -> str:
    """The `$deltatoken` of a delta link, decoded (for tests and diagnostics)."""
    return unquote(dict(parse_qsl(urlsplit(link).query)).get("$deltatoken", ""))
