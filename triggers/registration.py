"""A webhook's registration in Dataverse: one serviceendpoint and one processing step per message.

Everything is found again by name, never only by the ids a host may have lost, so deploying twice
(after a restart, a redeploy, a crash half way) converges on exactly one endpoint with exactly the
wanted steps and images — the duplicates that make other products fire twice are deleted. The
same survey answers :func:`verify` without changing anything.

Concurrent deploys: in one process, :func:`deploy` and :func:`remove` of one registration name
take turns (a lock per name), so two deploys at once make one endpoint. Dataverse has no lock to
take, so deploys of one name from two *processes* at once may each create an endpoint; verify
then reports the duplicate and the next deploy folds it. Hosts that deploy from several workers
should deploy a flow from one of them.

Shapes follow reference §12.1: ``serviceendpoints`` (contract 8 Webhook, authtype 4 WebhookKey,
``authvalue`` write-only), ``sdkmessageprocessingsteps`` (stage 40, mode 0/1, filteringattributes
for Update) and ``sdkmessageprocessingstepimages`` (imagetype 0 pre / 1 post).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from d365_components.connections.client import WebApiClient
from d365_components.connections.odata import quote
from d365_components.errors import D365Error, RecordNotFoundError

__all__ = ["ANY_TABLE", "Registration", "RegistrationError", "Survey", "deploy", "differences", "remove", "survey", "verify"]

WEBHOOK = 8
WEBHOOK_KEY = 4
JSON_FORMAT = 2
POST_OPERATION = 40
PRE_IMAGE, POST_IMAGE = 0, 1
ENDPOINTS = "serviceendpoints"
STEPS = "sdkmessageprocessingsteps"
IMAGES = "sdkmessageprocessingstepimages"
_STEP_COLUMNS = "name,stage,mode,rank,filteringattributes,statecode,_sdkmessageid_value,_sdkmessagefilterid_value"
_IMAGE_COLUMNS = "name,imagetype,entityalias,messagepropertyname,attributes"


class RegistrationError(D365Error):
    """The webhook could not be registered as asked (unknown table or message, no connection)."""

    disposition = "config"


#: the table of a registration that covers every table (its steps have no message filter)
ANY_TABLE = "*"


@dataclass(frozen=True)
class Registration:
    """What Dataverse should hold for one deployed webhook trigger.

    ``table`` is a logical name, or :data:`ANY_TABLE` for every table (one step per message, with
    no filter); ``more_tables`` are further tables, each with its own steps.
    """

    name: str
    url: str
    key: str | None
    table: str
    messages: tuple[str, ...]
    filtering_columns: tuple[str, ...] = ()
    pre_image: bool = False
    post_image: bool = False
    synchronous: bool = False
    more_tables: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the key never shows
        return f"Registration(name={self.name!r}, tables={self.tables!r}, messages={self.messages!r})"

    @property
    def tables(self) -> tuple[str, ...]:
        """Every table watched, the first one first (only :data:`ANY_TABLE` when it covers all)."""
        if self.table == ANY_TABLE:
            return (ANY_TABLE,)
        return tuple(dict.fromkeys((self.table, *self.more_tables)))

    def wanted_steps(self) -> list[tuple[str, str]]:
        """Every (message, table) that gets a step."""
        return [(message, table) for table in self.tables for message in self.messages]

    def state_key(self, message: str, table: str) -> str:
        """The step's key in the deploy state: the message for the first table (as before), else
        ``"<message> <table>"``."""
        return message if table == self.tables[0] else f"{message} {table}"

    def endpoint_fields(self) -> dict[str, Any]:
        watched = "any table" if self.table == ANY_TABLE else ", ".join(self.tables)
        return {
            "name": self.name,
            "url": self.url,
            "contract": WEBHOOK,
            "authtype": WEBHOOK_KEY,
            "authvalue": self.key or "",
            "messageformat": JSON_FORMAT,
            "description": f"Webhook trigger on {watched} ({', '.join(self.messages)}), managed by d365-components."[:2000],
        }

    def step_name(self, message: str, table: str | None = None) -> str:
        table = table or self.tables[0]
        return f"{self.name}: {message} of {'any table' if table == ANY_TABLE else table}"

    def step_fields(self, message: str, table: str | None = None) -> dict[str, Any]:
        """The step's compared columns (binds are added on create)."""
        return {
            "name": self.step_name(message, table),
            "stage": POST_OPERATION,
            "mode": 0 if self.synchronous else 1,
            "rank": 1,
            "filteringattributes": ",".join(self.filtering_columns) if message == "Update" and self.filtering_columns else None,
            "statecode": 0,
        }

    def images(self, message: str) -> dict[str, dict[str, Any]]:
        """``{alias: fields}`` of the images a step of ``message`` needs (all columns each)."""
        wanted: dict[str, dict[str, Any]] = {}
        if self.pre_image and message in ("Update", "Delete"):
            wanted["preimage"] = {"name": "preimage", "entityalias": "preimage", "imagetype": PRE_IMAGE,
                                  "messagepropertyname": "Target", "attributes": None}
        if self.post_image and message in ("Create", "Update"):
            wanted["postimage"] = {"name": "postimage", "entityalias": "postimage", "imagetype": POST_IMAGE,
                                   "messagepropertyname": "Id" if message == "Create" else "Target", "attributes": None}
        return wanted


