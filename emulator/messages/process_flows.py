"""Business process flows: flow instances kept consistent, and `RetrieveActivePath` /
`RetrieveProcessInstances`. Importing this module registers the two functions; `install(store)`
adds the instance listener.

A flow is a `workflow` row with category 4 whose `uniquename` is its instance table
(`opportunitysalesprocess`...); its stages are `processstage` rows (`processid`). Stage order and
the fields a stage asks for are read from `processstage.clientdata`, in the emulator's simple
representation (Dataverse keeps a much larger stage JSON there):

    {"order": 1, "steps": [{"attribute": "customerneed", "label": "Customer Need", "required": true}]}

Stages without an order sort by `stagecategory`. In Dataverse the app creates a flow instance when a
record is opened in a form; through the Web API an instance exists only once a client POSTs it to
the flow's entity set (`opportunitysalesprocesses` with `opportunityid@odata.bind` and
`processid@odata.bind`). Like Dataverse, an instance created without `activestageid` starts at the
flow's first stage, `traversedpath` (comma-separated stage ids) starts with the active stage, and a
stage change stamps `activestagestartedon`; the record's `processid`, `stageid` and `traversedpath`
follow the instance.
"""

from __future__ import annotations

import json
from typing import Any

from d365_components.emulator import defaults
from d365_components.emulator.messages.crm_parameters import required_param
from d365_components.emulator.messages.registry import NAMESPACE, Bound, register_function
from d365_components.emulator.protocol.errors import bad_request, record_not_found
from d365_components.emulator.protocol.literals import GUID_RE
from d365_components.emulator.records.representation import represent
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Table
from d365_components.emulator.storage.store import Store, utc_now

INSTANCE_ID = "businessprocessflowinstanceid"


