"""Business process flows: list a table's flows, read a record's flow, move it between stages,
finish or abandon it.

A flow (workflow category 4) keeps one instance row per record in its own table
(``opportunitysalesprocesses`` for the Opportunity Sales Process): ``activestageid`` is the current
stage, ``traversedpath`` the comma-separated ids of the stages passed, statecode/statuscode say
Active, Finished or Aborted. These actions read instances with RetrieveProcessInstances and the
ordered stages with RetrieveActivePath, and move a flow by updating its instance, as the Web API
documentation describes. Through the Web API nothing creates an instance until a client POSTs one
(the app does it when a form opens): Move Process Stage starts the flow when the record has none.

A move forward refuses, naming the missing columns, while a stage being left has required steps
that are empty. The steps come from ``processstage.clientdata`` read as
``{"steps": [{"attribute", "label", "required"}]}`` (the emulator's form; a stage JSON without a
``steps`` list asks for nothing).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Literal

from pydantic import ConfigDict

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    EXAMPLE_ID,
    GUID_PATTERN,
    entity_id_field,
    entity_type_field,
    plain_id,
)
from d365_components.actions._lookups import metadata_for
from d365_components.errors import D365Error
from d365_components.inputs import absent, equals, forbidden, rules

__all__ = ["GetProcessFlow", "ListProcessFlows", "MoveProcessStage", "SetProcessFlowStatus"]

STATUS = {1: "Active", 2: "Finished", 3: "Aborted"}
_FLOW_COLUMNS = "workflowid,name,uniquename,primaryentity,statecode"
_STAGE_EXAMPLE = {"stageId": "6b9ce798-221a-4260-90b2-2a95ed51a5bc", "name": "Develop", "category": 1, "table": "opportunity",
                  "fields": [{"attribute": "customerneed", "label": "Customer Need", "required": True}]}


# ---- reading a flow ----------------------------------------------------------------------------

def stage_fields(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps of a stage from its clientdata (attribute, label, required)."""
    try:
        data = json.loads(stage.get("clientdata") or "{}")
    except ValueError:
        return []
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        return []
    return [{"attribute": str(s["attribute"]), "label": str(s.get("label") or s["attribute"]), "required": bool(s.get("required"))}
            for s in steps if isinstance(s, dict) and s.get("attribute")]


def _stage(stage: dict[str, Any]) -> dict[str, Any]:
    return {"stageId": stage["processstageid"], "name": stage.get("stagename"), "category": stage.get("stagecategory"),
            "table": stage.get("primaryentitytypecode"), "fields": stage_fields(stage)}


class Flow:
    """A record's flow instance, its flow and its ordered stages, as read from Dataverse."""

    def __init__(self, entity_type: str, entity_id: str, logical_name: str, process: dict[str, Any], instance: dict[str, Any] | None,
                 instance_set: str, stages: list[dict[str, Any]]) -> None:
        self.entity_type, self.entity_id, self.logical_name = entity_type, entity_id, logical_name
        self.process, self.instance, self.instance_set, self.stages = process, instance, instance_set, stages

    @property
    def active_id(self) -> str | None:
        return (self.instance or {}).get("processstageid")

    def index_of(self, stage_id: str | None) -> int:
        return next((i for i, s in enumerate(self.stages) if s["processstageid"] == stage_id), -1)

    def path(self) -> list[str]:
        return [p for p in str((self.instance or {}).get("traversedpath") or "").split(",") if p]

    def output(self) -> dict[str, Any]:
        names = {s["processstageid"]: s.get("stagename") for s in self.stages}
        active = self.index_of(self.active_id)
        status = (self.instance or {}).get("statuscode")
        return {
            "entityType": self.entity_type, "entityId": self.entity_id,
            "processId": self.process["workflowid"], "processName": self.process.get("name"),
            "instanceId": (self.instance or {}).get("businessprocessflowinstanceid"), "instanceEntitySet": self.instance_set,
            "status": STATUS.get(int(status or 0), "Not started") if self.instance else "Not started",
            "activeStage": _stage(self.stages[active]) if active >= 0 else None,
            "stages": [{**_stage(s), "passed": i < active} for i, s in enumerate(self.stages)],
            "history": [{"stageId": p, "name": names.get(p)} for p in self.path()],
        }


