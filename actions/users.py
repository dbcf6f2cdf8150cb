"""Who the connection acts as: WhoAmI plus the caller's systemuser row.

WhoAmI alone gives three GUIDs; a flow usually wants the name, the sign-in name and the email too,
and the business unit's name, so Get Current User reads the user's row in the same step.
"""

from __future__ import annotations

from typing import Any

from d365_components import Action, Context, InputModel
from d365_components.actions._common import FORMATTED, field_names_field, literal

__all__ = ["GetCurrentUser"]

DEFAULT_COLUMNS = ["fullname", "domainname", "internalemailaddress", "_businessunitid_value"]


class GetCurrentUser(Action):
    """Who the connection runs as: WhoAmI plus the user's name, sign-in name, email and business unit."""

    key = "dynamics365.get_current_user"
    label = "Get Current User"
    group = "Other"

    class Inputs(InputModel):
        field_names: list[str] = field_names_field(
            "Extra columns of the user's systemuser row to return in user "
            "(fullname, domainname, internalemailaddress and the business unit are always read).",
            table_input=literal("systemusers"),
        )

    output_schema = {
        "type": "object",
        "required": ["userId", "businessUnitId", "organizationId", "fullName", "domainName", "email",
                     "businessUnitName", "user"],
        "properties": {
            "userId": {"type": "string", "description": "systemuserid of the caller (WhoAmI UserId)."},
            "businessUnitId": {"type": "string", "description": "The caller's business unit."},
            "organizationId": {"type": "string", "description": "The org's id."},
            "fullName": {"type": ["string", "null"], "description": "The user's full name."},
            "domainName": {"type": ["string", "null"], "description": "The sign-in name (UPN)."},
            "email": {"type": ["string", "null"], "description": "Primary email (internalemailaddress)."},
            "businessUnitName": {"type": ["string", "null"], "description": "The business unit's name."},
            "user": {"type": "object", "description": "The systemuser row's requested columns."},
        },
    }
    example = {
        "userId": "2138bd90-ec19-ea11-a811-000d3a334e11",
        "businessUnitId": "cca3985e-c618-ea11-a811-000d3a33f066",
        "organizationId": "f2c9290b-0806-4d48-bf9c-3814d4286755",
        "fullName": "Avery Admin",
        "domainName": "avery@contoso.onmicrosoft.com",
        "email": "avery@contoso.onmicrosoft.com",
        "businessUnitName": "Contoso",
        "user": {"systemuserid": "2138bd90-ec19-ea11-a811-000d3a334e11", "fullname": "Avery Admin"},
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        who = await ctx.web_api.whoami()
        columns = list(dict.fromkeys([*DEFAULT_COLUMNS, *inputs.field_names]))
        row = await ctx.web_api.retrieve("systemusers", who["UserId"], select=columns, annotations=FORMATTED)
        return {
            "userId": who["UserId"],
            "businessUnitId": who["BusinessUnitId"],
            "organizationId": who["OrganizationId"],
            "fullName": row.get("fullname"),
            "domainName": row.get("domainname"),
            "email": row.get("internalemailaddress"),
            "businessUnitName": row.get(f"_businessunitid_value@{FORMATTED}"),
            "user": row,
        }