def stage_data(stage: dict[str, Any]) -> dict[str, Any]:
    """The stage's clientdata as a dict (empty when missing or not JSON)."""
    try:
        data = json.loads(stage.get("clientdata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def ordered_stages(store: Store, process_id: str) -> list[dict[str, Any]]:
    """The flow's stages in path order: clientdata `order`, else stagecategory, then creation."""
    stages = store.select("processstage", "t0.processid = ?", [process_id])

    def key(stage: dict[str, Any]) -> tuple[float, str]:
        order = stage_data(stage).get("order")
        rank = order if isinstance(order, int | float) else (stage.get("stagecategory") or 0)
        return float(rank), str(stage.get("createdon") or "")

    return sorted(stages, key=key)


def is_instance_table(table: Table | None) -> bool:
    return table is not None and table.primary_id == INSTANCE_ID and "activestageid" in table.columns


def record_column(table: Table, entity: str) -> str | None:
    """The instance's lookup to a record of `entity` (`opportunityid`, or `bpf_<entity>id` for custom flows)."""
    for name in (f"{entity}id", f"bpf_{entity}id"):
        if name in table.columns:
            return name
    return None


# ---- keeping instances consistent ---------------------------------------------------------------

def install(store: Store) -> None:
    """Listen for flow instance writes (once per store)."""
    if "process_flows" in store.installed:
        return

    def on_write(message: str, table_name: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        table = store.schema.tables.get(table_name)
        if after is None or message not in ("Create", "Update") or not is_instance_table(table):
            return
        assert table is not None
        if before is not None and before.get("activestageid") == after.get("activestageid"):
            return
        _settle(store, table, after, created=before is None)

    store.listeners.append(on_write)
    store.installed.add("process_flows")


def _settle(store: Store, table: Table, row: dict[str, Any], *, created: bool) -> None:
    changes: dict[str, Any] = {"activestagestartedon": utc_now()}
    stage_id = row.get("activestageid")
    if created and not stage_id and row.get("processid"):
        stages = ordered_stages(store, row["processid"])
        if stages:
            stage_id = changes["activestageid"] = stages[0]["processstageid"]
    if created and not row.get("name") and row.get("processid"):
        flow = store.get("workflow", row["processid"])
        changes["name"] = flow.get("name") if flow else None
    if stage_id and not row.get("traversedpath"):
        changes["traversedpath"] = stage_id
    store.update(table.logical_name, row[INSTANCE_ID], changes, user=defaults.APP_USER_ID)
    flow = store.get("workflow", row["processid"]) if row.get("processid") else None
    entity = (flow or {}).get("primaryentity")
    column = record_column(table, entity) if entity else None
    target = store.schema.tables.get(entity or "")
    if column and row.get(column) and target is not None:
        mirrored = {"processid": row["processid"], "stageid": stage_id,
                    "traversedpath": changes.get("traversedpath", row.get("traversedpath"))}
        mirrored = {k: v for k, v in mirrored.items() if k in target.columns}
        if mirrored and store.get(entity or "", row[column]) is not None:
            store.update(target.logical_name, row[column], mirrored, user=defaults.APP_USER_ID)


# ---- the functions -------------------------------------------------------------------------------

def _guid(value: Any, name: str) -> str:
    if not isinstance(value, str) or not GUID_RE.fullmatch(value.strip("{}")):
        raise bad_request(f"The parameter '{name}' must be a GUID.")
    return value.strip("{}").lower()


def _flows(ctx: Ctx, entity: str | None = None) -> list[dict[str, Any]]:
    where, params = "t0.category = 4", []
    if entity is not None:
        where, params = where + " AND t0.primaryentity = ?", [entity]
    return [f for f in ctx.store.select("workflow", where, params)
            if is_instance_table(ctx.schema.tables.get(f.get("uniquename") or ""))]


def _find_instance(ctx: Ctx, instance_id: str) -> tuple[Table, dict[str, Any]]:
    for flow in _flows(ctx):
        table = ctx.schema.tables[flow["uniquename"]]
        row = ctx.store.get(table.logical_name, instance_id)
        if row is not None:
            return table, row
    raise record_not_found("businessprocessflowinstance", instance_id)


def retrieve_active_path(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """The stages of the instance's flow, in path order."""
    instance_id = _guid(required_param(params, "ProcessInstanceId", "RetrieveActivePath"), "ProcessInstanceId")
    _, instance = _find_instance(ctx, instance_id)
    stages_table = ctx.schema.tables["processstage"]
    stages = ordered_stages(ctx.store, instance["processid"]) if instance.get("processid") else []
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#processstages",
                            "value": [represent(ctx, stages_table, stage, None, []) for stage in stages]})


def retrieve_process_instances(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """The flow instances of one record, the active one (statecode 0) first."""
    entity_id = _guid(required_param(params, "EntityId", "RetrieveProcessInstances"), "EntityId")
    entity = required_param(params, "EntityLogicalName", "RetrieveProcessInstances")
    if not isinstance(entity, str) or entity not in ctx.schema.tables:
        raise bad_request(f"The entity with a name = '{entity}' was not found in the MetadataCache.")
    processes: list[dict[str, Any]] = []
    for flow in _flows(ctx):
        table = ctx.schema.tables[flow["uniquename"]]
        column = record_column(table, entity)
        if column is None:
            continue
        for row in ctx.store.select(table.logical_name, f't0."{column}" = ?', [entity_id]):
            processes.append({
                "@odata.type": f"#{NAMESPACE}{table.logical_name}",
                INSTANCE_ID: row[INSTANCE_ID], "name": row.get("name") or flow.get("name"),
                "processid": row.get("processid"), "processstageid": row.get("activestageid"),
                "statecode": row.get("statecode"), "statuscode": row.get("statuscode"),
                "traversedpath": row.get("traversedpath"), "completedon": row.get("completedon"),
                "modifiedon": row.get("modifiedon"),
            })
    processes.sort(key=lambda p: (p["statecode"] != 0, str(p["modifiedon"] or "")))
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.RetrieveProcessInstancesResponse",
                            "Processes": processes})


register_function("RetrieveActivePath", retrieve_active_path)
register_function("RetrieveProcessInstances", retrieve_process_instances)