@dataclass
class Survey:
    """What Dataverse holds under a registration's name: endpoints, their steps, the steps' images."""

    endpoints: list[dict[str, Any]]
    steps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # endpoint id -> steps
    images: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # step id -> images
    messages: dict[str, str] = field(default_factory=dict)  # message id -> name
    filters: dict[str, str] = field(default_factory=dict)  # message filter id -> table

    def message_of(self, step: dict[str, Any]) -> str | None:
        """The name of the message a step is registered on (None when unknown)."""
        return self.messages.get(step.get("_sdkmessageid_value") or "")

    def table_of(self, step: dict[str, Any]) -> str | None:
        """The logical name of the table a step watches, :data:`ANY_TABLE` without a filter."""
        filter_id = step.get("_sdkmessagefilterid_value")
        return ANY_TABLE if not filter_id else self.filters.get(filter_id)

    def steps_for(self, steps: list[dict[str, Any]], message: str, table: str) -> list[dict[str, Any]]:
        return [s for s in steps if self.message_of(s) == message and self.table_of(s) == table]


async def _rows(client: WebApiClient, entity_set: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [row async for row in client.rows(entity_set, params=params)]


async def _message_ids(client: WebApiClient, names: tuple[str, ...]) -> dict[str, str]:
    wanted = " or ".join(f"name eq {quote(n)}" for n in names)
    rows = await _rows(client, "sdkmessages", {"$select": "sdkmessageid,name", "$filter": wanted})
    return {row["name"]: row["sdkmessageid"] for row in rows}


async def _filter_ids(client: WebApiClient, table: str, message_ids: dict[str, str | None]) -> dict[str, str | None]:
    """``{message: sdkmessagefilterid}`` of ``table`` (None for every message with :data:`ANY_TABLE`);
    raises naming what cannot be watched."""
    missing = [m for m in message_ids.values() if m is None]
    if missing or not message_ids:
        raise RegistrationError("Dataverse has no Create/Update/Delete messages to register on.")
    if table == ANY_TABLE:
        return dict.fromkeys(message_ids)
    by_id = {v: k for k, v in message_ids.items()}
    which = " or ".join(f"_sdkmessageid_value eq {i}" for i in message_ids.values())
    rows = await _rows(client, "sdkmessagefilters", {
        "$select": "sdkmessagefilterid,_sdkmessageid_value",
        "$filter": f"primaryobjecttypecode eq {quote(table)} and ({which})",
    })
    found: dict[str, str | None] = {
        by_id[row["_sdkmessageid_value"]]: row["sdkmessagefilterid"] for row in rows if row["_sdkmessageid_value"] in by_id}
    absent = [m for m in message_ids if m not in found]
    if absent:
        raise RegistrationError(
            f"Table '{table}' cannot be watched for {', '.join(absent)}: Dataverse has no such message for it "
            "(check the table's logical name)."
        )
    return found


async def survey(client: WebApiClient, name: str) -> Survey:
    """Every webhook endpoint called ``name``, with its steps and their images."""
    endpoints = await _rows(client, ENDPOINTS, {
        "$select": "serviceendpointid,name,url,contract,authtype,messageformat",
        "$filter": f"name eq {quote(name)} and contract eq {WEBHOOK}",
    })
    found = Survey(endpoints=endpoints)
    for endpoint in endpoints:
        steps = await _rows(client, STEPS, {
            "$select": _STEP_COLUMNS, "$filter": f"_eventhandler_value eq {endpoint['serviceendpointid']}",
        })
        found.steps[endpoint["serviceendpointid"]] = steps
        for step in steps:
            found.images[step["sdkmessageprocessingstepid"]] = await _step_images(client, step["sdkmessageprocessingstepid"])
    message_ids = {s["_sdkmessageid_value"] for steps in found.steps.values() for s in steps if s.get("_sdkmessageid_value")}
    if message_ids:
        which = " or ".join(f"sdkmessageid eq {i}" for i in sorted(message_ids))
        rows = await _rows(client, "sdkmessages", {"$select": "sdkmessageid,name", "$filter": which})
        found.messages = {row["sdkmessageid"]: row["name"] for row in rows}
    filter_ids = {s["_sdkmessagefilterid_value"] for steps in found.steps.values() for s in steps
                  if s.get("_sdkmessagefilterid_value")}
    if filter_ids:
        which = " or ".join(f"sdkmessagefilterid eq {i}" for i in sorted(filter_ids))
        rows = await _rows(client, "sdkmessagefilters", {"$select": "sdkmessagefilterid,primaryobjecttypecode",
                                                         "$filter": which})
        found.filters = {row["sdkmessagefilterid"]: row["primaryobjecttypecode"] for row in rows}
    return found


async def _step_images(client: WebApiClient, step_id: str) -> list[dict[str, Any]]:
    try:
        return await _rows(client, IMAGES, {
            "$select": _IMAGE_COLUMNS, "$filter": f"_sdkmessageprocessingstepid_value eq {step_id}",
        })
    except RecordNotFoundError:  # an org (or emulator) without step images has none to find
        return []


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The wanted fields whose current value is different (empty text and None are alike)."""
    return {k: v for k, v in wanted.items() if (current.get(k) or None) != (v or None)}


def differences(wanted: Registration, found: Survey) -> list[str]:
    """What differs between Dataverse and ``wanted``, in plain words (empty: it matches)."""
    if not found.endpoints:
        return [f"no webhook endpoint named '{wanted.name}' is registered"]
    notes: list[str] = []
    if len(found.endpoints) > 1:
        notes.append(f"{len(found.endpoints)} endpoints are named '{wanted.name}' (duplicates fire twice)")
    endpoint = found.endpoints[0]
    compared = {k: v for k, v in wanted.endpoint_fields().items() if k in ("url", "authtype", "messageformat")}
    for column, value in _differs(endpoint, compared).items():
        notes.append(f"endpoint {column} is {endpoint.get(column)!r}, expected {value!r}")
    steps = found.steps.get(endpoint["serviceendpointid"], [])
    several = len(wanted.tables) > 1
    for message, table in wanted.wanted_steps():
        label = f"{message} of {table}" if several else message
        matching = found.steps_for(steps, message, table)
        if not matching:
            notes.append(f"no step for {label}")
            continue
        if len(matching) > 1:
            notes.append(f"{len(matching)} steps for {label} (duplicates fire twice)")
        step = matching[0]
        for column, value in _differs(step, wanted.step_fields(message, table)).items():
            if column != "name":
                notes.append(f"step for {label}: {column} is {step.get(column)!r}, expected {value!r}")
        have = {i.get("entityalias"): i for i in found.images.get(step["sdkmessageprocessingstepid"], [])}
        for alias, image in wanted.images(message).items():
            if alias not in have:
                notes.append(f"step for {label}: no {alias}")
            elif have[alias].get("imagetype") != image["imagetype"]:
                notes.append(f"step for {label}: {alias} has imagetype {have[alias].get('imagetype')}")
        for extra in have.keys() - wanted.images(message).keys():
            notes.append(f"step for {label}: unexpected image {extra}")
    wanted_pairs = set(wanted.wanted_steps())
    for step in steps:
        name, table = found.message_of(step) or "?", found.table_of(step) or "?"
        if (name, table) not in wanted_pairs:
            notes.append(f"unexpected step for {name}" + (f" of {table}" if several or table != wanted.tables[0] else ""))
    return notes


def _describe(found: Survey) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    if not found.endpoints:
        return None, []
    endpoint = found.endpoints[0]
    steps = [
        {
            "id": s["sdkmessageprocessingstepid"],
            "name": s.get("name"),
            "message": found.message_of(s),
            "table": found.table_of(s),
            "mode": s.get("mode"),
            "stage": s.get("stage"),
            "filteringattributes": s.get("filteringattributes"),
            "enabled": s.get("statecode") == 0,
            "images": [i.get("entityalias") for i in found.images.get(s["sdkmessageprocessingstepid"], [])],
        }
        for s in found.steps.get(endpoint["serviceendpointid"], [])
    ]
    shown = {k: endpoint.get(k) for k in ("serviceendpointid", "name", "url", "contract", "authtype")}
    return {"id": shown.pop("serviceendpointid"), **shown}, steps


async def verify(client: WebApiClient, wanted: Registration) -> dict[str, Any]:
    """``{"registered", "matches", "differences", "endpoint", "steps"}`` — nothing is changed.

    The key itself cannot be checked: Dataverse never returns ``authvalue``.
    """
    found = await survey(client, wanted.name)
    notes = differences(wanted, found)
    endpoint, steps = _describe(found)
    return {"registered": endpoint is not None, "matches": not notes, "differences": notes,
            "endpoint": endpoint, "steps": steps}


async def _delete(client: WebApiClient, entity_set: str, row_id: str) -> None:
    try:
        await client.delete(entity_set, row_id)
    except RecordNotFoundError:  # already gone: that is what we wanted
        pass


async def _delete_endpoint(client: WebApiClient, found: Survey, endpoint_id: str) -> None:
    for step in found.steps.get(endpoint_id, []):
        await _delete_step(client, found, step["sdkmessageprocessingstepid"])
    await _delete(client, ENDPOINTS, endpoint_id)


async def _delete_step(client: WebApiClient, found: Survey, step_id: str) -> None:
    for image in found.images.get(step_id, []):
        await _delete(client, IMAGES, image["sdkmessageprocessingstepimageid"])
    await _delete(client, STEPS, step_id)


#: one lock per (event loop, registration name) while someone holds it
_turns: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()


@contextlib.asynccontextmanager
async def _fleet_turn(client: WebApiClient, name: str) -> AsyncIterator[None]:
    """The same turns across processes, when the connection shares its state (Redis)."""
    shared = getattr(client, "shared", None)
    if shared is None:
        yield
        return
    async with shared.lock(f"webhook:{client.org_url}:{name}"):
        yield


def _turn(name: str) -> asyncio.Lock:
    """The lock that makes deploys and removals of one registration in this process take turns."""
    key = (id(asyncio.get_running_loop()), name)
    lock = _turns.get(key)
    if lock is None:
        lock = _turns[key] = asyncio.Lock()
    return lock


async def deploy(client: WebApiClient, wanted: Registration) -> dict[str, Any]:
    """Make Dataverse hold exactly ``wanted`` (create, update or delete); returns the state to keep.

    State: ``{"name", "table", "tables", "endpointId", "steps": {key: stepId}}`` (keys: see
    :meth:`Registration.state_key`).
    """
    async with _turn(wanted.name), _fleet_turn(client, wanted.name):
        return await _deploy(client, wanted)


async def _deploy(client: WebApiClient, wanted: Registration) -> dict[str, Any]:
    message_ids = await _message_ids(client, wanted.messages)
    filter_ids = {table: await _filter_ids(client, table, {m: message_ids.get(m) for m in wanted.messages})
                  for table in wanted.tables}
    found = await survey(client, wanted.name)
    found.messages.update({v: k for k, v in message_ids.items()})
    found.filters.update({f: table for table, ids in filter_ids.items() for f in ids.values() if f})

    if found.endpoints:
        endpoint = found.endpoints[0]
        endpoint_id = endpoint["serviceendpointid"]
        for duplicate in found.endpoints[1:]:
            await _delete_endpoint(client, found, duplicate["serviceendpointid"])
        # authvalue is write-only, so it is always written: a changed key takes effect
        await client.update(ENDPOINTS, endpoint_id, wanted.endpoint_fields())
    else:
        endpoint_id = (await client.create(ENDPOINTS, wanted.endpoint_fields()))["id"]

    steps = found.steps.get(endpoint_id, [])
    kept: set[str] = set()
    state_steps: dict[str, str] = {}
    for message, table in wanted.wanted_steps():
        matching = found.steps_for(steps, message, table)
        for duplicate in matching[1:]:
            await _delete_step(client, found, duplicate["sdkmessageprocessingstepid"])
            kept.add(duplicate["sdkmessageprocessingstepid"])  # gone already
        fields = wanted.step_fields(message, table)
        if matching:
            step_id = matching[0]["sdkmessageprocessingstepid"]
            changes = _differs(matching[0], fields)
            if "statecode" in changes:
                changes["statuscode"] = 1
            if changes:
                await client.update(STEPS, step_id, changes)
        else:
            created = {k: v for k, v in fields.items() if k != "statecode" and v is not None}
            created.update({
                "supporteddeployment": 0,
                "asyncautodelete": not wanted.synchronous,
                "eventhandler_serviceendpoint@odata.bind": f"/{ENDPOINTS}({endpoint_id})",
                "sdkmessageid@odata.bind": f"/sdkmessages({message_ids[message]})",
            })
            filter_id = filter_ids[table][message]
            if filter_id:  # no filter: the step fires for every table
                created["sdkmessagefilterid@odata.bind"] = f"/sdkmessagefilters({filter_id})"
            step_id = (await client.create(STEPS, created))["id"]
            found.images[step_id] = []
        await _reconcile_images(client, found, step_id, wanted.images(message))
        state_steps[wanted.state_key(message, table)] = step_id
        kept.add(step_id)

    for step in steps:  # other messages, tables no longer watched (a step cannot move: it is replaced)
        if step["sdkmessageprocessingstepid"] not in kept:
            await _delete_step(client, found, step["sdkmessageprocessingstepid"])
    return {"name": wanted.name, "table": wanted.table, "tables": list(wanted.tables), "endpointId": endpoint_id,
            "steps": state_steps}


async def _reconcile_images(client: WebApiClient, found: Survey, step_id: str, wanted: dict[str, dict[str, Any]]) -> None:
    have: dict[str, dict[str, Any]] = {}
    for image in found.images.get(step_id, []):
        alias = image.get("entityalias")
        if alias in wanted and alias not in have and image.get("imagetype") == wanted[alias]["imagetype"] \
                and image.get("messagepropertyname") == wanted[alias]["messagepropertyname"]:
            have[alias] = image
        else:
            await _delete(client, IMAGES, image["sdkmessageprocessingstepimageid"])
    for alias, image in wanted.items():
        if alias not in have:
            fields = {k: v for k, v in image.items() if v is not None}
            fields["sdkmessageprocessingstepid@odata.bind"] = f"/{STEPS}({step_id})"
            await client.create(IMAGES, fields)


async def remove(client: WebApiClient, state: dict[str, Any]) -> None:
    """Delete every endpoint under the state's name (and the state's ids), with steps and images."""
    name = state.get("name") if isinstance(state, dict) else None
    if not name and not (isinstance(state, dict) and state.get("endpointId")):
        raise RegistrationError("Nothing to remove: the state has neither a registration name nor an endpoint id.")
    async with _turn(name or state["endpointId"]), _fleet_turn(client, name or state["endpointId"]):
        found = await survey(client, name) if name else Survey(endpoints=[])
        known = {e["serviceendpointid"] for e in found.endpoints}
        for endpoint_id in known:
            await _delete_endpoint(client, found, endpoint_id)
        leftover = state.get("endpointId")
        if leftover and leftover not in known:
            for step_id in (state.get("steps") or {}).values():
                await _delete(client, STEPS, step_id)
            await _delete(client, ENDPOINTS, leftover)
