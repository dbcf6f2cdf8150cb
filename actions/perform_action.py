"""Run any Dataverse action or function by name: bound to a row or table, or unbound.

Covers what has no dedicated action: custom APIs, custom process actions, and messages such as
GrantAccess, SetState or RetrieveUserPrivileges. Names are checked before anything is sent;
parameters are a JSON object, passed as the action's body or as the function's parameter aliases.
Entity parameters of a function take ``{"@odata.id": "accounts(<id>)"}``; an enum value is written
as its literal, ``Microsoft.Dynamics.CRM.EndpointAccessType'Default'``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ConfigDict, model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    EXAMPLE_ORG,
    conflict,
    entity_id_field,
    entity_type_field,
    impersonate_field,
    impersonation_headers,
)
from d365_components.actions._lookups import metadata_for
from d365_components.connections.odata import RawLiteral
from d365_components.conventions import DOTTED_NAME_PATTERN
from d365_components.inputs import forbidden, given, rules

__all__ = ["CallFunction", "PerformBoundAction", "PerformUnboundAction"]

_ENUM_LITERAL = re.compile(r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*'[^']*'$")


def _name_field(what: str, examples: list[str]) -> Any:
    return InputField(
        title=f"{what} name",
        description=(
            f"The {what.lower()}'s unique name, e.g. {examples[0]} (a custom API's name includes its publisher "
            "prefix). Letters, digits, _ and . only."
        ),
        examples=examples,
        pattern=DOTTED_NAME_PATTERN,
        min_length=1,
    )


def _parameters_field(description: str, example: dict[str, Any]) -> Any:
    return InputField(
        None,
        title="Parameters",
        description=description,
        examples=[example],
        widget="code",
        language="json",
    )


def _bound_id_field() -> Any:
    return entity_id_field(
        None,
        description="The GUID of the row the operation is bound to; leave empty for one bound to the whole table.",
    )


_OUTPUT = {
    "type": "object",
    "required": ["name", "result"],
    "properties": {
        "name": {"type": "string", "description": "The action or function that ran."},
        "result": {"description": "What it returned (the JSON answer), or null when it returns nothing."},
    },
}


async def _bound_to(ctx: Context, entity_type: str | None, entity_id: str | None) -> tuple[str, str | None] | None:
    if not entity_type:
        return None
    table = await metadata_for(ctx.web_api).table(entity_type)
    return table.entity_set, entity_id


def _function_parameters(parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Parameter values as the client writes them; enum literals are passed through untouched."""
    return {
        name: RawLiteral(value) if isinstance(value, str) and _ENUM_LITERAL.match(value) else value
        for name, value in (parameters or {}).items()
    }


class PerformUnboundAction(Action):
    """Run an unbound Dataverse action (POST), e.g. WinOpportunity, GrantAccess or a custom API."""

    key = "dynamics365.perform_unbound_action"
    label = "Perform Unbound Action"
    group = "Other"

    class Inputs(InputModel):
        action_name: str = _name_field("Action", ["WinOpportunity", "new_MyCustomApi"])
        parameters: dict[str, Any] | None = _parameters_field(
            "The action's parameters as a JSON object (its request body). Entity parameters take "
            '{"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": "<guid>"}.',
            {"Status": 3, "OpportunityClose": {"subject": "Won", "opportunityid@odata.bind": "/opportunities(<guid>)"}},
        )
        impersonate_user_id: str | None = impersonate_field()

    output_schema = _OUTPUT
    example = {"name": "new_MyCustomApi", "result": {"@odata.context": f"{EXAMPLE_ORG}/$metadata#Microsoft.Dynamics.CRM.new_MyCustomApiResponse", "Answer": 42}}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        result = await ctx.web_api.execute(
            inputs.action_name, inputs.parameters or {}, headers=impersonation_headers(inputs.impersonate_user_id)
        )
        return {"name": inputs.action_name, "result": result}


class PerformBoundAction(Action):
    """Run a Dataverse action bound to a row (or to a whole table), e.g. QualifyLead or AddToQueue."""

    key = "dynamics365.perform_bound_action"
    label = "Perform Bound Action"
    group = "Other"

    class Inputs(InputModel):
        entity_type: str = entity_type_field(
            description="The table the action is bound to: its entity set name (leads) or logical name (lead).",
            examples=["leads", "queues"],
        )
        entity_id: str | None = _bound_id_field()
        action_name: str = _name_field("Action", ["QualifyLead", "new_BoundCustomApi"])
        parameters: dict[str, Any] | None = _parameters_field(
            "The action's parameters as a JSON object (its request body).",
            {"CreateAccount": True, "CreateContact": True, "CreateOpportunity": True, "Status": 3},
        )
        impersonate_user_id: str | None = impersonate_field()

    output_schema = _OUTPUT
    example = {"name": "AddToQueue", "result": {"@odata.context": f"{EXAMPLE_ORG}/$metadata#Microsoft.Dynamics.CRM.AddToQueueResponse", "QueueItemId": "5aae8258-4878-eb11-a812-000d3a8b3ec6"}}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        bound = await _bound_to(ctx, inputs.entity_type, inputs.entity_id)
        result = await ctx.web_api.execute(
            inputs.action_name, inputs.parameters or {}, bound_to=bound,
            headers=impersonation_headers(inputs.impersonate_user_id),
        )
        return {"name": inputs.action_name, "result": result}


class CallFunction(Action):
    """Call a Dataverse function (GET), unbound or bound to a row or table, e.g. WhoAmI or CalculateRollupField."""

    key = "dynamics365.call_function"
    label = "Call Function"
    group = "Other"

    class Inputs(InputModel):
        model_config = ConfigDict(json_schema_extra=rules(forbidden(
            "entityId needs entityType (the table the function is bound to)", ["entityId", "entityType"],
            given("entityId"), {"not": {"required": ["entityType"], "properties": {"entityType": {"type": "string", "minLength": 1}}}},
        )))

        function_name: str = _name_field("Function", ["RetrieveCurrentOrganization", "WhoAmI"])
        parameters: dict[str, Any] | None = _parameters_field(
            "The function's parameters as a JSON object: text, numbers, true/false, "
            "{\"@odata.id\": \"accounts(<guid>)\"} for a row, and enum values written as "
            "Microsoft.Dynamics.CRM.EndpointAccessType'Default'.",
            {"AccessType": "Microsoft.Dynamics.CRM.EndpointAccessType'Default'"},
        )
        entity_type: str | None = entity_type_field(
            default=None,
            description="For a bound function: the table (entity set or logical name). Leave empty for an unbound one.",
            examples=["systemusers"],
        )
        entity_id: str | None = _bound_id_field()
        impersonate_user_id: str | None = impersonate_field()

        @model_validator(mode="after")
        def _id_needs_table(self) -> CallFunction.Inputs:
            if self.entity_id and not self.entity_type:
                raise conflict("entityId needs entityType (the table the function is bound to)", "entityId", "entityType")
            return self

    output_schema = _OUTPUT
    example = {"name": "WhoAmI", "result": {
        "BusinessUnitId": "cca3985e-c618-ea11-a811-000d3a33f066",
        "UserId": "2138bd90-ec19-ea11-a811-000d3a334e11",
        "OrganizationId": "f2c9290b-0806-4d48-bf9c-3814d4286755",
    }}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        bound = await _bound_to(ctx, inputs.entity_type, inputs.entity_id)
        result = await ctx.web_api.execute(
            inputs.function_name, _function_parameters(inputs.parameters), bound_to=bound, function=True,
            headers=impersonation_headers(inputs.impersonate_user_id),
        )
        return {"name": inputs.function_name, "result": result}
