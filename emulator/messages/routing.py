"""Case routing: the `routingrule` / `routingruleitem` tables (added by `add_tables`), `POST
ApplyRoutingRule` and `POST RemoveFromQueue`. Importing this module registers the messages.

ApplyRoutingRule {"Target": <incident reference>} runs the active routing rule set (statecode 1;
one is active at a time): its items in `sequencenumber` order, the first whose `conditionxml`
matches the case wins. `conditionxml` is FetchXML on incident — a whole `<fetch>` or a bare
`<filter>` — evaluated with the case's id added; an item without a condition matches every case.
The winning item routes the case to `routedqueueid` (a queue item is created, or the case's active
queue item moves there) and/or assigns it to `assignobjectid` (a user or team). No active rule set
is Dataverse's error; no matching item leaves the case where it is. Both answer 204.

RemoveFromQueue {"QueueItemId": <guid>} takes the item out of its queue: the queue item becomes
Inactive, as PickFromQueue's RemoveQueueItem does.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

from d365_components.emulator.messages.crm_parameters import (
    insert_row,
    reference_param,
    required_param,
    update_row,
)
from d365_components.emulator.messages.registry import Bound, register_action
from d365_components.emulator.protocol.errors import (
    INVALID_OPERATION,
    DataverseError,
    bad_request,
    record_not_found,
)
from d365_components.emulator.protocol.literals import GUID_RE
from d365_components.emulator.records.fetchxml import execute_fetch
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.columns import (
    LookupSpec,
    integer_column,
    memo_column,
    state_option_sets,
    string_column,
)
from d365_components.emulator.storage.store import Store, utc_now
from d365_components.emulator.storage.table_builder import TableBuilder

NEW_TABLES = ("routingrule", "routingruleitem")


def add_tables(store: Store) -> None:
    """Add routingrule and routingruleitem to a live schema, once."""
    schema = store.schema
    if all(name in schema.tables for name in NEW_TABLES) or "queue" not in schema.tables:
        return
    with store.lock:
        builder = TableBuilder(schema)
        if "routingrule" not in schema.tables:
            builder.table("routingrule", "routingrules", "routingruleid", "name", 8181, "Routing Rule Set", "Routing Rule Sets", [
                string_column("name", 160, "Name"), memo_column("description", 2000, "Description"),
            ], state=state_option_sets({0: "Draft", 1: "Active"}, {1: ("Draft", 0), 2: ("Active", 1)}), schema_name="RoutingRule")
        if "routingruleitem" not in schema.tables:
            builder.table("routingruleitem", "routingruleitems", "routingruleitemid", "name", 8199, "Rule Item", "Rule Items", [
                string_column("name", 160, "Name"), memo_column("description", 2000, "Description"),
                memo_column("conditionxml", 1048576, "Condition"), integer_column("sequencenumber", "Sequence Number", 0),
                LookupSpec("routingruleid", {"routingrule": ("routingrule_entries", "routingruleid")}, "Routing Rule Set"),
                LookupSpec("routedqueueid", {"queue": ("queue_routingruleitem", "routedqueueid")}, "Add to queue"),
                LookupSpec("assignobjectid", {"systemuser": ("systemuser_routingruleitem", "assignobjectid_systemuser"),
                                              "team": ("team_routingruleitem", "assignobjectid_team")}, "Assign to"),
            ], ownership="None", schema_name="RoutingRuleItem")
        for rel in builder.pending:
            if rel.schema_name not in schema.relationships:
                schema.add_relationship(rel)
        schema.link()
        for name in NEW_TABLES:
            store.create_table(schema.tables[name])


def matches(ctx: Ctx, condition: str | None, case_id: str) -> bool:
    """Whether the case satisfies the item's FetchXML condition (none: every case)."""
    if not condition or not condition.strip():
        return True
    try:
        root = ElementTree.fromstring(condition)
    except ElementTree.ParseError as exc:
        raise bad_request(f"The routing rule item condition is not valid FetchXML: {exc}") from exc
    if root.tag == "filter":
        fetch = ElementTree.Element("fetch")
        entity = ElementTree.SubElement(fetch, "entity", name="incident")
        entity.append(root)
    else:
        found = root.find("entity")
        if found is None:
            raise bad_request("The routing rule item condition has no <entity>.")
        fetch, entity = root, found
    for child in list(entity):
        if child.tag in ("attribute", "all-attributes", "order"):
            entity.remove(child)
    ElementTree.SubElement(entity, "attribute", name="incidentid")
    case_filter = ElementTree.SubElement(entity, "filter")
    ElementTree.SubElement(case_filter, "condition", attribute="incidentid", operator="eq", value=case_id)
    status, _, body = execute_fetch(ctx.store, "incidents", ElementTree.tostring(fetch, encoding="unicode"), user_id=ctx.user_id)
    if status != 200:
        raise bad_request(f"The routing rule item condition could not be evaluated: {body.get('error', {}).get('message')}")
    return bool(body.get("value"))


def route_to_queue(ctx: Ctx, case: dict[str, Any], queue_id: str) -> None:
    existing = ctx.store.select("queueitem", "t0.objectid = ? AND t0.statecode = 0", [case["incidentid"]], limit=1)
    if existing:
        update_row(ctx, "queueitem", existing[0], {"queueid": queue_id, "enteredon": utc_now()})
    else:
        insert_row(ctx, "queueitem", {"title": case.get("title"), "enteredon": utc_now(), "objecttypecode": "incident",
                                      "objectid": case["incidentid"], "objectidtype": "incident", "queueid": queue_id})


def apply_routing_rule(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """Route a case by the active routing rule set's first matching item."""
    _, case = reference_param(ctx, required_param(params, "Target", "ApplyRoutingRule"), "Target", ("incident",))
    rules = ctx.store.select("routingrule", "t0.statecode = 1", order="t0.modifiedon DESC", limit=1)
    if not rules:
        raise DataverseError(400, INVALID_OPERATION, "There is no active routing rule set: activate one before routing cases.")
    items = ctx.store.select("routingruleitem", "t0.routingruleid = ?", [rules[0]["routingruleid"]],
                             order="t0.sequencenumber, t0.createdon")
    for item in items:
        if matches(ctx, item.get("conditionxml"), case["incidentid"]):
            with ctx.store.transaction():
                if item.get("routedqueueid"):
                    route_to_queue(ctx, case, item["routedqueueid"])
                if item.get("assignobjectid"):
                    update_row(ctx, "incident", case, {"ownerid": item["assignobjectid"],
                                                       "owneridtype": item.get("assignobjectidtype") or "systemuser"})
            break
    return Reply.empty(204)


def remove_from_queue(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """Take an item out of its queue (the queue item becomes Inactive)."""
    value = required_param(params, "QueueItemId", "RemoveFromQueue")
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Guid' (parameter 'QueueItemId').")
    item = ctx.store.get("queueitem", value.lower())
    if item is None:
        raise record_not_found("queueitem", value)
    if item.get("statecode") != 0:
        raise DataverseError(400, INVALID_OPERATION, f"The queue item with Id {value} is no longer in a queue.")
    with ctx.store.transaction():
        update_row(ctx, "queueitem", item, {"statecode": 1, "statuscode": 2})
    return Reply.empty(204)


register_action("ApplyRoutingRule", apply_routing_rule)
register_action("RemoveFromQueue", remove_from_queue)
