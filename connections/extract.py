"""Incremental extract: every table as a stream, one resumable state, deletes as tombstones.

What a warehouse loader needs from Dataverse (Sling's connector is the model users know):

* **streams** by entity set name (``accounts``) or logical name, or ``*`` for every readable
  table; a table that does not exist (a module not installed) is skipped with a warning and 0
  records, never a failure;
* a **mode** per stream:

  - ``incremental``: rows with ``modifiedon`` at or after the anchor date (default one year ago),
    ordered by ``modifiedon`` then the primary key. The bookmark is the (modifiedon, id) pair of
    the last row written, and each query asks for rows strictly after it: exactly once across
    runs however many rows share a second. A run only reads rows stamped before a cutoff taken
    from the server's clock at the start (minus ``settle`` seconds): Dataverse stamps whole
    seconds, so rows still being written into the current second are left whole for the next
    run, and a row changed during the run is read once, by the next run. ``settle`` covers
    transactions that commit a while after their stamp (long synchronous plugins). The keyset
    compares GUIDs with ``gt``, which orders them as ``$orderby`` does (SQL Server's order on
    Dataverse, text order on the emulator). Deletes cannot be seen this way;
  - ``full``: every row in primary key order, the key as bookmark while it runs (resumable),
    dropped at the end so the next run reads everything again. Each full read has a version (its
    start in epoch milliseconds, kept in the bookmark while it runs): records carry it, and the
    sink is told to activate it once the read is complete (Singer ACTIVATE_VERSION), so a target
    can drop the rows of older versions: rows deleted since the last full read;
  - ``changes``: Dataverse change tracking (``Prefer: odata.track-changes``) where the table has
    it: the first run reads the table (rows modified before the anchor are left out) and keeps the
    delta link; later runs follow it and get updates and deletes. A delete is a tombstone record:
    the primary key and ``_sdc_deleted_at``. The page link in progress is the bookmark, so a crash
    resumes on the page it stopped at. An expired token starts over with a full read (warned).
    A table without change tracking falls back to ``incremental`` (warned).

* **one state object** for all streams, Singer's shape: ``{"bookmarks": {stream: {...}}}``. It
  is handed to the sink after each page, once that page's records are written: a state always
  describes records already out, so resuming from it loses nothing and repeats nothing;
* **bounded and polite**: per stream one decoded page in memory (5,000 rows, fewer for a wide
  table: about ``PAGE_VALUES`` values a page, so a page stays near 8 MB), the one being
  written, and the next one's raw body, requested meanwhile so Dataverse works while we write
  (it is decoded only when its turn comes, after the previous page is released); streams read
  concurrently up to ``concurrency``, every request waits for a token bucket of ``rate_limit``
  requests per second (15 by default, like Sling) that narrows with Dataverse's
  ``x-ms-ratelimit-burst-remaining-xrm-requests``; retries (429 with Retry-After, 5xx, dropped
  connections) are the client's, within its time budget.

Why not Meltano's singer-sdk: it is a framework that owns the process (its own CLI with
``--config/--catalog/--state``), pulls records from synchronous generators over ``requests``
with its own auth, paging and backoff, and brings a heavy dependency tree (SQLAlchemy, requests,
backoff, jsonpath-ng...). Our client is async httpx with the connection's auth, retries and
service-protection limiter, and the same reader must also serve a runtime action that returns one
page. Wrapping it would need a thread-and-loop portal per stream and would lose concurrency,
for a protocol that is four JSON line shapes. So the Singer writer here is hand-written
(:mod:`d365_components.extract_output`), and checked against a real Singer target; the tap's
command line Meltano runs (``tap-dynamics365``: config, discovery, catalog, state) is
:mod:`d365_components.tap`, on this same engine.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import httpx

from d365_components import fast_json
from d365_components.connections.client import WebApiClient
from d365_components.connections.odata import quote
from d365_components.errors import D365Error, DataverseError

__all__ = [
    "DELETED_AT",
    "MODES",
    "Batch",
    "ExtractError",
    "Mode",
    "RateLimiter",
    "Sink",
    "StreamReader",
    "Summary",
    "Table",
    "check_state",
    "default_anchor",
    "describe_tables",
    "extract",
    "parse_streams",
]

log = logging.getLogger("d365_components.connections.extract")

Mode = Literal["incremental", "full", "changes"]
MODES: tuple[Mode, ...] = ("incremental", "full", "changes")
STATE_VERSION = 1
MAX_PAGE = 5000
#: values (rows x columns) a default page holds: 5,000 rows of 80 columns; 2,000 of a contact's 193
PAGE_VALUES = 400_000
TRACK = "odata.track-changes"
DELETED_AT = "_sdc_deleted_at"
TOKEN_EXPIRED = "0x80044352"
#: rows written between two turns of the event loop: the prefetched request is sent while we write
WRITE_CHUNK = 500
#: a progress line on stderr per this many records of a stream
PROGRESS_EVERY = 100_000
#: below this many requests left in Dataverse's burst window, the rate narrows in proportion
LOW_WATER = 100


class ExtractError(D365Error):
    """The extract cannot run as asked (a bad stream list, mode, state or anchor)."""

    disposition = "config"


def default_anchor() -> datetime:
    """One year ago, to the second (Sling's default look-back)."""
    return (datetime.now(UTC) - timedelta(days=365)).replace(microsecond=0)


def odata_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_streams(text: str | Iterable[str], mode: Mode) -> list[tuple[str, Mode]]:
    """``"accounts,contacts:changes"`` or ``"*"`` -> [(name, mode)]; a ``:mode`` suffix overrides ``mode``."""
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if not parts:
        raise ExtractError("streams: give table names (accounts,contacts) or '*' for every readable table.")
    streams: list[tuple[str, Mode]] = []
    for part in parts:
        name, _, suffix = part.partition(":")
        chosen = suffix.strip() or mode
        if chosen not in MODES:
            raise ExtractError(f"streams: '{part}' has mode '{chosen}'; use one of {', '.join(MODES)}.")
        name = name.strip()
        if name != "*" and not (name.replace("_", "a").isalnum() and not name[0].isdigit()):
            raise ExtractError(f"streams: '{name}' is not a table name.")
        streams.append((name, chosen))
    return streams


# -- tables and their JSON Schema -------------------------------------------------------------------

_STRING = {"String", "Memo", "EntityName", "MultiSelectPicklist", "Uniqueidentifier", "Lookup", "Customer", "Owner",
           "PartyList"}
_INTEGER = {"Integer", "BigInt", "Picklist", "State", "Status"}
_NUMBER = {"Decimal", "Double", "Money"}
_SKIPPED = {"Virtual", "CalendarRules", "ManagedProperty", "File", "Image"}


@dataclass(frozen=True)
class Table:
    """One stream's table: names, key, what it can be replicated by, and its JSON Schema."""

    name: str  # the entity set name: the stream's name
    logical_name: str
    primary_id: str
    change_tracking: bool
    has_modifiedon: bool
    properties: dict[str, Any] = field(default_factory=dict)
    #: read only ``properties`` (``$select``): the columns were chosen (:meth:`only`)
    selected: bool = False

    def only(self, columns: Iterable[str]) -> Table:
        """This table narrowed to ``columns`` (unknown names ignored); the key and modifiedon stay."""
        keep = {c.lower() for c in columns} | {self.primary_id, "modifiedon"}
        return replace(self, selected=True, properties={k: v for k, v in self.properties.items() if k in keep})

    def schema(self, mode: Mode) -> dict[str, Any]:
        properties = dict(self.properties)
        if mode == "changes":
            properties[DELETED_AT] = {"type": ["string", "null"], "format": "date-time"}
        return {"type": "object", "properties": properties}


def _property(attribute: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The row's property name and JSON Schema of one attribute (lookups arrive as _name_value)."""
    kind, name = attribute.get("AttributeType"), attribute["LogicalName"]
    if attribute.get("AttributeOf") or kind in _SKIPPED or attribute.get("IsValidForRead") is False:
        return None
    if kind in ("Lookup", "Customer", "Owner"):
        return f"_{name}_value", {"type": ["string", "null"]}
    if kind == "DateTime":
        date_only = (attribute.get("Format") == "DateOnly")
        return name, {"type": ["string", "null"], "format": "date" if date_only else "date-time"}
    if kind == "Boolean":
        return name, {"type": ["boolean", "null"]}
    if kind in _INTEGER:
        return name, {"type": ["integer", "null"]}
    if kind in _NUMBER:
        return name, {"type": ["number", "null"]}
    if kind in _STRING:
        return name, {"type": ["string", "null"]}
    return name, {}  # unknown kinds: any JSON value


async def describe_tables(client: WebApiClient, names: list[str]) -> tuple[list[Table], list[str]]:
    """The tables named (``*``: every readable one) with their schemas, and the names not found."""
    found = await client.get_json("EntityDefinitions", params={
        "$select": "LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled,IsPrivate,IsIntersect"})
    entities = [e for e in found.get("value") or [] if e.get("EntitySetName") and not e.get("IsPrivate")]
    by_name = {e["EntitySetName"].lower(): e for e in entities} | {e["LogicalName"].lower(): e for e in entities}
    chosen: list[dict[str, Any]] = []
    missing: list[str] = []
    for name in names:
        if name == "*":
            chosen += sorted((e for e in entities if not e.get("IsIntersect")), key=lambda e: e["EntitySetName"])
        elif name.lower() in by_name:
            chosen.append(by_name[name.lower()])
        else:
            missing.append(name)
    unique = list({e["LogicalName"]: e for e in chosen}.values())
    tables = await asyncio.gather(*(_table(client, e) for e in unique))
    return list(tables), missing


async def _table(client: WebApiClient, entity: dict[str, Any]) -> Table:
    logical = entity["LogicalName"]
    attributes = await client.get_json(f"EntityDefinitions(LogicalName={quote(logical)})/Attributes", params={
        "$select": "LogicalName,AttributeType,AttributeOf,IsValidForRead"})
    properties: dict[str, Any] = {}
    for attribute in attributes.get("value") or []:
        described = _property(attribute)
        if described is not None:
            properties[described[0]] = described[1]
    pk = entity["PrimaryIdAttribute"]
    properties[pk] = {"type": ["string"]}
    return Table(name=entity["EntitySetName"], logical_name=logical, primary_id=pk,
                 change_tracking=bool(entity.get("ChangeTrackingEnabled")),
                 has_modifiedon="modifiedon" in properties, properties=properties)


# -- politeness ---------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket shared by every stream: at most ``rate`` requests a second (bursts of one
    second's worth), narrowed in proportion when Dataverse says its burst budget runs low."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ExtractError("rate_limit must be more than 0 requests per second.")
        self.rate = self.allowed = float(rate)
        self._tokens = 1.0
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(max(self.allowed, 1.0), self._tokens + (now - self._last) * self.allowed)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.allowed)

    def observe(self, headers: httpx.Headers) -> None:
        remaining = headers.get("x-ms-ratelimit-burst-remaining-xrm-requests")
        try:
            left = int(float(remaining)) if remaining is not None else None
        except ValueError:
            left = None
        if left is None or left >= LOW_WATER:
            self.allowed = self.rate
        else:
            self.allowed = max(0.5, self.rate * max(left, 0) / LOW_WATER)


# -- reading one stream ------------------------------------------------------------------------


@dataclass
class Batch:
    """One page: its records (tombstones included), the bookmark after them, and whether more follow."""

    records: list[dict[str, Any]]
    bookmark: dict[str, Any]
    more: bool
    #: full mode: the version of this full read (activated once its last page is written)
    version: int | None = None


class StreamReader:
    """Pages of one table in one mode, from a bookmark; at most two pages held (with prefetch)."""

    def __init__(self, client: WebApiClient, table: Table, mode: Mode, *, anchor: datetime, limiter: RateLimiter,
                 page_size: int | None = None, settle: float = 0.0, prefetch: bool = True) -> None:
        if mode == "changes" and not table.change_tracking:
            log.warning("%s: change tracking is not enabled on this table; reading it incrementally by modifiedon",
                        table.name)
            mode = "incremental"
        if mode == "incremental" and not table.has_modifiedon:
            log.warning("%s: the table has no modifiedon column; reading it in full", table.name)
            mode = "full"
        if page_size is None:  # a decoded row costs about 200 bytes a column: wide tables get shorter pages
            page_size = max(1, min(MAX_PAGE, PAGE_VALUES // max(1, len(table.properties))))
        if not 1 <= page_size <= MAX_PAGE:
            raise ExtractError(f"page_size must be from 1 to {MAX_PAGE}.")
        self.client, self.table, self.mode = client, table, mode
        self.anchor, self.limiter, self.page_size, self.settle = anchor, limiter, page_size, settle
        self.prefetch = prefetch

    async def _get(self, url: str, params: dict[str, Any] | None = None, *, track: bool = False) -> httpx.Response:
        await self.limiter.wait()
        prefer = [f"odata.maxpagesize={self.page_size}"] + ([TRACK] if track else [])
        response = await self.client.request("GET", url, params=params, prefer=prefer)
        self.limiter.observe(response.headers)
        return response

    def _usable(self, bookmark: dict[str, Any] | None) -> dict[str, Any]:
        if not bookmark:
            return {"mode": self.mode}
        if bookmark.get("mode") != self.mode:
            log.warning("%s: the state's bookmark is for mode %s, not %s; starting this stream over",
                        self.table.name, bookmark.get("mode"), self.mode)
            return {"mode": self.mode}
        try:  # the values go into a $filter: only a GUID and a moment may
            for key in ("id", "after"):
                if bookmark.get(key) is not None:
                    uuid.UUID(str(bookmark[key]))
            if bookmark.get("modifiedon") is not None:
                datetime.fromisoformat(str(bookmark["modifiedon"]).replace("Z", "+00:00"))
        except ValueError:
            raise ExtractError(f"state: the bookmark of {self.table.name} is not one this extract wrote.") from None
        return dict(bookmark)

    async def batches(self, bookmark: dict[str, Any] | None = None) -> AsyncGenerator[Batch, None]:
        mark = self._usable(bookmark)
        if self.mode == "incremental":
            async for batch in self._incremental(mark):
                yield batch
        elif self.mode == "full":
            async for batch in self._full(mark):
                yield batch
        else:
            async for batch in self._changes(mark):
                yield batch

    async def _cutoff(self) -> datetime:
        """The server's clock now, to the second, minus ``settle``: rows stamped from then on wait."""
        response = await self._get(self.table.name, {"$select": self.table.primary_id, "$top": 1})
        try:
            now = email.utils.parsedate_to_datetime(response.headers["Date"])
        except (KeyError, TypeError, ValueError):
            now = datetime.now(UTC)
        now = now.astimezone(UTC).replace(microsecond=0)
        return now - timedelta(seconds=self.settle)

    async def _incremental(self, mark: dict[str, Any]) -> AsyncIterator[Batch]:
        pk = self.table.primary_id
        cutoff = odata_time(await self._cutoff())
        if mark.get("modifiedon") and mark.get("id"):
            after = (f"(modifiedon gt {mark['modifiedon']} or "
                     f"(modifiedon eq {mark['modifiedon']} and {pk} gt {quote(uuid.UUID(str(mark['id'])))}))")
        else:
            after = f"modifiedon ge {odata_time(self.anchor)}"
        params: dict[str, Any] = {
            "$filter": f"{after} and modifiedon lt {cutoff}", "$orderby": f"modifiedon asc,{pk} asc"}
        async with aclosing(self._follow(self.table.name, self._select(params))) as bodies:
            async for body in bodies:
                records = _plain(body.get("value") or [])
                if records:
                    last = records[-1]
                    mark = {"mode": "incremental", "modifiedon": last["modifiedon"], "id": last[pk]}
                more = "@odata.nextLink" in body
                del body  # released before the next page is decoded: one page in memory
                yield Batch(records, mark, more=more)
                del records

    async def _full(self, mark: dict[str, Any]) -> AsyncIterator[Batch]:
        pk = self.table.primary_id
        params: dict[str, Any] = {"$orderby": f"{pk} asc"}
        version = mark.get("version") if mark.get("after") else None
        if not isinstance(version, int) or isinstance(version, bool):
            version = int(time.time() * 1000)  # a new full read
        if mark.get("after"):
            params["$filter"] = f"{pk} gt {quote(uuid.UUID(str(mark['after'])))}"
        async with aclosing(self._follow(self.table.name, self._select(params))) as bodies:
            async for body in bodies:
                records = _plain(body.get("value") or [])
                more = "@odata.nextLink" in body
                del body
                if not more:
                    mark = {"mode": "full"}  # done: the next run reads everything again
                elif records:
                    mark = {"mode": "full", "after": records[-1][pk], "version": version}
                yield Batch(records, mark, more=more, version=version)
                del records

    def _select(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.table.selected:
            params["$select"] = ",".join(self.table.properties)
        return params

    async def _changes(self, mark: dict[str, Any]) -> AsyncIterator[Batch]:
        initial = not mark.get("deltaLink") or bool(mark.get("initial"))
        start: str = mark.get("link") or mark.get("deltaLink") or self.table.name
        while True:
            try:  # the links carry the first request's $select
                params = self._select({}) if start == self.table.name else None
                async with aclosing(self._follow(start, params or None, track=True)) as bodies:
                    async for body in bodies:
                        batch = self._changes_batch(body, initial)
                        del body
                        yield batch
                        del batch
                return
            except DataverseError as exc:
                if initial or not _token_refused(exc):
                    raise
                log.warning("%s: the change-tracking token expired or was refused; reading the table again "
                            "(rows changed since are delivered again, deletes meanwhile are lost)", self.table.name)
                initial, start = True, self.table.name

    def _changes_batch(self, body: dict[str, Any], initial: bool) -> Batch:
        extracted = odata_time(datetime.now(UTC))
        records: list[dict[str, Any]] = []
        for value in body.get("value") or []:
            if "$deletedEntity" in str(value.get("@odata.context", "")) or value.get("reason") == "deleted":
                records.append({self.table.primary_id: value.get("id"), DELETED_AT: extracted})
            elif not initial or _after(value.get("modifiedon"), self.anchor):
                records.append(value)
        records = _plain(records)
        link = body.get("@odata.nextLink")
        if link is not None:
            return Batch(records, {"mode": "changes", "link": link, "initial": initial}, more=True)
        if body.get("@odata.deltaLink"):
            return Batch(records, {"mode": "changes", "deltaLink": body["@odata.deltaLink"]}, more=False)
        raise ExtractError(f"{self.table.name}: Dataverse sent no delta link; change tracking seems off.")

    async def _content(self, url: str, params: dict[str, Any] | None, track: bool) -> bytes:
        return (await self._get(url, params, track=track)).content

    async def _follow(self, url: str, params: dict[str, Any] | None = None, *,
                      track: bool = False) -> AsyncGenerator[dict[str, Any], None]:
        """The bodies of a query's pages, following nextLink. With ``prefetch`` the next page is
        requested before this one is handed over: Dataverse works on it while we write this one.
        A page is decoded when its turn comes: the one before is released by then (the callers
        drop their references before asking for the next), so one decoded page is in memory."""
        pending: asyncio.Future[bytes] = asyncio.ensure_future(self._content(url, params, track))
        try:
            while True:
                body = fast_json.loads(await pending)
                if not isinstance(body, dict):
                    body = {}
                link = body.get("@odata.nextLink")
                if link and self.prefetch:
                    pending = asyncio.ensure_future(self._content(link, None, track))
                yield body
                del body
                if not link:
                    return
                if not self.prefetch:
                    pending = asyncio.ensure_future(self._content(link, None, track))
        finally:
            if not pending.done():
                pending.cancel()
            elif not pending.cancelled():
                pending.exception()  # retrieved: an unread failure is not reported as lost


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows without OData annotations (@odata.etag...), changed in place.

    Rows of one page share their columns: the annotations found in the first are removed from
    each; a row of another size is searched whole.
    """
    if not rows:
        return rows
    annotations = [k for k in rows[0] if "@" in k]
    size = len(rows[0])
    for row in rows:
        if len(row) != size:
            annotations_here = [k for k in row if "@" in k]
            for key in annotations_here:
                del row[key]
            continue
        for key in annotations:
            row.pop(key, None)
    return rows


def _after(text: Any, anchor: datetime) -> bool:
    if not isinstance(text, str):
        return True
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return True
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) >= anchor


def _token_refused(exc: DataverseError) -> bool:
    message = str(exc.message).lower()
    return exc.code == TOKEN_EXPIRED or "expired" in message or ("token" in message and "not valid" in message)


# -- the run -----------------------------------------------------------------------------------


class Sink(Protocol):
    """Where an extract writes: Singer messages on stdout, or JSONL files."""

    def schema(self, table: Table, mode: Mode) -> None: ...

    def records(self, stream: str, rows: list[dict[str, Any]], time_extracted: str,
                version: int | None = None) -> None: ...

    def activate_version(self, stream: str, version: int) -> None:
        """A full read of ``stream`` is complete: rows of other versions are gone from the table."""

    def state(self, state: dict[str, Any]) -> None: ...


@dataclass
class Summary:
    """Records written per stream, and the names skipped because no such table exists."""

    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


def check_state(state: Any) -> dict[str, Any]:
    """A copy of a state from an earlier run (``None``: a new one)."""
    if state is None:
        return {"version": STATE_VERSION, "bookmarks": {}}
    if not isinstance(state, dict) or not isinstance(state.get("bookmarks", {}), dict):
        raise ExtractError('state: expected the state object of an earlier run: {"bookmarks": {...}}.')
    return {**state, "version": STATE_VERSION, "bookmarks": dict(state.get("bookmarks") or {})}


async def extract(
    client: WebApiClient,
    sink: Sink,
    *,
    streams: list[tuple[str, Mode]],
    state: dict[str, Any] | None = None,
    anchor: datetime | None = None,
    rate_limit: float = 15.0,
    concurrency: int = 4,
    page_size: int | None = None,
    settle: float = 0.0,
    max_records: int | None = None,
    columns: dict[str, list[str]] | None = None,
    activate_versions: bool = True,
) -> Summary:
    """Extract ``streams`` into ``sink``, from ``state``; returns the counts and the final state.

    ``page_size`` (rows a request) defaults to 5,000, fewer for tables of more than 80 columns
    (:data:`PAGE_VALUES`). ``max_records`` stops after about that many records (at a page boundary), the state saying
    where: a run split in parts. ``columns`` narrows streams (by name) to those columns, with
    their key and modifiedon (``$select``; a Singer catalog's selection). ``activate_versions=False``
leaves full reads without versions, for Singer targets that refuse ACTIVATE_VERSION messages.
    """
    if concurrency < 1:
        raise ExtractError("concurrency must be at least 1.")
    current = check_state(state)
    anchor = anchor or default_anchor()
    anchor = anchor if anchor.tzinfo else anchor.replace(tzinfo=UTC)
    limiter = RateLimiter(rate_limit)
    modes = {name.lower(): mode for name, mode in streams}
    tables, missing = await describe_tables(client, list(modes))
    chosen = {name.lower(): names for name, names in (columns or {}).items()}
    tables = [t.only(chosen[t.name.lower()]) if t.name.lower() in chosen else t for t in tables]
    summary = Summary(skipped=missing, state=current)
    for name in missing:
        log.warning("%s: no such table (a module that is not installed?); skipped with 0 records", name)
        summary.counts[name] = 0
    gate = asyncio.Semaphore(concurrency)
    budget: list[int | None] = [max_records]

    async def one(table: Table) -> None:
        async with gate:
            try:
                await stream(table)
            except DataverseError as exc:
                if exc.status != 403:
                    raise
                log.warning("%s: not readable with this connection (%s); skipped", table.name, exc.message)
                summary.skipped.append(table.name)

    async def stream(table: Table) -> None:
        mode = modes.get(table.name.lower()) or modes.get(table.logical_name) or modes.get("*") or "incremental"
        reader = StreamReader(client, table, mode, anchor=anchor, limiter=limiter, page_size=page_size, settle=settle)
        sink.schema(table, reader.mode)
        summary.counts[table.name] = 0
        async with aclosing(reader.batches(current["bookmarks"].get(table.name))) as batches:
            async for batch in batches:
                if budget[0] is not None and budget[0] <= 0:
                    return
                extracted = odata_time(datetime.now(UTC))
                version = batch.version if activate_versions else None
                for start in range(0, len(batch.records), WRITE_CHUNK):
                    sink.records(table.name, batch.records[start:start + WRITE_CHUNK], extracted, version)
                    await asyncio.sleep(0)  # the next page's request (and other streams) move on meanwhile
                if version is not None and not batch.more:
                    sink.activate_version(table.name, version)
                before = summary.counts[table.name]
                summary.counts[table.name] += len(batch.records)
                if summary.counts[table.name] // PROGRESS_EVERY > before // PROGRESS_EVERY:
                    log.info("%s: %d records so far", table.name, summary.counts[table.name])
                current["bookmarks"][table.name] = batch.bookmark
                sink.state(current)
                if budget[0] is not None:
                    budget[0] -= len(batch.records)
                del batch  # released before the next page is decoded
        log.info("%s: %d records (%s)", table.name, summary.counts[table.name], reader.mode)

    try:
        async with asyncio.TaskGroup() as group:  # a failing stream stops the others
            for table in tables:
                group.create_task(one(table))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return summary
