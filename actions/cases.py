"""Resolve or cancel a case (incident).

Resolving goes through Dataverse's CloseIncident message, which records an incidentresolution
(subject, time spent) along with the Resolved state; cancelling is a state change to Cancelled.
Both read the case back so the flow sees the state and reason Dataverse settled on.
"""

from __future__ import annotations

from typing import Any, Literal

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import EXAMPLE_ID, NAMESPACE, plain_id, record_id_field

__all__ = ["CancelCase", "ResolveCase"]

CANCELLED = 2
STATES = {0: "Active", 1: "Resolved", 2: "Cancelled"}
_EXAMPLE_ID = EXAMPLE_ID


def _case_id() -> Any:
    return record_id_field("Case ID", "incidents", "The GUID of the case (incident).")


_OUTPUT = {
    "type": "object",
    "required": ["caseId", "state", "statecode", "statuscode"],
    "properties": {
        "caseId": {"type": "string", "description": "The case."},
        "state": {"type": "string", "description": "Resolved or Cancelled."},
        "statecode": {"type": "integer", "description": "1 (Resolved) or 2 (Cancelled)."},
        "statuscode": {"type": "integer", "description": "The status reason set."},
    },
}


async def _read_back(ctx: Context, case_id: str) -> dict[str, Any]:
    row = await ctx.web_api.retrieve("incidents", case_id, select=["statecode", "statuscode"])
    state = row.get("statecode")
    return {"caseId": case_id, "state": STATES.get(state, str(state)) if isinstance(state, int) else str(state), "statecode": state, "statuscode": row.get("statuscode")}


class ResolveCase(Action):
    """Resolve a case, recording the resolution (subject, description, time spent)."""

    key = "dynamics365.resolve_case"
    label = "Resolve Case"
    group = "Service"

    class Inputs(InputModel):
        case_id: str = _case_id()
        subject: str = InputField(
            "Case resolved", title="Subject", description="What resolved the case: the subject of the case resolution.",
            examples=["Replaced the faulty part"], min_length=1, max_length=200,
        )
        description: str | None = InputField(
            None, title="Description", description="More detail on the resolution.", examples=["Sent a replacement unit."],
            widget="textarea", max_length=2000,
        )
        time_spent: int | None = InputField(
            None, title="Time spent (minutes)", description="Billable minutes spent on the case.", examples=[30], ge=0
        )
        status: Literal[5, 1000] = InputField(
            5, title="Status reason", description="The Resolved status reason: 5 = Problem Solved, 1000 = Information Provided.",
            examples=[5], widget="dropdown", enum_labels={5: "Problem Solved", 1000: "Information Provided"},
        )

    output_schema = _OUTPUT
    example = {"caseId": _EXAMPLE_ID, "state": "Resolved", "statecode": 1, "statuscode": 5}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        case_id = plain_id(inputs.case_id)
        resolution: dict[str, Any] = {
            "@odata.type": f"{NAMESPACE}incidentresolution",
            "subject": inputs.subject,
            "incidentid@odata.bind": f"/incidents({case_id})",
        }
        if inputs.description:
            resolution["description"] = inputs.description
        if inputs.time_spent is not None:
            resolution["timespent"] = inputs.time_spent
        await ctx.web_api.execute("CloseIncident", {"IncidentResolution": resolution, "Status": inputs.status})
        return await _read_back(ctx, case_id)


class CancelCase(Action):
    """Cancel a case (state Cancelled)."""

    key = "dynamics365.cancel_case"
    label = "Cancel Case"
    group = "Service"

    class Inputs(InputModel):
        case_id: str = _case_id()
        status: int = InputField(6, title="Status reason", description="The Cancelled status reason (6 = Cancelled).", examples=[6], ge=0)

    output_schema = _OUTPUT
    example = {"caseId": _EXAMPLE_ID, "state": "Cancelled", "statecode": 2, "statuscode": 6}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        case_id = plain_id(inputs.case_id)
        await ctx.web_api.update("incidents", case_id, {"statecode": CANCELLED, "statuscode": inputs.status})
        return await _read_back(ctx, case_id)
