"""The RemoteExecutionContext Dataverse posts to webhooks, serialized as WCF's DataContract JSON does it
(reference §12.2).

What a receiver relies on: dictionaries are arrays of `{"key", "value"}`; typed values carry
`"__type": "<Type>:http://schemas.microsoft.com/xrm/2011/Contracts"` (Entity, EntityReference,
OptionSetValue, Money); dates are `"\\/Date(<ms>)\\/"`; GUIDs, strings, numbers and booleans are
bare; members appear in alphabetical order; every `/` is escaped as `\\/` (`dumps` does that to
the finished text, which is exactly WCF's rule). A payload over the size limit loses
`ParentContext`, `InputParameters` and both image collections (`trim`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from d365_components.emulator.storage.schema import Column, Table

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
SYSTEM_STAMPS = ("modifiedon", "modifiedby", "modifiedonbehalfby")
TRIMMED = ("InputParameters", "ParentContext", "PostEntityImages", "PreEntityImages")


def typed(name: str) -> str:
    return f"{name}:{CONTRACTS}"


def wcf_date(value: str | datetime, offset: str = "") -> str:
    """`2026-11-22T07:00:00Z` -> `/Date(1795417200000)/` (escaped to `\\/` by `dumps`)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)}{offset})/"


def entity_reference(logical_name: str, row_id: str, name: str | None = None, *, with_type: bool = True) -> dict[str, Any]:
    ref: dict[str, Any] = {"Id": row_id, "KeyAttributes": [], "LogicalName": logical_name, "Name": name, "RowVersion": None}
    return {"__type": typed("EntityReference"), **ref} if with_type else ref


def attribute_value(col: Column, row: dict[str, Any]) -> Any:
    """A stored value as the SDK type Dataverse would put in an Entity's Attributes."""
    value = row.get(col.name)
    if value is None:
        return None
    kind = col.type
    if col.is_lookup:
        target = row.get(col.type_column) if col.type_column else col.targets[0]
        return entity_reference(target or col.targets[0], value)
    if kind in ("Picklist", "State", "Status"):
        return {"__type": typed("OptionSetValue"), "Value": int(value)}
    if kind == "MultiSelectPicklist":
        return [{"__type": typed("OptionSetValue"), "Value": int(v)} for v in str(value).split(",") if v]
    if kind == "Money":
        return {"__type": typed("Money"), "Value": float(value)}
    if kind == "Boolean":
        return bool(value)
    if kind == "DateTime":
        return wcf_date(value)
    if kind in ("Decimal", "Double"):
        return float(value)
    return value


def entity(table: Table, row: dict[str, Any], columns: Iterable[str] | None = None, *, with_type: bool = True) -> dict[str, Any]:
    """An Entity with the row's `columns` (all non-null ones when None); the id always included."""
    attributes, formatted = [], []
    names = list(columns) if columns is not None else [c for c, v in row.items() if v is not None]
    seen = set()
    for name in [table.primary_id, *names]:
        col = table.columns.get(name)
        if col is None or name in seen:
            continue
        seen.add(name)
        attributes.append({"key": name, "value": attribute_value(col, row)})
        if col.option_set is not None and col.type != "MultiSelectPicklist" and row.get(name) is not None:
            label = col.option_set.label(int(row[name]))
            if label is not None:
                formatted.append({"key": name, "value": label})
    body = {
        "Attributes": attributes, "EntityState": None, "FormattedValues": formatted,
        "Id": row[table.primary_id], "KeyAttributes": [], "LogicalName": table.logical_name,
        "RelatedEntities": [], "RowVersion": str(row["versionnumber"]) if row.get("versionnumber") else None,
    }
    return {"__type": typed("Entity"), **body} if with_type else body


