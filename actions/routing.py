"""Service routing and rollups as typed actions: Apply Routing Rule, Release and Remove queue items,
Recalculate Rollup (with a dropdown of the table's rollup columns).

Apply Routing Rule sends ApplyRoutingRule for a case: Dataverse runs the active routing rule set
and routes the case (to a queue, or to a user or team); the action reads back where the case went
(its active queue item and owner). Release gives a picked queue item back to its queue
(ReleaseToQueue); Remove takes the item out of the queue (RemoveFromQueue). Recalculate Rollup calls
CalculateRollupField for one rollup column (AttributeMetadata.SourceType 2) of a row.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from d365_components import Action, Context, DataSource, InputField, InputModel
from d365_components.actions._common import (
    FORMATTED,
    NAME_PATTERN,
    NAMESPACE,
    entity_id_field,
    entity_type_field,
    plain_id,
    record_id_field,
)
from d365_components.actions._lookups import metadata_for
from d365_components.actions.metadata import label_text, on_table, table_path

__all__ = ["ApplyRoutingRule", "RecalculateRollup", "ReleaseQueueItem", "RemoveQueueItem", "RollupColumns"]

ROLLUP_COLUMNS = "dynamics365.rollup_columns"
#: AttributeMetadata.SourceType of a rollup column
ROLLUP_SOURCE_TYPE = 2


class ApplyRoutingRule(Action):
    """Route a case by the active routing rule set, and return the queue and owner it landed with."""

    key = "dynamics365.apply_routing_rule"
    label = "Apply Routing Rule"
    group = "Service"

    class Inputs(InputModel):
        case_id: str = record_id_field("Case ID", "incidents", "The GUID of the case (incident) to route.")

    output_schema = {
        "type": "object",
        "required": ["caseId", "queueItemId", "queueId", "queueName", "ownerId", "ownerName"],
        "properties": {
            "caseId": {"type": "string", "description": "The routed case."},
            "queueItemId": {"type": ["string", "null"], "description": "The case's active queue item after routing (null: in no queue)."},
            "queueId": {"type": ["string", "null"], "description": "The queue the case waits in."},
            "queueName": {"type": ["string", "null"], "description": "That queue's name."},
            "ownerId": {"type": ["string", "null"], "description": "The case's owner after routing."}, "ownerName": {"type": ["string", "null"], "description": "The owner's name."},
        },
    }
    example = {"caseId": "59ae8258-4878-eb11-a812-000d3a8b3ec6", "queueItemId": "5aae8258-4878-eb11-a812-000d3a8b3ec6",
               "queueId": "7eb682f1-ca75-e511-80d4-00155d2a68d1", "queueName": "Tier 2 Support",
               "ownerId": "2138bd90-ec19-ea11-a811-000d3a334e11", "ownerName": "Nancy Davolio"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        case_id = plain_id(inputs.case_id)
        await ctx.web_api.execute("ApplyRoutingRule", {"Target": {"@odata.type": f"{NAMESPACE}incident", "incidentid": case_id}})
        case = await ctx.web_api.retrieve("incidents", case_id, select=["_ownerid_value"], annotations=FORMATTED)
        items = await ctx.web_api.get_json("queueitems", params={
            "$select": "queueitemid,_queueid_value", "$filter": f"_objectid_value eq {case_id} and statecode eq 0", "$top": "1"},
            prefer=[f'odata.include-annotations="{FORMATTED}"'])
        item = (items.get("value") or [{}])[0]
        return {"caseId": case_id, "queueItemId": item.get("queueitemid"), "queueId": item.get("_queueid_value"),
                "queueName": item.get(f"_queueid_value@{FORMATTED}"), "ownerId": case.get("_ownerid_value"),
                "ownerName": case.get(f"_ownerid_value@{FORMATTED}")}


def _queue_item_id() -> Any:
    return record_id_field("Queue item ID", "queueitems", "The GUID of the queue item (from Add To Queue or a queueitems query).")


_QUEUE_ITEM_OUTPUT = {"type": "object", "required": ["queueItemId"],
                      "properties": {"queueItemId": {"type": "string", "description": "The queue item."}}}


class ReleaseQueueItem(Action):
    """Give a picked queue item back to its queue: no one works on it any more."""

    key = "dynamics365.release_queue_item"
    label = "Release Queue Item"
    group = "Service"

    class Inputs(InputModel):
        queue_item_id: str = _queue_item_id()

    output_schema = _QUEUE_ITEM_OUTPUT
    example = {"queueItemId": "5aae8258-4878-eb11-a812-000d3a8b3ec6"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        item_id = plain_id(inputs.queue_item_id)
        await ctx.web_api.execute("ReleaseToQueue", {}, bound_to=("queueitems", item_id))
        return {"queueItemId": item_id}


class RemoveQueueItem(Action):
    """Take an item out of its queue (the case or activity itself stays)."""

    key = "dynamics365.remove_queue_item"
    label = "Remove Queue Item"
    group = "Service"

    class Inputs(InputModel):
        queue_item_id: str = _queue_item_id()

    output_schema = _QUEUE_ITEM_OUTPUT
    example = {"queueItemId": "5aae8258-4878-eb11-a812-000d3a8b3ec6"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        item_id = plain_id(inputs.queue_item_id)
        await ctx.web_api.execute("RemoveFromQueue", {"QueueItemId": item_id})
        return {"queueItemId": item_id}


# ---- rollups ---------------------------------------------------------------------------------

class RollupColumns(DataSource):
    """A table's rollup columns (SourceType 2), for Recalculate Rollup's dropdown."""

    key = ROLLUP_COLUMNS
    label = "Rollup Columns"

    class Inputs(InputModel):
        table: str = InputField(title="Table", description="The table: entity set name (accounts) or logical name (account).",
                                examples=["accounts"], pattern=NAME_PATTERN.replace("^", "^=?", 1))

        @field_validator("table")
        @classmethod
        def _literal(cls, value: str) -> str:
            return value.removeprefix("=")

    async def fetch(self, ctx: Context, inputs: Inputs) -> list[dict[str, Any]]:
        logical = (await metadata_for(ctx.web_api).table(inputs.table, pointer="/table")).logical_name or inputs.table

        async def read(name: str) -> dict[str, Any]:
            return await ctx.web_api.get_json(f"{table_path(name)}/Attributes", params={"$select": "LogicalName,DisplayName,SourceType"})

        body = await on_table(ctx, logical, read)
        choices = [{"label": f"{label_text(c.get('DisplayName')) or c['LogicalName']} ({c['LogicalName']})", "value": c["LogicalName"]}
                   for c in body.get("value", []) if c.get("SourceType") == ROLLUP_SOURCE_TYPE]
        return sorted(choices, key=lambda c: str(c["label"]).lower())


class RecalculateRollup(Action):
    """Recompute one rollup column of a row now (instead of waiting for the hourly job) and return its value."""

    key = "dynamics365.recalculate_rollup"
    label = "Recalculate Rollup"
    group = "Other"

    class Inputs(InputModel):
        entity_type: str = entity_type_field(description="The table of the row: accounts, ... (entity set or logical name).",
                                             examples=["accounts"])
        entity_id: str = entity_id_field(description="The GUID of the row.")
        column: str = InputField(title="Rollup column", description="The rollup column to recompute (opendeals, openrevenue...).",
                                 examples=["openrevenue"], data_source=ROLLUP_COLUMNS, data_source_inputs={"table": "entityType"},
                                 pattern=NAME_PATTERN)

    output_schema = {
        "type": "object", "required": ["entityId", "column", "value", "calculatedOn", "state"],
        "properties": {"entityId": {"type": "string", "description": "The row."},
                       "column": {"type": "string", "description": "The rollup column recomputed."},
                       "value": {"description": "The recomputed value."},
                       "calculatedOn": {"type": ["string", "null"], "description": "<column>_date."},
                       "state": {"type": ["integer", "null"], "description": "<column>_state (1 = calculated)."}},
    }
    example = {"entityId": "7eb682f1-ca75-e511-80d4-00155d2a68d1", "column": "openrevenue", "value": 250000.0,
               "calculatedOn": "2025-06-30T09:00:00Z", "state": 1}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        table = await metadata_for(ctx.web_api).table(inputs.entity_type)
        row_id = plain_id(inputs.entity_id)
        target = {"@odata.id": f"{table.entity_set}({row_id})"}
        answer = await ctx.web_api.execute("CalculateRollupField", {"Target": target, "FieldName": inputs.column}, function=True) or {}
        return {"entityId": row_id, "column": inputs.column, "value": answer.get(inputs.column),
                "calculatedOn": answer.get(f"{inputs.column}_date"), "state": answer.get(f"{inputs.column}_state")}
