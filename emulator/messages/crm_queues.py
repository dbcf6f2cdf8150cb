"""Queue messages: `queues(<id>)/Microsoft.Dynamics.CRM.AddToQueue` puts a case or activity in a queue (moving it if it already waits in one) and answers its `QueueItemId`; `PickFromQueue` assigns a worker (and can take the item out of the queue); `queueitems(<id>)/...ReleaseToQueue` clears it. Importing this module registers them."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.messages.crm_parameters import (
    insert_row,
    optional_reference_param,
    reference_param,
    required_param,
    update_row,
)
from d365_components.emulator.messages.registry import NAMESPACE, Bound, register_action
from d365_components.emulator.protocol.errors import (
    INVALID_OPERATION,
    DataverseError,
    bad_request,
    record_not_found,
)
from d365_components.emulator.protocol.literals import GUID_RE
from d365_components.emulator.records.write import convert_body
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.store import utc_now

QUEUE_TARGETS = ("task", "email", "phonecall", "appointment", "incident")


# ---- queues -------------------------------------------------------------------------------------

def add_to_queue(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """Put a case or activity in the bound queue; an item already waiting in a queue moves here."""
    assert bound is not None, "registered bound to queue"
    queue = bound.row
    if queue is None:
        raise bad_request("AddToQueue is bound to one queue: queues(<id>)/Microsoft.Dynamics.CRM.AddToQueue.")
    if queue.get("statecode") != 0:
        raise DataverseError(400, INVALID_OPERATION, f"The queue with Id {queue['queueid']} is inactive.")
    target_table, target = reference_param(ctx, required_param(params, "Target", "AddToQueue"), "Target", QUEUE_TARGETS)
    target_id = target[target_table.primary_id]
    items = ctx.schema.tables["queueitem"]
    extra: dict[str, Any] = {}
    if isinstance(params.get("QueueItemProperties"), dict):
        properties = {k: v for k, v in params["QueueItemProperties"].items()
                      if k not in ("@odata.type", "queueitemid", "queueid", "objectid")}
        extra, _ = convert_body(ctx, items, properties, creating=True)
    source = optional_reference_param(ctx, params, "SourceQueueId", ("queue",))
    where, args = "t0.objectid = ? AND t0.statecode = 0", [target_id]
    if source is not None:
        where, args = where + " AND t0.queueid = ?", args + [source[1]["queueid"]]
    existing = ctx.store.select("queueitem", where, args, limit=1)
    with ctx.store.transaction():
        if existing:
            item = update_row(ctx, "queueitem", existing[0], {"queueid": queue["queueid"], "enteredon": utc_now(),
                                                             **extra})
        else:
            item = insert_row(ctx, "queueitem", {
                "title": target.get(target_table.primary_name), "enteredon": utc_now(),
                "objecttypecode": target_table.logical_name, "objectid": target_id,
                "objectidtype": target_table.logical_name, "queueid": queue["queueid"], **extra})
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{NAMESPACE}AddToQueueResponse",
                            "QueueItemId": item["queueitemid"]})


def _guid_param(params: dict[str, Any], name: str, message: str) -> str:
    value = required_param(params, name, message)
    if isinstance(value, dict):           # an entity parameter given as a reference
        value = next((v for k, v in value.items() if not k.startswith("@")), None)
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Guid' (parameter '{name}').")
    return value.lower()


def pick_from_queue(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """Assign the queue item to a worker; RemoveQueueItem also takes it out of the queue."""
    item_id = _guid_param(params, "QueueItemId", "PickFromQueue")
    worker_id = _guid_param(params, "WorkerId", "PickFromQueue")
    remove = params.get("RemoveQueueItem", False)
    if not isinstance(remove, bool):
        raise bad_request(f"Cannot convert the literal '{remove}' to the expected type 'Edm.Boolean' "
                          "(parameter 'RemoveQueueItem').")
    item = ctx.store.get("queueitem", item_id)
    if item is None:
        raise record_not_found("queueitem", item_id)
    if ctx.store.get("systemuser", worker_id) is None:
        raise record_not_found("systemuser", worker_id)
    if item.get("statecode") != 0:
        raise DataverseError(400, INVALID_OPERATION, f"The queue item with Id {item_id} is no longer in a queue.")
    changes: dict[str, Any] = {"workerid": worker_id}
    if remove:
        changes["statecode"] = 1
    with ctx.store.transaction():
        update_row(ctx, "queueitem", item, changes)
    return Reply.empty(204)


def release_to_queue(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """Give a picked item back to its queue (no worker)."""
    assert bound is not None, "registered bound to queueitem"
    item = bound.row
    if item is None:
        raise bad_request("ReleaseToQueue is bound to one queue item: queueitems(<id>)/Microsoft.Dynamics.CRM.ReleaseToQueue.")
    with ctx.store.transaction():
        update_row(ctx, "queueitem", item, {"workerid": None})
    return Reply.empty(204)


register_action("AddToQueue", add_to_queue, bound_to="queue")
register_action("PickFromQueue", pick_from_queue)
register_action("ReleaseToQueue", release_to_queue, bound_to="queueitem")