def changed_columns(table: Table, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Columns an Update changed (what its Target carries), without the system stamps."""
    return [c for c in table.columns if c not in SYSTEM_STAMPS and c != "versionnumber"
            and before.get(c) != after.get(c)]


def target(message: str, table: Table, before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """InputParameters["Target"]: the new row (Create), the changes (Update), a reference (Delete)."""
    if message == "Delete":
        assert before is not None, "a deleted row has a before image"
        return entity_reference(table.logical_name, before[table.primary_id])
    assert after is not None, "a created or updated row has an after image"
    if message == "Update":
        assert before is not None, "an updated row has a before image"
        cols = changed_columns(table, before, after) + [c for c in SYSTEM_STAMPS if c in table.columns]
        return {**entity(table, after, cols), "RowVersion": None}
    return {**entity(table, after), "RowVersion": None}


def image(table: Table, row: dict[str, Any] | None, attributes: str | None) -> dict[str, Any] | None:
    if row is None:
        return None
    cols = [a.strip() for a in attributes.split(",") if a.strip()] if attributes else None
    return entity(table, row, cols, with_type=False)


def build(*, message: str, table: Table, before: dict[str, Any] | None, after: dict[str, Any] | None, mode: int, stage: int,
          step_id: str, images: list[dict[str, Any]], user: dict[str, Any], initiating_user: dict[str, Any], organization_id: str,
          organization_name: str, correlation_id: str, operation_id: str, request_id: str | None,
          created_on: datetime, depth: int = 1) -> dict[str, Any]:
    """The whole context, members in WCF's (alphabetical) order.

    `images` are rows of sdkmessageprocessingstepimage (`entityalias`, `imagetype` 0 pre / 1 post /
    2 both, `attributes`); `user`/`initiating_user` carry `id`, `business_unit` and `oid`."""
    row = after or before
    assert row is not None, "a write has a before or an after image"
    primary = row[table.primary_id]
    inputs = [{"key": "Target", "value": target(message, table, before, after)}]
    outputs = [{"key": "id", "value": primary}] if message == "Create" else []
    pre: list[dict[str, Any]] = []
    post: list[dict[str, Any]] = []
    for img in images:
        kind = img.get("imagetype")
        alias = img.get("entityalias") or img.get("name") or "Image"
        if kind in (0, 2) and message != "Create":
            pre.append({"key": alias, "value": image(table, before, img.get("attributes"))})
        if kind in (1, 2) and message != "Delete":
            post.append({"key": alias, "value": image(table, after, img.get("attributes"))})

    def context(stage_: int, mode_: int, parent: dict[str, Any] | None, owning: dict[str, Any] | None, pre_: list[dict[str, Any]], post_: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "BusinessUnitId": user["business_unit"],
            "CorrelationId": correlation_id,
            "Depth": depth,
            "InitiatingUserAzureActiveDirectoryObjectId": initiating_user.get("oid") or "00000000-0000-0000-0000-000000000000",
            "InitiatingUserId": initiating_user["id"],
            "InputParameters": inputs,
            "IsExecutingOffline": False,
            "IsInTransaction": mode_ == 0,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "MessageName": message,
            "Mode": mode_,
            "OperationCreatedOn": wcf_date(created_on, "+0000"),
            "OperationId": operation_id,
            "OrganizationId": organization_id,
            "OrganizationName": organization_name,
            "OutputParameters": outputs,
            "OwningExtension": owning,
            "ParentContext": parent,
            "PostEntityImages": post_,
            "PreEntityImages": pre_,
            "PrimaryEntityId": primary,
            "PrimaryEntityName": table.logical_name,
            "RequestId": request_id,
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": stage_,
            "UserAzureActiveDirectoryObjectId": user.get("oid") or "00000000-0000-0000-0000-000000000000",
            "UserId": user["id"],
        }

    parent = context(30, 0, None, None, [], [])
    step = entity_reference("sdkmessageprocessingstep", step_id, with_type=False)
    return context(stage, mode, parent, step, pre, post)


def dumps(context: dict[str, Any]) -> bytes:
    """Compact JSON with every `/` escaped as `\\/`, as WCF writes it."""
    text = json.dumps(context, separators=(",", ":"), ensure_ascii=False)
    return text.replace("/", "\\/").encode("utf-8")


def trim(context: dict[str, Any]) -> dict[str, Any]:
    """What is sent when the payload is too large: the parent context, parameters and images removed."""
    return {k: v for k, v in context.items() if k not in TRIMMED}
