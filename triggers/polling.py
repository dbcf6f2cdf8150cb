"""``dynamics365.changed_rows``: rows created, updated or deleted since the last run, exactly once.

Two ways to ask Dataverse, chosen per table:

* **change tracking** (reference §11) when the table has it: the first run pages through the
  table with ``Prefer: odata.track-changes`` to get a delta link; every later run follows the
  delta link. Deletes come back as ``$deletedEntity``; the link cannot skip a row, and a row
  changed while we read appears in the next delta. An expired or refused token starts over with
  a full read that re-delivers only rows changed since the last known version, after a
  ``resync`` marker event.
* a **modifiedon cursor** otherwise: rows ordered by ``modifiedon`` then the primary key, read
  from the newest delivered ``modifiedon`` minus a short overlap, dropping the (id, version)
  pairs already delivered. Dataverse keeps whole seconds, so a row written into a second we
  already read (or committed late) is still found, and none is repeated. Deletes cannot be
  seen this way. A run reads at most ``MAX_PAGES_PER_RUN`` full pages (250,000 rows), so only
  more writes than that inside one overlap window would hold the cursor back.

Created vs updated: each change window remembers the newest ``createdon`` it has seen and the ids
created in that second; a row is *created* if it was made after that, else *updated*. The
cursor is plain JSON the host persists; a run never returns more than ``batchSize`` events and
keeps the rest's page link in the cursor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NotRequired, TypedDict, cast

from d365_components.connections.client import WebApiClient
from d365_components.connections.odata import quote
from d365_components.conventions import COLUMNS, NAME_PATTERN, TABLES
from d365_components.definitions import Context, PollingTrigger, PollResult
from d365_components.errors import D365Error, DataverseError
from d365_components.inputs import InputField, InputModel

__all__ = ["ChangedRows", "Cursor", "PollingError"]

CURSOR_VERSION = 1
MAX_PAGE = 5000
#: the first run reads a whole table to get its delta link; this bounds one run's share of it
MAX_PAGES_PER_RUN = 50
ID_CHUNK = 100  # ids per re-read with a filter (keeps the URL short)
#: modifiedon polling re-reads this far back: Dataverse stamps whole seconds, and a transaction
#: may commit a little after its stamp; rows already delivered are recognized by their version
OVERLAP = timedelta(seconds=10)
TRACK = "odata.track-changes"
TOKEN_EXPIRED = "0x80044352"
Kind = Literal["created", "updated", "deleted"]
Mode = Literal["changeTracking", "modifiedOn"]


class TableFacts(TypedDict):
    """What a run needs to know about the polled table (read once, kept in the cursor)."""

    logicalName: str
    entitySet: str
    primaryId: str
    changeTracking: bool
    #: whether the table has these system columns
    createdon: bool
    modifiedon: bool
    versionnumber: bool


class Creations(TypedDict):
    """The newest creation second, and the ids created in it (None: not known)."""

    createdOn: str | None
    #: row ids (GUIDs) as Dataverse returned them
    ids: list[Any] | None


class EmitAfter(TypedDict):
    """Which rows of a full read are delivered: changed after a version, or after a modifiedon."""

    version: NotRequired[int]
    modifiedOn: NotRequired[str]
    inclusive: NotRequired[bool]


class Position(TypedDict):
    """Where a modifiedon run resumes: the high mark, and the (id -> [stamp, modifiedon]) pairs
    delivered inside the overlap window."""

    modifiedOn: str
    recent: dict[str, list[Any]]
    #: a look-back date: only rows modified after it (or at it, when inclusive)
    floor: NotRequired[str]
    inclusive: NotRequired[bool]


class Cursor(TypedDict):
    """The JSON a host persists between runs (``version`` says which shape)."""

    version: int
    #: a hash of the inputs the links depend on (table, columns, filter)
    signature: str
    table: TableFacts
    mode: Mode
    #: initial: reading the whole table (or what changed since a date); delta: following changes
    phase: Literal["initial", "delta"]
    #: the next page or the delta link (change tracking)
    link: str | None
    emitAfter: EmitAfter | None
    #: what the current change window began with, and what it has seen so far
    known: Creations
    seen: Creations
    #: ids reported as created in this window, and ids held back while new
    windowNew: list[Any]
    heldNew: list[Any]
    maxVersion: int | None
    modifiedHigh: str | None
    position: Position | None


class PollingError(D365Error):
    """The table cannot be polled as asked."""

    disposition = "config"


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _time_of(text: Any) -> datetime:
    """A time Dataverse or the cursor gave; anything else is a cursor this trigger did not make."""
    moment = _moment(text)
    if moment is None:
        raise PollingError(f"'{text}' is not a time: the cursor or the row is not what this trigger expects.")
    return moment


def _odata_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ChangedRows(PollingTrigger):
    """Starts a flow for each row created, updated or deleted since the last run — none skipped, none twice.

    Uses Dataverse change tracking when the table has it (deletes included), else a modifiedon
    cursor. ``startDate`` backfills rows modified after it on the first run.
    """

    key = "dynamics365.changed_rows"
    label = "When rows are created, updated or deleted (polling)"
    group = "Triggers"

    class Inputs(InputModel):
        entity_type: str = InputField(
            title="Table",
            description="The table to watch: its entity set name (accounts) or logical name (account).",
            examples=["accounts", "contacts"],
            data_source=TABLES,
            min_length=1,
            pattern=NAME_PATTERN,
        )
        field_names: list[str] | None = InputField(
            [],
            title="Columns",
            description="Columns each event's row carries. Empty: all columns (bigger events).",
            examples=[["name", "telephone1"]],
            data_source=COLUMNS,
            data_source_inputs={"table": "entityType"},
            widget="list",
        )
        filter_expression: str | None = InputField(
            None,
            title="Only rows matching",
            description=(
                "An OData filter the row must match after the change (statecode eq 0). Deleted rows "
                "cannot be matched any more, so every delete is reported."
            ),
            examples=["statecode eq 0 and revenue gt 100000"],
            widget="code",
            language="odata",
        )
        change_kinds: list[Kind] = InputField(
            ["created", "updated", "deleted"],
            title="Changes",
            description="Which changes start the flow (default: all). Deletes need change tracking on the table.",
            min_length=1,
            widget="list",
            enum_labels={"created": "Created", "updated": "Updated", "deleted": "Deleted"},
        )
        start_date: datetime | None = InputField(
            None,
            title="Look back to",
            description=(
                "First run only: also report rows modified after this moment (UTC if no offset). "
                "Empty: start with changes made from now on."
            ),
            examples=["2024-01-01T00:00:00Z"],
        )
        batch_size: int = InputField(
            500,
            title="Events per run",
            description="At most this many events per run; the rest come in the next runs, in order.",
            ge=1,
            le=MAX_PAGE,
        )

    output_schema = {
        "type": "object",
        "required": ["kind", "table", "id", "row"],
        "properties": {
            "kind": {"enum": ["created", "updated", "deleted", "resync"]},
            "table": {"type": "string"},
            "id": {"type": ["string", "null"]},
            "row": {"type": ["object", "null"], "description": "the row now (null for deletes)"},
            "reason": {"type": "string", "description": "resync only: why the history started over"},
        },
    }
    example = {
        "kind": "updated",
        "table": "account",
        "id": "60c4e274-0d87-e711-80e5-00155db19e6d",
        "row": {"accountid": "60c4e274-0d87-e711-80e5-00155db19e6d", "name": "Monte Orton",
                "createdon": "2024-05-01T10:00:00Z", "modifiedon": "2024-05-02T09:30:00Z"},
    }

    async def poll(self, ctx: Context, inputs: Any, cursor: Any) -> PollResult:
        if ctx.client is None:
            raise PollingError("Polling needs a Dynamics 365 connection.")
        run = _Run(ctx.client, inputs)
        await run.start(cursor)
        if run.cursor["mode"] == "changeTracking":
            await run.tracked()
        if run.cursor["mode"] == "modifiedOn":
            await run.by_modifiedon()
        return PollResult(events=run.events, cursor=run.cursor)


class _Run:
    """One poll: the cursor it moves forward and the events it collects."""

    def __init__(self, client: WebApiClient, inputs: Any) -> None:
        self.client = client
        self.inputs = inputs
        self.events: list[dict[str, Any]] = []
        self.cursor: Cursor = cast(Cursor, {})  # set by start()
        self.table: TableFacts = cast(TableFacts, {})

    # -- setup -----------------------------------------------------------------------------

    def signature(self) -> str:
        """What the cursor's links depend on; other inputs (kinds, batch size) may change freely."""
        basis = [self.inputs.entity_type.lower(), sorted(self.inputs.field_names or []), self.inputs.filter_expression]
        return hashlib.sha256(json.dumps(basis).encode()).hexdigest()[:16]

    async def start(self, cursor: Any) -> None:
        if cursor is not None and not (isinstance(cursor, dict) and cursor.get("version") == CURSOR_VERSION):
            raise PollingError("The cursor was not made by this trigger (or by an older version); start without one.")
        if cursor and cursor.get("signature") == self.signature():
            self.cursor = cast(Cursor, json.loads(json.dumps(cursor)))  # a copy: the host's stays as it was
            self.table = self.cursor["table"]
            return
        self.table = await _describe_table(self.client, self.inputs.entity_type)
        mode: Mode = "changeTracking" if self.table["changeTracking"] else "modifiedOn"
        if mode == "modifiedOn" and not self.table["modifiedon"]:
            raise PollingError(f"Table '{self.table['logicalName']}' has neither change tracking nor modifiedon to poll.")
        start = self.inputs.start_date
        if cursor:  # the inputs changed: carry on from what the old cursor had seen
            self._restart(cursor, mode, "the trigger's table, columns or filter changed")
            return
        fresh: Creations = {"createdOn": _odata_time(start) if start else None, "ids": None if start else []}
        emit_after: EmitAfter | None = {"modifiedOn": _odata_time(start), "inclusive": False} if start else None
        self.cursor = self._new_cursor(mode, emit_after, known=fresh, seen=_copy(fresh))

    def _new_cursor(
        self, mode: Mode, emit_after: EmitAfter | None, *, known: Creations, seen: Creations,
        window_new: list[Any] | None = None, held_new: list[Any] | None = None, max_version: int | None = None,
        modified_high: str | None = None, position: Position | None = None,
    ) -> Cursor:
        """A cursor at the start of a full read; the keyword arguments: what a restart keeps."""
        return {
            "version": CURSOR_VERSION,
            "signature": self.signature(),
            "table": self.table,
            "mode": mode,
            "phase": "initial",
            "link": None,
            "emitAfter": emit_after,
            "known": known,
            "seen": seen,
            "windowNew": window_new or [],
            "heldNew": held_new or [],
            "maxVersion": max_version,
            "modifiedHigh": modified_high,
            "position": position,
        }

    def _restart(self, old: Mapping[str, Any], mode: Mode, reason: str) -> None:
        """Start over with a full read, re-delivering only what changed after the old cursor."""
        version, high = old.get("maxVersion"), old.get("modifiedHigh")
        emit_after: EmitAfter
        if version is not None and self.table.get("versionnumber") and mode == "changeTracking":
            emit_after = {"version": version}
        elif high:
            emit_after = {"modifiedOn": high, "inclusive": True}  # a repeat is better than a loss
        else:
            emit_after = {"modifiedOn": "1900-01-01T00:00:00Z", "inclusive": True}
        known = cast(Creations, old.get("known") or {"createdOn": None, "ids": []})
        self.cursor = self._new_cursor(
            mode, emit_after, known=known, seen=old.get("seen") or _copy(known),
            window_new=list(old.get("windowNew") or []), held_new=list(old.get("heldNew") or []),
            max_version=version, modified_high=high,
            position=old.get("position") if mode == "modifiedOn" and old.get("mode") == mode else None,
        )
        self.events.append({"kind": "resync", "table": self.table["logicalName"], "id": None, "row": None,
                            "reason": f"{reason}; rows changed since the last run are delivered again, "
                                      "and rows deleted meanwhile may be missing"})

    def select(self) -> str | None:
        if not self.inputs.field_names:
            return None
        wanted = [self.table["primaryId"], *(c for c in ("createdon", "modifiedon", "versionnumber") if self.table.get(c))]
        columns = [c.strip().lower() for c in self.inputs.field_names if c.strip()]
        return ",".join(dict.fromkeys([*wanted, *columns]))

    # -- classification ---------------------------------------------------------------------

    def see(self, row: dict[str, Any]) -> None:
        """Remember the newest creation second and the ids made in it; the version and modifiedon highs."""
        seen, created = self.cursor["seen"], _moment(row.get("createdon"))
        row_id = row.get(self.table["primaryId"])
        if created is not None:
            newest = _moment(seen.get("createdOn"))
            if newest is None or created > newest:
                self.cursor["seen"] = {"createdOn": _odata_time(created), "ids": [row_id]}
            elif created == newest and (ids := seen.get("ids")) is not None and row_id not in ids:
                ids.append(row_id)
        version = row.get("versionnumber")
        if isinstance(version, int) and (self.cursor["maxVersion"] is None or version > self.cursor["maxVersion"]):
            self.cursor["maxVersion"] = version
        modified = _moment(row.get("modifiedon"))
        if modified is not None and (_moment(self.cursor["modifiedHigh"]) or modified) <= modified:
            self.cursor["modifiedHigh"] = _odata_time(modified)

    def end_window(self) -> None:
        """Caught up: what this window saw is known to the next one."""
        self.cursor["known"] = _copy(self.cursor["seen"])
        self.cursor["windowNew"] = []

    def kind(self, row: dict[str, Any], known_ids: set[Any] | None, window_new: set[Any]) -> str:
        """created: made after everything known when this window began (or held back while new),
        and not already reported in it."""
        row_id = row.get(self.table["primaryId"])
        if row_id in window_new:
            return "updated"
        held_new = self.cursor.setdefault("heldNew", [])
        if row_id in held_new or self.is_new(row, known_ids):
            if row_id in held_new:
                held_new.remove(row_id)
            window_new.add(row_id)
            self.cursor["windowNew"].append(row_id)
            return "created"
        return "updated"

    def is_new(self, row: dict[str, Any], known_ids: set[Any] | None) -> bool:
        """Made after everything known when this window began."""
        known = self.cursor["known"]
        newest, created = _moment(known.get("createdOn")), _moment(row.get("createdon"))
        if created is None:
            return newest is None
        return newest is None or created > newest or (
            created == newest and known_ids is not None and row.get(self.table["primaryId"]) not in known_ids)

    def wanted_initially(self, row: dict[str, Any]) -> bool:
        rule = self.cursor["emitAfter"]
        if rule is None:
            return False
        if "version" in rule:
            version = row.get("versionnumber")
            return not isinstance(version, int) or version > rule["version"]
        modified, after = _moment(row.get("modifiedon")), _moment(rule["modifiedOn"])
        if modified is None or after is None:
            return True
        return modified >= after if rule.get("inclusive") else modified > after

    async def take(self, rows: list[dict[str, Any]], deleted: list[Any], *, initial: bool) -> None:
        known = self.cursor["known"]
        known_ids = set(ids) if (ids := known.get("ids")) is not None else None
        window_new = set(self.cursor.setdefault("windowNew", []))
        candidates = [row for row in rows if not initial or self.wanted_initially(row)]
        held: set[str] = set()
        if self.inputs.filter_expression and candidates and self.cursor["mode"] == "changeTracking":
            candidates, held = await self.matching(candidates)
        held_new = self.cursor.setdefault("heldNew", [])
        for row in rows:
            row_id = row.get(self.table["primaryId"])
            if row_id not in held:
                self.see(row)
            elif row_id not in window_new and row_id not in held_new and self.is_new(row, known_ids):
                held_new.append(row_id)  # still new when the next run delivers it
        for row in candidates:
            kind = self.kind(row, known_ids, window_new)
            if kind in self.inputs.change_kinds:
                self.emit(kind, row.get(self.table["primaryId"]), _plain(row))
        self.cursor["heldNew"] = [i for i in held_new if i not in deleted]
        if "deleted" in self.inputs.change_kinds:
            for row_id in deleted:
                self.emit("deleted", row_id, None)

    def emit(self, kind: str, row_id: Any, row: dict[str, Any] | None) -> None:
        self.events.append({"kind": kind, "table": self.table["logicalName"], "id": row_id, "row": row})

    async def matching(self, candidates: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], set[str]]:
        """Change tracking refuses $filter: re-read the changed rows through the filter.

        Returns the matching rows and the ids held back: rows that changed again since the delta
        was read. That change is after the delta link's version, so the next run delivers it
        (delivering it now too would repeat it).
        """
        pk = self.table["primaryId"]
        versions = {row[pk]: row.get("versionnumber") for row in candidates if row.get(pk)}
        current: dict[str, dict[str, Any]] = {}
        ids = list(versions)
        for i in range(0, len(ids), ID_CHUNK):
            values = ",".join(quote(v) for v in ids[i:i + ID_CHUNK])
            params = {"$filter": f"({self.inputs.filter_expression}) and "
                                 f"Microsoft.Dynamics.CRM.In(PropertyName={quote(pk)},PropertyValues=[{values}])"}
            if select := self.select():
                params["$select"] = select
            async for row in self.client.rows(self.table["entitySet"], params=params):
                current[row[pk]] = row
        held = {i for i in ids if i in current and versions[i] not in (None, current[i].get("versionnumber"))}
        return [current[i] for i in ids if i in current and i not in held], held

    # -- change tracking --------------------------------------------------------------------

    def page_size(self) -> int:
        baseline = self.cursor["phase"] == "initial" and self.cursor["emitAfter"] is None
        return MAX_PAGE if baseline else min(self.inputs.batch_size, MAX_PAGE)

    async def tracked(self) -> None:
        for _ in range(MAX_PAGES_PER_RUN):
            size = self.page_size()
            if self.events and len(self.events) + size > self.inputs.batch_size:
                return  # the next page might not fit in this run
            delta = self.cursor["phase"] == "delta"
            link = self.cursor["link"]
            params = None
            if link is None:
                link, params = self.table["entitySet"], ({"$select": s} if (s := self.select()) else None)
            try:
                response = await self.client.request(
                    "GET", link, params=params, prefer=[TRACK, f"odata.maxpagesize={size}"])
            except DataverseError as exc:
                if _not_tracked(exc) and not delta:
                    self.cursor["mode"], self.cursor["phase"], self.cursor["link"] = "modifiedOn", "initial", None
                    return
                if delta and _token_refused(exc):
                    self._restart(self.cursor, "changeTracking", "the change-tracking token expired or was refused")
                    continue
                raise
            body = response.json()
            rows, deleted = _split(body.get("value") or [])
            await self.take(rows, deleted, initial=not delta)
            if body.get("@odata.nextLink"):
                self.cursor["link"] = body["@odata.nextLink"]
                continue
            if not body.get("@odata.deltaLink"):
                raise PollingError(
                    f"Dataverse sent no delta link for '{self.table['entitySet']}': change tracking seems off for it.")
            self.cursor["link"], self.cursor["phase"], self.cursor["emitAfter"] = body["@odata.deltaLink"], "delta", None
            self.end_window()
            if delta:
                return  # caught up

    # -- modifiedon cursor ------------------------------------------------------------------

    async def by_modifiedon(self) -> None:
        """Rows modified since the high mark minus an overlap, minus the (id, version) pairs already
        delivered: a write landing in an already-read second (or committing late) is still found."""
        pk, entity_set = self.table["primaryId"], self.table["entitySet"]
        if self.cursor["phase"] == "initial":
            rule = self.cursor["emitAfter"]
            if rule is None:
                await self._baseline()
            elif self.cursor["position"] is None:  # a look-back date: only rows modified after it
                self.cursor["position"] = {"modifiedOn": rule["modifiedOn"], "floor": rule["modifiedOn"],
                                           "inclusive": bool(rule.get("inclusive")), "recent": {}}
            self.cursor["phase"], self.cursor["emitAfter"] = "delta", None
            if rule is None:
                return
        position = self.cursor["position"]
        conditions = []
        if position is not None:
            since = _odata_time(_time_of(position["modifiedOn"]) - OVERLAP)
            conditions.append(f"modifiedon ge {since}")
            if position.get("floor"):
                conditions.append(f"modifiedon {'ge' if position.get('inclusive') else 'gt'} {position['floor']}")
        if self.inputs.filter_expression:
            conditions.append(f"({self.inputs.filter_expression})")
        params: dict[str, Any] = {"$orderby": f"modifiedon asc,{pk} asc"}
        if conditions:
            params["$filter"] = " and ".join(conditions)
        if select := self.select():
            params["$select"] = select
        recent: dict[str, list[Any]] = dict(position["recent"]) if position else {}
        fresh: list[dict[str, Any]] = []
        caught_up = True
        reads = 0
        # Full pages however small the batch: every run re-reads the overlap window before it
        # reaches new rows, so a run must be able to read past a burst of rows written in it.
        async with aclosing(self.client.pages(entity_set, params=params, page_size=MAX_PAGE)) as pages:
            async for page in pages:
                reads += 1
                for row in page.rows:
                    stamp = _stamp(row)
                    if recent.get(row[pk], [None])[0] == stamp:
                        continue  # delivered in an earlier run (the overlap reads it again)
                    fresh.append(row)
                    recent[row[pk]] = [stamp, row.get("modifiedon")]
                    if len(fresh) >= self.inputs.batch_size:
                        break
                if len(fresh) >= self.inputs.batch_size or reads >= MAX_PAGES_PER_RUN:
                    caught_up = False
                    break
        await self.take(fresh, [], initial=False)
        self._advance(recent, position)
        if caught_up:
            self.end_window()

    def _advance(self, recent: dict[str, list[Any]], position: Position | None) -> None:
        """Raise the high mark to the newest modifiedon delivered; forget what left the overlap."""
        stamps = [moment for entry in recent.values() if (moment := _moment(entry[1])) is not None]
        if not stamps:
            return
        high = max(stamps)
        current = _moment(position["modifiedOn"]) if position is not None else None
        if current is not None and current > high:
            high = current
        keep = {i: e for i, e in recent.items() if (moment := _moment(e[1])) is not None and moment >= high - OVERLAP}
        self.cursor["position"] = cast(Position, {**(position or {}), "modifiedOn": _odata_time(high), "recent": keep})

    async def _baseline(self) -> None:
        """Where 'from now on' starts: the rows of the last overlap seconds, and the newest creation second."""
        pk, entity_set = self.table["primaryId"], self.table["entitySet"]
        if self.table.get("createdon"):
            newest = await self.client.get_json(entity_set, params={
                "$select": f"{pk},createdon", "$orderby": f"createdon desc,{pk} desc", "$top": 1})
            if newest.get("value"):
                stamp = _odata_time(_time_of(newest["value"][0]["createdon"]))
                ids = [row[pk] async for row in self.client.rows(entity_set, params={
                    "$select": pk, "$filter": f"createdon eq {stamp}"})]
                self.cursor["known"] = {"createdOn": stamp, "ids": ids}
                self.cursor["seen"] = {"createdOn": stamp, "ids": list(ids)}
        last = await self.client.get_json(entity_set, params={
            "$select": f"{pk},modifiedon", "$orderby": f"modifiedon desc,{pk} desc", "$top": 1})
        if not last.get("value"):
            return
        high = _time_of(last["value"][0]["modifiedon"])
        columns = ",".join([pk, "modifiedon", *(["versionnumber"] if self.table.get("versionnumber") else [])])
        recent = {
            row[pk]: [_stamp(row), row.get("modifiedon")]
            async for row in self.client.rows(entity_set, params={
                "$select": columns, "$filter": f"modifiedon ge {_odata_time(high - OVERLAP)}"})
        }
        self.cursor["position"] = {"modifiedOn": _odata_time(high), "recent": {}}
        self._advance(recent, self.cursor["position"])