async def _flows_of(ctx: Context, logical_name: str) -> list[dict[str, Any]]:
    params = {"$select": _FLOW_COLUMNS,
              "$filter": f"category eq 4 and primaryentity eq '{logical_name}'", "$orderby": "name"}
    return list((await ctx.web_api.get_json("workflows", params=params)).get("value") or [])


def _stage_rank(stage: dict[str, Any]) -> tuple[float, str]:
    try:
        data = json.loads(stage.get("clientdata") or "{}")
    except ValueError:
        data = {}
    order = data.get("order") if isinstance(data, dict) else None
    return float(order if isinstance(order, int | float) else stage.get("stagecategory") or 0), str(stage.get("createdon") or "")


async def _stages(ctx: Context, process_id: str) -> list[dict[str, Any]]:
    """Stages in path order, as RetrieveActivePath gives them for an instance: clientdata order, else stagecategory."""
    params = {"$filter": f"_processid_value eq {process_id}"}
    return sorted((await ctx.web_api.get_json("processstages", params=params)).get("value") or [], key=_stage_rank)


async def load_flow(ctx: Context, entity_type: str, entity_id: str, process_id: str | None) -> Flow:
    """The record's active flow instance (or that of ``process_id``), or its table's first flow when none started."""
    table = await metadata_for(ctx.web_api).table(entity_type)
    logical_name = table.logical_name or entity_type
    record_id = plain_id(entity_id)
    answer = await ctx.web_api.execute("RetrieveProcessInstances", {"EntityId": uuid.UUID(record_id), "EntityLogicalName": logical_name},
                                       function=True) or {}
    instances = list(answer.get("Processes") or [])
    if process_id:
        instances = [i for i in instances if i.get("processid") == plain_id(process_id)]
    instance = next((i for i in instances if i.get("statecode") == 0), instances[0] if instances else None)
    wanted = plain_id(process_id) if process_id else (instance or {}).get("processid")
    if wanted:          # by id: a flow of another table may run on this record (Lead to Opportunity on an opportunity)
        found = await ctx.web_api.get_json("workflows", params={"$select": _FLOW_COLUMNS, "$filter": f"workflowid eq {wanted} and category eq 4"})
        process = next(iter(found.get("value") or []), None)
    else:
        process = next((f for f in await _flows_of(ctx, logical_name) if f.get("statecode") == 1), None)
    if process is None:
        raise D365Error(f"No business process flow {'with id ' + wanted if wanted else 'is active'} for table {logical_name}.")
    instance_set = (await metadata_for(ctx.web_api).table(process["uniquename"])).entity_set
    if instance is not None:
        path = await ctx.web_api.execute("RetrieveActivePath", {"ProcessInstanceId": uuid.UUID(instance["businessprocessflowinstanceid"])},
                                         function=True) or {}
        stages = list(path.get("value") or [])
    else:
        stages = await _stages(ctx, process["workflowid"])
    return Flow(entity_type, record_id, logical_name, process, instance, instance_set, stages)


# ---- forms ---------------------------------------------------------------------------------------

def _process_id() -> Any:
    return InputField(None, title="Process", description="The GUID of the flow (workflow) when the table has several; the record's active flow when empty.",
                      examples=[EXAMPLE_ID], pattern=GUID_PATTERN)


def _record_inputs_table() -> Any:
    return entity_type_field(description="The table of the record: opportunities, leads, incidents (entity set or logical name).",
                             examples=["opportunities"])


