"""Activities: create a task, phone call, email or appointment, and complete one.

Create Activity takes what designers think in: a type, a subject, what it is about (``regarding``
as a ``{table, id}`` pair, written as ``regardingobjectid_<table>_<type>@odata.bind``), dates, and
for emails, phone calls and appointments the parties (from/to/cc/bcc, attendees) written as the
activity's activity parties with their participation type. Complete Activity sets the Completed
state with the type's own completed reason unless told otherwise.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import ConfigDict, model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    ADVANCED,
    EXAMPLE_ID,
    EXAMPLE_ORG,
    conflict,
    entity_id_field,
    entity_type_field,
    impersonate_field,
    impersonation_headers,
    plain_id,
    record_output_schema,
)
from d365_components.actions._lookups import Metadata, metadata_for
from d365_components.connections.odata import entity_path
from d365_components.inputs import absent, equals, forbidden, given, rules

__all__ = ["CompleteActivity", "CreateActivity"]

ActivityType = Literal["task", "phonecall", "email", "appointment"]
ENTITY_SETS = {"task": "tasks", "phonecall": "phonecalls", "email": "emails", "appointment": "appointments"}
#: participation type masks (activityparty.participationtypemask)
ROLES = {"from": 1, "to": 2, "cc": 3, "bcc": 4, "required": 5, "optional": 6, "organizer": 7}
ROLES_OF = {
    "task": set(),
    "phonecall": {"from", "to"},
    "email": {"from", "to", "cc", "bcc"},
    "appointment": {"required", "optional", "organizer"},
}
COMPLETED = 1
#: the Completed status reason each type uses by default
COMPLETED_STATUS = {"task": 5, "phonecall": 2, "email": 2, "appointment": 3}
_EXAMPLE_ID = EXAMPLE_ID


def _activity_type() -> Any:
    return InputField(
        "task",
        title="Activity type",
        description="task, phonecall, email or appointment.",
        examples=["phonecall"],
        widget="dropdown",
        enum_labels={"task": "Task", "phonecall": "Phone call", "email": "Email", "appointment": "Appointment"},
    )


class RowReference(InputModel):
    """A row of any table, as a {table, id} pair."""

    table: str = entity_type_field(examples=["accounts"])
    id: str = entity_id_field(table_input="table")


class Party(InputModel):
    """One sender, recipient or attendee: a row (table + id) or, for email, a bare address."""

    model_config = ConfigDict(title="Party", json_schema_extra=rules(
        forbidden("give both table and id of the party", [], given("table"), absent("id")),
        forbidden("give both table and id of the party", [], absent("table"), given("id")),
        forbidden("give the party as table + id, or as address (not both)", [], absent("id"), absent("address")),
        forbidden("give the party as table + id, or as address (not both)", [], given("id"), given("address")),
    ))

    role: Literal["from", "to", "cc", "bcc", "required", "optional", "organizer"] = InputField(
        title="Role",
        description="from, to, cc, bcc (email; phone call: from, to) or required, optional, organizer (appointment).",
        examples=["to"],
        widget="dropdown",
        enum_labels={"from": "From", "to": "To", "cc": "Cc", "bcc": "Bcc", "required": "Required attendee",
                     "optional": "Optional attendee", "organizer": "Organizer"},
    )
    table: str | None = entity_type_field(
        default=None, description="The party's table: contacts, accounts, leads, systemusers or queues (entity set or logical name).",
        examples=["contacts"],
    )
    id: str | None = entity_id_field(None, description="The GUID of the party's row.", table_input="table")
    address: str | None = InputField(
        None, title="Address", description="An email address not linked to any row (instead of table + id).", examples=["someone@example.com"]
    )

    @model_validator(mode="after")
    def _row_or_address(self) -> Party:
        if (self.table is None) != (self.id is None):
            raise ValueError("give both table and id of the party")
        if (self.id is None) == (self.address is None):
            raise ValueError("give the party as table + id, or as address (not both)")
        return self


def _not_one_of(roles: set[str]) -> dict[str, Any]:
    return {"not": {"enum": sorted(roles)}} if roles else {}


class CreateActivity(Action):
    """Create a task, phone call, email or appointment, regarding a row, with its parties and dates."""

    key = "dynamics365.create_activity"
    label = "Create Activity"
    group = "Activities"

    class Inputs(InputModel):
        model_config = ConfigDict(json_schema_extra=rules(*[
            forbidden(f"a {kind} takes {', '.join(sorted(ROLES_OF[kind])) or 'no parties'}", ["parties/*/role", "activityType"],
                      equals("activityType", kind) if kind != "task" else {"not": {"required": ["activityType"], "properties": {"activityType": {"not": {"const": "task"}}}}},
                      {"required": ["parties"], "properties": {"parties": {"type": "array", "contains": {"type": "object",
                          "required": ["role"], "properties": {"role": _not_one_of(ROLES_OF[kind])}}}}})
            for kind in ROLES_OF
        ]))

        activity_type: ActivityType = _activity_type()
        subject: str = InputField(title="Subject", description="The activity's subject.", examples=["Follow up on the quote"], min_length=1, max_length=200)
        description: str | None = InputField(
            None, title="Description", description="The body or notes.", examples=["Call back about the renewal."],
            widget="textarea", max_length=2000,
        )
        regarding: RowReference | None = InputField(
            None,
            title="Regarding",
            description='The row the activity is about: {"table": "accounts", "id": "<guid>"} (accounts, contacts, leads, opportunities, incidents).',
            examples=[{"table": "accounts", "id": _EXAMPLE_ID}],
        )
        start: dt.datetime | None = InputField(None, title="Start", description="Scheduled start, ISO 8601 date and time (appointments: when it begins); UTC when no offset is given.", examples=["2025-06-30T09:00:00Z"])
        due: dt.datetime | None = InputField(None, title="Due", description="Due date or scheduled end, ISO 8601 date and time; UTC when no offset is given.", examples=["2025-06-30T17:00:00Z"])
        priority: int | None = InputField(None, title="Priority", description="0 = Low, 1 = Normal, 2 = High.", examples=[2], ge=0, le=2)
        parties: list[Party] = InputField(
            [],
            title="Parties",
            description="Senders, recipients and attendees (email, phone call, appointment), each with its role.",
            examples=[[{"role": "to", "table": "contacts", "id": _EXAMPLE_ID}]],
        )
        dynamic_values: dict[str, Any] | None = InputField(
            None,
            title="Dynamic values",
            description="More columns as a JSON object (phonenumber, directioncode, location, ...).",
            examples=[{"phonenumber": "+1 425 555 0100", "directioncode": True}],
            widget="code",
            language="json",
            group=ADVANCED,
            advanced=True,
        )
        impersonate_user_id: str | None = impersonate_field()

        @model_validator(mode="after")
        def _roles_fit_the_type(self) -> CreateActivity.Inputs:
            allowed = ROLES_OF[self.activity_type]
            for index, party in enumerate(self.parties):
                if party.role not in allowed:
                    can = ", ".join(sorted(allowed)) or "no parties"
                    raise conflict(f"a {self.activity_type} takes {can}, not '{party.role}'", f"parties/{index}/role", "activityType")
            return self

    output_schema = record_output_schema(
        {
            "activityId": {"type": "string", "description": "The new activity's GUID (same as id)."},
            "activityType": {"type": "string", "description": "task, phonecall, email or appointment."},
        },
        ["activityId", "activityType"],
    )
    example = {
        "id": _EXAMPLE_ID, "entityType": "tasks", "entityUrl": f"{EXAMPLE_ORG}/tasks({_EXAMPLE_ID})", "etag": None,
        "record": None, "activityId": _EXAMPLE_ID, "activityType": "task",
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        kind = inputs.activity_type
        body: dict[str, Any] = dict(inputs.dynamic_values or {})
        body["subject"] = inputs.subject
        if inputs.description is not None:
            body["description"] = inputs.description
        if inputs.start is not None:
            body["scheduledstart"] = _utc(inputs.start)
        if inputs.due is not None:
            body["scheduledend"] = _utc(inputs.due)
        if inputs.priority is not None:
            body["prioritycode"] = inputs.priority
        metadata = metadata_for(ctx.web_api)
        if inputs.regarding is not None:
            table = await metadata.table(inputs.regarding.table, pointer="/regarding/table")
            logical = table.logical_name or inputs.regarding.table.rstrip("s")
            body[f"regardingobjectid_{logical}_{kind}@odata.bind"] = "/" + entity_path(table.entity_set, inputs.regarding.id)
        if inputs.parties:
            body[f"{kind}_activity_parties"] = [await _party(metadata, index, party) for index, party in enumerate(inputs.parties)]
        created = await ctx.web_api.create(ENTITY_SETS[kind], body, headers=impersonation_headers(inputs.impersonate_user_id))
        return {
            "id": created["id"], "entityType": ENTITY_SETS[kind], "entityUrl": created["entityUrl"], "etag": None,
            "record": None, "activityId": created["id"], "activityType": kind,
        }


async def _party(metadata: Metadata, index: int, party: Party) -> dict[str, Any]:
    item: dict[str, Any] = {"participationtypemask": ROLES[party.role]}
    if party.address is not None:
        item["addressused"] = party.address
        return item
    name = party.table or ""  # a party without an address has a table: the inputs were checked
    table = await metadata.table(name, pointer=f"/parties/{index}/table")
    logical = table.logical_name or name.rstrip("s")
    item[f"partyid_{logical}@odata.bind"] = "/" + entity_path(table.entity_set, party.id)
    return item


def _utc(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CompleteActivity(Action):
    """Mark a task, phone call, email or appointment as completed."""

    key = "dynamics365.complete_activity"
    label = "Complete Activity"
    group = "Activities"

    class Inputs(InputModel):
        activity_type: ActivityType = _activity_type()
        activity_id: str = entity_id_field(title="Activity ID", description="The GUID of the activity.", table_input="activityType")
        status: int | None = InputField(
            None,
            title="Status reason",
            description="A Completed status reason; by default the type's own (task 5 Completed, phone call 2 Made, email 2 Completed, appointment 3 Completed).",
            examples=[4],
            ge=0,
            group=ADVANCED,
            advanced=True,
        )

    output_schema = {
        "type": "object",
        "required": ["activityId", "activityType", "statecode", "statuscode"],
        "properties": {
            "activityId": {"type": "string", "description": "The activity."},
            "activityType": {"type": "string", "description": "Its type."},
            "statecode": {"type": "integer", "description": "1 (Completed)."},
            "statuscode": {"type": "integer", "description": "The status reason set."},
        },
    }
    example = {"activityId": _EXAMPLE_ID, "activityType": "task", "statecode": 1, "statuscode": 5}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        kind = inputs.activity_type
        activity_id = plain_id(inputs.activity_id)
        status = inputs.status if inputs.status is not None else COMPLETED_STATUS[kind]
        await ctx.web_api.update(ENTITY_SETS[kind], activity_id, {"statecode": COMPLETED, "statuscode": status})
        return {"activityId": activity_id, "activityType": kind, "statecode": COMPLETED, "statuscode": status}
