"""Close an opportunity as won or lost, the way Dataverse wants it closed.

Dataverse refuses a plain statecode change on an opportunity: closing goes through WinOpportunity
or LoseOpportunity, which also record an opportunityclose activity (subject, actual revenue,
close date). These actions send that message and read the closed opportunity back, so the flow
sees the state, reason, actual revenue and close date Dataverse settled on.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import EXAMPLE_ID, plain_id, record_id_field

__all__ = ["LoseOpportunity", "WinOpportunity"]

_EXAMPLE_ID = EXAMPLE_ID
STATES = {0: "Open", 1: "Won", 2: "Lost"}


def _state_label(state: Any) -> str:
    return STATES.get(state, str(state)) if isinstance(state, int) else str(state)


def _opportunity_id() -> Any:
    return record_id_field("Opportunity ID", "opportunities", "The GUID of the opportunity to close.")


def _subject(default: str) -> Any:
    return InputField(default, title="Subject", description="Subject of the opportunity close record.", examples=[default], max_length=200)


def _actual_revenue(description: str) -> Any:
    return InputField(None, title="Actual revenue", description=description, examples=[125000.0], ge=0)


def _close_date() -> Any:
    return InputField(None, title="Close date", description="The actual close date, YYYY-MM-DD (today when empty).", examples=["2025-06-30"])


def _description() -> Any:
    return InputField(None, title="Description", description="Notes on why the opportunity closed.", examples=["Chose us for the support plan."], widget="textarea", max_length=2000)


class _CloseInputs(InputModel):
    opportunity_id: str = _opportunity_id()
    actual_revenue: float | None = _actual_revenue("The revenue actually won.")
    close_date: dt.date | None = _close_date()
    description: str | None = _description()


_OUTPUT = {
    "type": "object",
    "required": ["opportunityId", "state", "statecode", "statuscode", "actualRevenue", "closeDate"],
    "properties": {
        "opportunityId": {"type": "string", "description": "The closed opportunity."},
        "state": {"type": "string", "description": "Won or Lost."},
        "statecode": {"type": "integer", "description": "1 (Won) or 2 (Lost)."},
        "statuscode": {"type": "integer", "description": "The status reason set."},
        "actualRevenue": {"type": ["number", "null"], "description": "Actual revenue recorded on the opportunity."},
        "closeDate": {"type": ["string", "null"], "description": "Actual close date (YYYY-MM-DD)."},
    },
}


async def close_opportunity(ctx: Context, message: str, inputs: Any) -> dict[str, Any]:
    """Send Win/LoseOpportunity with its opportunityclose record, then read the opportunity back."""
    opportunity_id = plain_id(inputs.opportunity_id)
    close: dict[str, Any] = {
        "subject": inputs.subject,
        "opportunityid@odata.bind": f"/opportunities({opportunity_id})",
    }
    if inputs.actual_revenue is not None:
        close["actualrevenue"] = inputs.actual_revenue
    if inputs.close_date is not None:
        close["actualend"] = f"{inputs.close_date.isoformat()}T00:00:00Z"
    if inputs.description:
        close["description"] = inputs.description
    await ctx.web_api.execute(message, {"Status": inputs.status, "OpportunityClose": close})
    row = await ctx.web_api.retrieve(
        "opportunities", opportunity_id, select=["statecode", "statuscode", "actualvalue", "actualclosedate"]
    )
    return {
        "opportunityId": opportunity_id,
        "state": _state_label(row.get("statecode")),
        "statecode": row.get("statecode"),
        "statuscode": row.get("statuscode"),
        "actualRevenue": row.get("actualvalue"),
        "closeDate": (row.get("actualclosedate") or "")[:10] or None,
    }


class WinOpportunity(Action):
    """Close an opportunity as won, recording the actual revenue and close date."""

    key = "dynamics365.win_opportunity"
    label = "Win Opportunity"
    group = "Sales"

    class Inputs(_CloseInputs):
        subject: str = _subject("Won")
        status: int = InputField(3, title="Status reason", description="The Won status reason (3 = Won, or a custom Won reason).", examples=[3], ge=0)

    output_schema = _OUTPUT
    example = {"opportunityId": _EXAMPLE_ID, "state": "Won", "statecode": 1, "statuscode": 3, "actualRevenue": 125000.0, "closeDate": "2025-06-30"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        return await close_opportunity(ctx, "WinOpportunity", inputs)


class LoseOpportunity(Action):
    """Close an opportunity as lost (Canceled or Out-Sold)."""

    key = "dynamics365.lose_opportunity"
    label = "Lose Opportunity"
    group = "Sales"

    class Inputs(_CloseInputs):
        subject: str = _subject("Lost")
        status: Literal[4, 5] = InputField(
            4, title="Status reason", description="The Lost status reason: 4 = Canceled, 5 = Out-Sold.", examples=[5], widget="dropdown",
            enum_labels={4: "Canceled", 5: "Out-Sold"},
        )

    output_schema = _OUTPUT
    example = {"opportunityId": _EXAMPLE_ID, "state": "Lost", "statecode": 2, "statuscode": 5, "actualRevenue": None, "closeDate": "2025-06-30"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        return await close_opportunity(ctx, "LoseOpportunity", inputs)