_STAGE_SCHEMA = {
    "type": "object", "required": ["stageId", "name", "category", "table", "fields"],
    "properties": {
        "stageId": {"type": "string", "description": "The stage (processstage)."}, "name": {"type": ["string", "null"], "description": "The stage name."},
        "category": {"type": ["integer", "null"], "description": "The stage category (0 Qualify, 1 Develop...)."},
        "table": {"type": ["string", "null"], "description": "The table the stage's steps belong to."},
        "passed": {"type": "boolean", "description": "The stage lies before the active stage."},
        "fields": {"type": "array", "description": "The stage's steps: columns to fill, required or not.",
                   "items": {"type": "object", "required": ["attribute", "label", "required"],
                             "properties": {"attribute": {"type": "string", "description": "The column."}, "label": {"type": "string", "description": "The step label."},
                                            "required": {"type": "boolean", "description": "The stage cannot be left while it is empty."}}}},
    },
}
_FLOW_OUTPUT = {
    "type": "object",
    "required": ["entityType", "entityId", "processId", "processName", "instanceId", "instanceEntitySet", "status", "activeStage",
                 "stages", "history"],
    "properties": {
        "entityType": {"type": "string", "description": "The record's table."}, "entityId": {"type": "string", "description": "The record."},
        "processId": {"type": "string", "description": "The flow (workflow)."}, "processName": {"type": ["string", "null"], "description": "The flow's name."},
        "instanceId": {"type": ["string", "null"], "description": "The flow instance; null when the flow has not started."},
        "instanceEntitySet": {"type": "string", "description": "Where the flow's instances live (opportunitysalesprocesses)."},
        "status": {"type": "string", "enum": ["Active", "Finished", "Aborted", "Not started"], "description": "The instance's status."},
        "activeStage": {"oneOf": [{"type": "null"}, _STAGE_SCHEMA], "description": "The active stage (null when not started)."},
        "stages": {"type": "array", "items": _STAGE_SCHEMA, "description": "Every stage in path order."},
        "history": {"type": "array", "description": "The stages passed, in order (traversedpath), the active one last.",
                    "items": {"type": "object", "required": ["stageId", "name"],
                              "properties": {"stageId": {"type": "string", "description": "The stage."}, "name": {"type": ["string", "null"], "description": "Its name."}}}},
    },
}
_FLOW_EXAMPLE = {
    "entityType": "opportunities", "entityId": EXAMPLE_ID, "processId": "919e14d1-6489-4852-abd0-a63a6ecaac5d",
    "processName": "Opportunity Sales Process", "instanceId": "5aae8258-4878-eb11-a812-000d3a8b3ec6",
    "instanceEntitySet": "opportunitysalesprocesses", "status": "Active", "activeStage": _STAGE_EXAMPLE,
    "stages": [{**_STAGE_EXAMPLE, "passed": False}],
    "history": [{"stageId": "6b9ce798-221a-4260-90b2-2a95ed51a5bc", "name": "Develop"}],
}


class ListProcessFlows(Action):
    """The business process flows of a table, each with its stages and their steps."""

    key = "dynamics365.list_process_flows"
    label = "List Business Process Flows"
    group = "Sales"

    class Inputs(InputModel):
        entity_type: str = _record_inputs_table()

    output_schema = {
        "type": "object", "required": ["flows"],
        "properties": {"flows": {"type": "array", "description": "The table's flows.", "items": {
            "type": "object", "required": ["processId", "name", "uniqueName", "active", "instanceEntitySet", "stages"],
            "properties": {"processId": {"type": "string", "description": "The flow (workflow)."}, "name": {"type": ["string", "null"], "description": "Its name."},
                           "uniqueName": {"type": "string", "description": "The flow's instance table."},
                           "active": {"type": "boolean", "description": "The flow is activated."},
                           "instanceEntitySet": {"type": "string", "description": "Where its instances live."},
                           "stages": {"type": "array", "items": _STAGE_SCHEMA, "description": "Its stages in order."}}}}},
    }
    example = {"flows": [{"processId": "919e14d1-6489-4852-abd0-a63a6ecaac5d", "name": "Opportunity Sales Process",
                          "uniqueName": "opportunitysalesprocess", "active": True, "instanceEntitySet": "opportunitysalesprocesses",
                          "stages": [_STAGE_EXAMPLE]}]}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        table = await metadata_for(ctx.web_api).table(inputs.entity_type)
        flows = []
        for flow in await _flows_of(ctx, table.logical_name or inputs.entity_type):
            instance_set = (await metadata_for(ctx.web_api).table(flow["uniquename"])).entity_set
            flows.append({"processId": flow["workflowid"], "name": flow.get("name"), "uniqueName": flow["uniquename"],
                          "active": flow.get("statecode") == 1, "instanceEntitySet": instance_set,
                          "stages": [_stage(s) for s in await _stages(ctx, flow["workflowid"])]})
        return {"flows": flows}


