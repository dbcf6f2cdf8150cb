"""Queue work: put a case or activity in a queue, and pick a queue item for a worker.

Add To Queue names the item by its table and ID (the action writes the typed entity reference
Dataverse's AddToQueue needs) and returns the queue item's ID; an item already waiting in another
queue moves. Pick From Queue assigns the item to a user (the connection's user by default) and can
take it out of the queue.
"""

from __future__ import annotations

from typing import Any

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    EXAMPLE_ID,
    NAMESPACE,
    entity_id_field,
    entity_type_field,
    plain_id,
    record_id_field,
)
from d365_components.actions._lookups import metadata_for

__all__ = ["AddToQueue", "PickFromQueue"]

_EXAMPLE_ID = EXAMPLE_ID
#: tables whose rows are usually queued, with their logical names (when metadata is not readable)
KNOWN_TABLES = {"incidents": "incident", "tasks": "task", "emails": "email", "phonecalls": "phonecall",
                "appointments": "appointment", "letters": "letter", "faxes": "fax"}
ACTIVITIES = {"task", "email", "phonecall", "appointment", "letter", "fax"}


async def entity_reference(ctx: Context, table_name: str, row_id: str) -> dict[str, str]:
    """``{"@odata.type": "Microsoft.Dynamics.CRM.<table>", "<primary key>": id}`` for an action parameter."""
    table = await metadata_for(ctx.web_api).table(table_name, pointer="/targetTable")
    logical = table.logical_name or KNOWN_TABLES.get(table.entity_set, table.entity_set)
    primary = table.primary_id or ("activityid" if logical in ACTIVITIES else f"{logical}id")
    return {"@odata.type": f"{NAMESPACE}{logical}", primary: plain_id(row_id)}


class AddToQueue(Action):
    """Put a case or an activity in a queue (moving it if it waits in another) and return the queue item."""

    key = "dynamics365.add_to_queue"
    label = "Add To Queue"
    group = "Service"

    class Inputs(InputModel):
        queue_id: str = record_id_field("Queue ID", "queues", "The GUID of the queue.")
        target_table: str = entity_type_field(
            title="Item table",
            description="The table of the item to queue: incidents, tasks, emails, phonecalls, appointments (entity set or logical name).",
            examples=["incidents", "tasks"],
        )
        target_id: str = entity_id_field(
            title="Item ID", description="The GUID of the case or activity to queue.", table_input="targetTable",
        )
        source_queue_id: str | None = record_id_field(
            "From queue", "queues", "The GUID of the queue to move the item out of (the item's current queue is found when empty).", None,
        )

    output_schema = {
        "type": "object",
        "required": ["queueItemId", "queueId", "targetTable", "targetId"],
        "properties": {
            "queueItemId": {"type": "string", "description": "The queue item that now holds the item."},
            "queueId": {"type": "string", "description": "The queue."},
            "targetTable": {"type": "string", "description": "The item's table."},
            "targetId": {"type": "string", "description": "The item."},
        },
    }
    example = {"queueItemId": "5aae8258-4878-eb11-a812-000d3a8b3ec6", "queueId": _EXAMPLE_ID, "targetTable": "incidents", "targetId": "59ae8258-4878-eb11-a812-000d3a8b3ec6"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        queue_id = plain_id(inputs.queue_id)
        parameters: dict[str, Any] = {"Target": await entity_reference(ctx, inputs.target_table, inputs.target_id)}
        if inputs.source_queue_id:
            parameters["SourceQueueId"] = {"@odata.type": f"{NAMESPACE}queue", "queueid": plain_id(inputs.source_queue_id)}
        answer = await ctx.web_api.execute("AddToQueue", parameters, bound_to=("queues", queue_id)) or {}
        return {
            "queueItemId": answer.get("QueueItemId"),
            "queueId": queue_id,
            "targetTable": inputs.target_table,
            "targetId": plain_id(inputs.target_id),
        }


class PickFromQueue(Action):
    """Assign a queue item to a user (the connection's user by default), optionally removing it from the queue."""

    key = "dynamics365.pick_from_queue"
    label = "Pick From Queue"
    group = "Service"

    class Inputs(InputModel):
        queue_item_id: str = record_id_field(
            "Queue item ID", "queueitems", "The GUID of the queue item (from Add To Queue or a queueitems query)."
        )
        worker_id: str | None = record_id_field(
            "Worker", "systemusers", "The GUID (systemuserid) of the user who works on the item; the connection's user when empty.", None,
        )
        remove_queue_item: bool = InputField(
            False, title="Remove from queue", description="Also take the item out of the queue (it stays assigned to the worker)."
        )

    output_schema = {
        "type": "object",
        "required": ["queueItemId", "workerId", "removed"],
        "properties": {
            "queueItemId": {"type": "string", "description": "The queue item."},
            "workerId": {"type": "string", "description": "The user now working on it."},
            "removed": {"type": "boolean", "description": "Whether it was taken out of the queue."},
        },
    }
    example = {"queueItemId": "5aae8258-4878-eb11-a812-000d3a8b3ec6", "workerId": "2138bd90-ec19-ea11-a811-000d3a334e11", "removed": False}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        worker_id = plain_id(inputs.worker_id or (await ctx.web_api.whoami())["UserId"])
        item_id = plain_id(inputs.queue_item_id)
        await ctx.web_api.execute(
            "PickFromQueue", {"QueueItemId": item_id, "WorkerId": worker_id, "RemoveQueueItem": inputs.remove_queue_item}
        )
        return {"queueItemId": item_id, "workerId": worker_id, "removed": inputs.remove_queue_item}
