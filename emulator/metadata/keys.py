"""Alternate keys through the Web API: POST EntityDefinitions(...)/Keys, DELETE .../Keys(id).

Dataverse answers a new key with 204 and `OData-EntityId`, then builds its unique index in a system
job: EntityKeyIndexStatus goes Pending -> InProgress -> Active, or Failed when existing rows hold
duplicate values. Until it is Active, requests that address rows by the key are refused
(records/rows.py). The emulator's job is a short background thread, mirrored in an asyncoperation
row when the org has that table (state 0/0 Waiting For Resources, 2/20 In Progress, 3/30 Succeeded or
3/31 Failed; its operationtype is left empty: the value Dataverse uses for index jobs is UNCONFIRMED).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from typing import Any

from d365_components.emulator.metadata.customization import label_text
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    OBJECT_DOES_NOT_EXIST,
    DataverseError,
    bad_request,
)
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import AlternateKey, Table, new_id
from d365_components.emulator.storage.store import Store, q, utc_now

STEP_SECONDS = 0.2                    # how long each index status lasts before the next


def create_key(ctx: Ctx, t: Table) -> Reply:
    body = ctx.json_body()
    schema_name = body.get("SchemaName")
    if not isinstance(schema_name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*_[A-Za-z0-9_]+", schema_name):
        raise bad_request("SchemaName is required and must start with a customization prefix, e.g. 'new_code_key'.",
                          INVALID_ARGUMENT)
    columns = body.get("KeyAttributes")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise bad_request("KeyAttributes must list the logical names of the key's columns.", INVALID_ARGUMENT)
    for name in columns:
        col = t.columns.get(name)
        if col is None:
            raise bad_request(f"The attribute '{name}' does not exist on entity '{t.logical_name}'.", INVALID_ARGUMENT)
        if col.type not in ("String", "Integer", "BigInt", "Decimal", "DateTime", "Lookup", "Picklist"):
            raise bad_request(f"The attribute '{name}' of type {col.type} cannot be part of a key.", INVALID_ARGUMENT)
    name = schema_name.lower()
    if any(k.name.lower() == name for k in t.keys):
        raise bad_request(f"An entity key named {schema_name} already exists on entity {t.logical_name}.",
                          INVALID_ARGUMENT)
    if any(set(k.columns) == set(columns) for k in t.keys):
        raise bad_request(f"An entity key with the attributes {', '.join(columns)} already exists on entity "
                          f"{t.logical_name}.", INVALID_ARGUMENT)
    key = AlternateKey(schema_name, tuple(c.lower() for c in columns), display=label_text(body.get("DisplayName"), "", False),
                       metadata_id=new_id(), status="Pending", is_custom=True)
    t.keys.append(key)
    ctx.schema.version += 1
    job = _IndexJob(ctx.store, t, key, ctx.user_id)
    threading.Thread(target=job.run, daemon=True, name=f"key-{name}").start()
    # The table addressed by its LogicalName, as create_attribute does: the key's id is then the only
    # "(guid)" in the URL, which is what Microsoft's SDK reads (its _extract_id_from_header takes the first)
    url = f"{ctx.api}/EntityDefinitions(LogicalName='{t.logical_name}')/Keys({key.metadata_id})"
    return Reply.empty(204, {"OData-EntityId": url})


def _index_name(t: Table, key: AlternateKey) -> str:
    return "uk_" + t.logical_name + "_" + key.name


class _IndexJob:
    """The system job: InProgress, then the unique index; a duplicate makes the key Failed."""

    def __init__(self, store: Store, t: Table, key: AlternateKey, user: str):
        self.store, self.table, self.key, self.user = store, t, key, user
        self.job_id = ""
        if "asyncoperation" in store.schema.tables:
            row = store.insert("asyncoperation", {
                "name": f"Create index for the entity key {key.name} of {t.logical_name}",
                "primaryentitytype": t.logical_name, "statecode": 0, "statuscode": 0}, user=user)
            self.job_id = row["asyncoperationid"]
            key.job_id = self.job_id

    def _state(self, state: int, status: int, **values: Any) -> None:
        if self.job_id and "asyncoperation" in self.store.schema.tables:
            self.store.update("asyncoperation", self.job_id, {"statecode": state, "statuscode": status, **values},
                              user=self.user)

    def run(self) -> None:
        t, key = self.table, self.key
        time.sleep(STEP_SECONDS)
        key.status = "InProgress"
        self._state(2, 20, startedon=utc_now())
        time.sleep(STEP_SECONDS)
        where = " AND ".join(f"{q(c)} IS NOT NULL" for c in key.columns)
        try:
            with self.store.lock:
                if key not in t.keys:
                    return
                self.store.conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {q(_index_name(t, key))} ON "
                                        f"{q(t.logical_name)} ({', '.join(map(q, key.columns))}) WHERE {where}")
        except sqlite3.IntegrityError:
            key.status = "Failed"
            message = f"The entity key {key.name} cannot be activated: {t.logical_name} rows hold duplicate values."
            self._state(3, 31, completedon=utc_now(), message=message, friendlymessage=message)
            return
        key.status = "Active"
        self._state(3, 30, completedon=utc_now())


def find_key(t: Table, text: str) -> AlternateKey:
    value = text.strip().strip("'").lower()
    value = value.removeprefix("logicalname=").strip("'")
    for k in t.keys:
        if value in (k.metadata_id, k.name.lower()):
            return k
    raise DataverseError(404, OBJECT_DOES_NOT_EXIST, f"Could not find entity key with id '{value}' on entity "
                         f"'{t.logical_name}'.")


def delete_key(ctx: Ctx, t: Table, key: AlternateKey) -> Reply:
    if not key.is_custom:
        raise DataverseError(400, "0x8004023b", f"The entity key '{key.name}' is a system key and cannot be deleted.")
    with ctx.store.lock:
        t.keys.remove(key)
        ctx.store.conn.execute(f"DROP INDEX IF EXISTS {q(_index_name(t, key))}")
        ctx.schema.version += 1
    return Reply.empty(204)