class GetProcessFlow(Action):
    """A record's business process flow: the active stage, every stage with its steps, and the stages passed."""

    key = "dynamics365.get_process_flow"
    label = "Get Business Process Flow"
    group = "Sales"

    class Inputs(InputModel):
        entity_type: str = _record_inputs_table()
        entity_id: str = entity_id_field(description="The GUID of the record.")
        process_id: str | None = _process_id()

    output_schema = _FLOW_OUTPUT
    example = _FLOW_EXAMPLE

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        return (await load_flow(ctx, inputs.entity_type, inputs.entity_id, inputs.process_id)).output()


# ---- moving ------------------------------------------------------------------------------------

async def _start(ctx: Context, flow: Flow) -> Flow:
    """POST the instance at the first stage (what the app does when the form opens)."""
    first = flow.stages[0]["processstageid"] if flow.stages else None
    lookups = await metadata_for(ctx.web_api).lookups(str(flow.process["uniquename"])) or {}
    column = next((c for c in (f"{flow.logical_name}id", f"bpf_{flow.logical_name}id") if c in lookups), f"{flow.logical_name}id")
    body: dict[str, Any] = {f"{column}@odata.bind": f"/{(await metadata_for(ctx.web_api).table(flow.entity_type)).entity_set}({flow.entity_id})",
                            "processid@odata.bind": f"/workflows({flow.process['workflowid']})"}
    if first:
        body.update({"activestageid@odata.bind": f"/processstages({first})", "traversedpath": first})
    await ctx.web_api.create(flow.instance_set, body)
    return await load_flow(ctx, flow.entity_type, flow.entity_id, flow.process["workflowid"])


async def missing_fields(ctx: Context, flow: Flow, stages: list[dict[str, Any]]) -> list[str]:
    """The required steps of ``stages`` whose columns are empty on their records."""
    missing: list[str] = []
    records: dict[str, dict[str, Any]] = {}
    for stage in stages:
        table = stage.get("primaryentitytypecode") or flow.logical_name
        required = [f for f in stage_fields(stage) if f["required"]]
        if not required:
            continue
        if table not in records:
            records[table] = await _stage_record(ctx, flow, table)
        row = records[table]
        missing += [f["attribute"] for f in required
                    if row.get(f["attribute"]) in (None, "") and row.get(f"_{f['attribute']}_value") in (None, "")]
    return missing


async def _stage_record(ctx: Context, flow: Flow, table: str) -> dict[str, Any]:
    if table == flow.logical_name:
        set_name, row_id = flow.entity_type, flow.entity_id
    else:           # a stage on another table (Lead to Opportunity: Develop is on the opportunity)
        instance = await ctx.web_api.retrieve(flow.instance_set, str((flow.instance or {})["businessprocessflowinstanceid"]))
        row_id = instance.get(f"_{table}id_value") or ""
        if not row_id:
            return {}
        set_name = (await metadata_for(ctx.web_api).table(table)).entity_set
    return await ctx.web_api.retrieve(set_name, row_id)


