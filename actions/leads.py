"""Lead workflows: qualify a lead into account, contact and opportunity, or disqualify it.

Qualify Lead runs Dataverse's QualifyLead message, so the new rows are linked to each other and to
the lead exactly as the product links them, and returns their IDs by name instead of a list of
typed references. Disqualify Lead closes the lead with a status reason (statecode 2).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    ADVANCED,
    EXAMPLE_ID,
    NAMESPACE,
    conflict,
    entity_id_field,
    plain_id,
    record_id_field,
)
from d365_components.inputs import equals, forbidden, given, rules

__all__ = ["DisqualifyLead", "QualifyLead"]

DISQUALIFIED = 2
_EXAMPLE_ID = EXAMPLE_ID


def lead_id_field() -> Any:
    return record_id_field("Lead ID", "leads", "The GUID of the lead.")


_id = plain_id


class QualifyLead(Action):
    """Qualify a lead: create the account, contact and opportunity you ask for, linked, and close the lead as Qualified."""

    key = "dynamics365.qualify_lead"
    label = "Qualify Lead"
    group = "Sales"

    class Inputs(InputModel):
        model_config = ConfigDict(json_schema_extra=rules(forbidden(
            "opportunityCustomerId is only used with createOpportunity", ["opportunityCustomerId", "createOpportunity"],
            given("opportunityCustomerId"), equals("createOpportunity", False),
        )))

        lead_id: str = lead_id_field()
        create_account: bool = InputField(
            True, title="Create account", description="Create an account from the lead's company name (the lead needs one)."
        )
        create_contact: bool = InputField(True, title="Create contact", description="Create a contact from the lead's name, email and phone.")
        create_opportunity: bool = InputField(
            True, title="Create opportunity", description="Create an opportunity from the lead's topic and estimated value."
        )
        opportunity_currency_id: str | None = record_id_field(
            "Opportunity currency", "transactioncurrencies",
            "The GUID (transactioncurrencyid) of the new opportunity's currency; the org's base currency when empty.",
            None, examples=["00000000-0000-4000-8000-0000000000c1"], group=ADVANCED, advanced=True,
        )
        opportunity_customer_type: Literal["accounts", "contacts"] = InputField(
            "accounts",
            title="Opportunity customer table",
            description="Whether Opportunity customer is an account or a contact.",
            widget="dropdown",
            enum_labels={"accounts": "Account", "contacts": "Contact"},
            group=ADVANCED,
            advanced=True,
        )
        opportunity_customer_id: str | None = entity_id_field(
            None,
            title="Opportunity customer",
            description="The GUID of an existing account or contact to use as the opportunity's customer (instead of the new account).",
            table_input="opportunityCustomerType",
            group=ADVANCED,
            advanced=True,
        )
        status: int = InputField(
            3,
            title="Status reason",
            description="The lead's status reason once qualified (3 = Qualified; custom Qualified reasons also work).",
            examples=[3],
            ge=0,
        )

        @model_validator(mode="after")
        def _customer_needs_opportunity(self) -> QualifyLead.Inputs:
            if self.opportunity_customer_id and not self.create_opportunity:
                raise conflict("opportunityCustomerId is only used with createOpportunity", "opportunityCustomerId", "createOpportunity")
            return self

    output_schema = {
        "type": "object",
        "required": ["leadId", "accountId", "contactId", "opportunityId", "created"],
        "properties": {
            "leadId": {"type": "string", "description": "The qualified lead."},
            "accountId": {"type": ["string", "null"], "description": "The new account, if one was created."},
            "contactId": {"type": ["string", "null"], "description": "The new contact, if one was created."},
            "opportunityId": {"type": ["string", "null"], "description": "The new opportunity, if one was created."},
            "created": {
                "type": "array",
                "description": "Every row created, as {table, id}.",
                "items": {
                    "type": "object",
                    "required": ["table", "id"],
                    "properties": {
                        "table": {"type": "string", "description": "The row's table (logical name)."},
                        "id": {"type": "string", "description": "The row's GUID."},
                    },
                },
            },
        },
    }
    example = {
        "leadId": _EXAMPLE_ID,
        "accountId": "9d3c7f1e-2b7a-4c55-9a43-0d6f7f1e2b7a",
        "contactId": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "opportunityId": "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f",
        "created": [
            {"table": "account", "id": "9d3c7f1e-2b7a-4c55-9a43-0d6f7f1e2b7a"},
            {"table": "contact", "id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"},
            {"table": "opportunity", "id": "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f"},
        ],
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "CreateAccount": inputs.create_account,
            "CreateContact": inputs.create_contact,
            "CreateOpportunity": inputs.create_opportunity,
            "Status": inputs.status,
        }
        if inputs.opportunity_currency_id:
            parameters["OpportunityCurrencyId"] = {
                "@odata.type": f"{NAMESPACE}transactioncurrency",
                "transactioncurrencyid": _id(inputs.opportunity_currency_id),
            }
        if inputs.opportunity_customer_id:
            table = inputs.opportunity_customer_type[:-1]
            parameters["OpportunityCustomerId"] = {
                "@odata.type": f"{NAMESPACE}{table}",
                f"{table}id": _id(inputs.opportunity_customer_id),
            }
        lead_id = _id(inputs.lead_id)
        answer = await ctx.web_api.execute("QualifyLead", parameters, bound_to=("leads", lead_id)) or {}
        created = []
        for item in answer.get("value", []):
            table = str(item.get("@odata.type", "")).lstrip("#").removeprefix(NAMESPACE)
            row_id = item.get(f"{table}id")
            if table and row_id:
                created.append({"table": table, "id": row_id})
        first = {item["table"]: item["id"] for item in reversed(created)}
        return {
            "leadId": lead_id,
            "accountId": first.get("account"),
            "contactId": first.get("contact"),
            "opportunityId": first.get("opportunity"),
            "created": created,
        }


class DisqualifyLead(Action):
    """Disqualify a lead: close it with a reason (Lost, Cannot Contact, No Longer Interested, Canceled)."""

    key = "dynamics365.disqualify_lead"
    label = "Disqualify Lead"
    group = "Sales"

    class Inputs(InputModel):
        lead_id: str = lead_id_field()
        status: Literal[4, 5, 6, 7] = InputField(
            4,
            title="Status reason",
            description="The status reason: 4 = Lost, 5 = Cannot Contact, 6 = No Longer Interested, 7 = Canceled.",
            examples=[6],
            widget="dropdown",
            enum_labels={4: "Lost", 5: "Cannot Contact", 6: "No Longer Interested", 7: "Canceled"},
        )

    output_schema = {
        "type": "object",
        "required": ["leadId", "statecode", "statuscode"],
        "properties": {
            "leadId": {"type": "string", "description": "The disqualified lead."},
            "statecode": {"type": "integer", "description": "2 (Disqualified)."},
            "statuscode": {"type": "integer", "description": "The status reason set."},
        },
    }
    example = {"leadId": _EXAMPLE_ID, "statecode": 2, "statuscode": 6}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        lead_id = _id(inputs.lead_id)
        await ctx.web_api.update("leads", lead_id, {"statecode": DISQUALIFIED, "statuscode": inputs.status})
        return {"leadId": lead_id, "statecode": DISQUALIFIED, "statuscode": inputs.status}