def _stamp(row: dict[str, Any]) -> Any:
    """What tells two states of a row apart: its version, else its modifiedon."""
    version = row.get("versionnumber")
    return version if version is not None else row.get("modifiedon")


async def _describe_table(client: WebApiClient, name: str) -> TableFacts:
    """Logical name, entity set, primary key, change tracking and which system columns exist."""
    lowered = name.lower()
    found = await client.get_json("EntityDefinitions", params={
        "$select": "LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled",
        "$filter": f"LogicalName eq {quote(lowered)} or EntitySetName eq {quote(name)}",
    })
    rows = found.get("value") or []
    if not rows:
        raise PollingError(f"There is no table '{name}' (give its entity set name, such as accounts, or logical name).")
    table = rows[0]
    logical = table["LogicalName"]
    columns = await client.get_json(f"EntityDefinitions(LogicalName={quote(logical)})/Attributes", params={
        "$select": "LogicalName",
        "$filter": "LogicalName eq 'createdon' or LogicalName eq 'modifiedon' or LogicalName eq 'versionnumber'",
    })
    present = {c["LogicalName"] for c in columns.get("value") or []}
    return {
        "logicalName": logical,
        "entitySet": table["EntitySetName"],
        "primaryId": table["PrimaryIdAttribute"],
        "changeTracking": bool(table.get("ChangeTrackingEnabled")),
        "createdon": "createdon" in present,
        "modifiedon": "modifiedon" in present,
        "versionnumber": "versionnumber" in present,
    }


def _split(values: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    rows, deleted = [], []
    for value in values:
        if "$deletedEntity" in str(value.get("@odata.context", "")) or value.get("reason") == "deleted":
            deleted.append(value.get("id"))
        else:
            rows.append(value)
    return rows, deleted


def _copy(creations: Creations) -> Creations:
    """A deep copy (the id list is changed in place)."""
    return {"createdOn": creations["createdOn"], "ids": None if creations["ids"] is None else list(creations["ids"])}


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("@odata.context")}


def _not_tracked(exc: DataverseError) -> bool:
    return "not enabled" in str(exc.message).lower() and "change tracking" in str(exc.message).lower()


def _token_refused(exc: DataverseError) -> bool:
    message = str(exc.message).lower()
    return exc.code == TOKEN_EXPIRED or "expired" in message or ("token" in message and "not valid" in message)