class MoveProcessStage(Action):
    """Move a record's business process flow to the next, previous or a named stage (starting the flow when it has none)."""

    key = "dynamics365.move_process_stage"
    label = "Move Process Stage"
    group = "Sales"

    class Inputs(InputModel):
        model_config = ConfigDict(json_schema_extra=rules(
            forbidden("name the stage to move to", ["stageName"], equals("direction", "stage"), absent("stageName")),
        ))
        entity_type: str = _record_inputs_table()
        entity_id: str = entity_id_field(description="The GUID of the record.")
        direction: Literal["next", "previous", "stage"] = InputField(
            "next", title="Move", description="To the next stage, back to the previous one, or to the stage named in Stage.",
            examples=["next"], enum_labels={"next": "Next stage", "previous": "Previous stage", "stage": "Named stage"},
        )
        stage_name: str | None = InputField(None, title="Stage", description="The stage to move to (with Move = Named stage), e.g. Propose.",
                                            examples=["Propose"], min_length=1, max_length=100)
        process_id: str | None = _process_id()

    output_schema = _FLOW_OUTPUT
    example = _FLOW_EXAMPLE

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        flow = await load_flow(ctx, inputs.entity_type, inputs.entity_id, inputs.process_id)
        if flow.instance is None:
            flow = await _start(ctx, flow)
        if (flow.instance or {}).get("statecode") != 0:
            raise D365Error(f"The {flow.process.get('name')} flow of this record is {STATUS.get(int((flow.instance or {}).get('statuscode') or 0))}: "
                            "reactivate it before moving it.")
        current = flow.index_of(flow.active_id)
        target = _target(flow, current, inputs.direction, inputs.stage_name)
        if target > current:
            missing = await missing_fields(ctx, flow, flow.stages[max(current, 0):target])
            if missing:
                raise D365Error(f"Cannot leave stage {flow.stages[current].get('stagename')!r}: fill the required "
                                f"field{'s' if len(missing) > 1 else ''} {', '.join(missing)} first.")
        path = flow.path()
        target_id = flow.stages[target]["processstageid"]
        if target_id in path:
            path = path[: path.index(target_id) + 1]
        else:
            path += [s["processstageid"] for s in flow.stages[current + 1: target + 1] if s["processstageid"] not in path]
        await ctx.web_api.update(flow.instance_set, str((flow.instance or {})["businessprocessflowinstanceid"]), {
            "activestageid@odata.bind": f"/processstages({target_id})", "traversedpath": ",".join(path)})
        return (await load_flow(ctx, inputs.entity_type, inputs.entity_id, flow.process["workflowid"])).output()


def _target(flow: Flow, current: int, direction: str, stage_name: str | None) -> int:
    if direction == "next":
        if current + 1 >= len(flow.stages):
            raise D365Error(f"The flow is at its last stage ({flow.stages[current].get('stagename')}): finish it instead.")
        return current + 1
    if direction == "previous":
        if current <= 0:
            raise D365Error("The flow is at its first stage: there is no previous stage.")
        return current - 1
    wanted = (stage_name or "").strip().lower()
    found = [i for i, s in enumerate(flow.stages) if str(s.get("stagename") or "").lower() == wanted]
    if not found:
        names = ", ".join(str(s.get("stagename")) for s in flow.stages)
        raise D365Error(f"The flow {flow.process.get('name')!r} has no stage {stage_name!r}; its stages are {names}.")
    return found[0]


class SetProcessFlowStatus(Action):
    """Finish a record's business process flow (at its last stage, required fields filled), abandon it, or reactivate it."""

    key = "dynamics365.set_process_flow_status"
    label = "Finish or Abandon Process Flow"
    group = "Sales"

    class Inputs(InputModel):
        entity_type: str = _record_inputs_table()
        entity_id: str = entity_id_field(description="The GUID of the record.")
        flow_status: Literal["finished", "abandoned", "active"] = InputField(
            "finished", title="Flow status", description="Finished (the flow is done), abandoned (Aborted) or active again.",
            examples=["finished"], enum_labels={"finished": "Finish", "abandoned": "Abandon", "active": "Reactivate"},
        )
        process_id: str | None = _process_id()

    output_schema = _FLOW_OUTPUT
    example = {**_FLOW_EXAMPLE, "status": "Finished"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        flow = await load_flow(ctx, inputs.entity_type, inputs.entity_id, inputs.process_id)
        if flow.instance is None:
            raise D365Error(f"The record has no {flow.process.get('name')} flow instance to change.")
        values: dict[str, Any] = {"statecode": 0, "statuscode": 1, "completedon": None}
        if inputs.flow_status == "finished":
            current = flow.index_of(flow.active_id)
            if current != len(flow.stages) - 1:
                raise D365Error(f"Only a flow at its last stage can finish; this one is at {flow.stages[current].get('stagename')!r}.")
            missing = await missing_fields(ctx, flow, flow.stages[current:])
            if missing:
                raise D365Error(f"Cannot finish the flow: fill the required field{'s' if len(missing) > 1 else ''} {', '.join(missing)} first.")
            values = {"statecode": 1, "statuscode": 2, "completedon": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        elif inputs.flow_status == "abandoned":
            values = {"statecode": 1, "statuscode": 3}
        await ctx.web_api.update(flow.instance_set, str(flow.instance["businessprocessflowinstanceid"]), values)
        return (await load_flow(ctx, inputs.entity_type, inputs.entity_id, flow.process["workflowid"])).output()
