"""Create, read, update, upsert and delete one Dataverse row.

A row is addressed by its GUID (``entityId``) or by an alternate key (``alternateKey``), never
both. Values come from a key/value list and a JSON object, merged; lookup columns take a
``{table, id}`` pair, a ``{table, key}`` alternate-key reference or a bare GUID and are written as
``navprop@odata.bind`` (see :mod:`d365_components.actions._lookups`). Get returns the row's ETag
and Update/Delete accept it, so a change made by someone else in between is never overwritten.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import httpx
from pydantic import ConfigDict, model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    ADVANCED,
    EXAMPLE_ID,
    EXAMPLE_ORG,
    FORMATTED,
    LOOKUP_FORMS,
    alternate_key_field,
    conflict,
    entity_id_field,
    entity_type_field,
    expand_field,
    field_names_field,
    formatted_values_field,
    impersonate_field,
    impersonation_headers,
    literal,
    plain_id,
    record_output_schema,
)
from d365_components.actions._lookups import TableInfo, bind_values, metadata_for
from d365_components.connections.headers import control_headers
from d365_components.connections.odata import GUID, entity_path
from d365_components.conventions import COLUMNS, NAME
from d365_components.errors import FieldError, InputValidationError
from d365_components.inputs import exactly_one, rules

__all__ = ["CreateEntity", "DeleteEntity", "GetEntity", "UpdateEntity", "UpsertEntity"]

_ENTITY_ID = re.compile(r"\(([^()]*)\)\s*$")


# -- inputs shared by the record actions ------------------------------------------------------


class FieldValue(InputModel):
    """One column value of a key/value list."""

    model_config = ConfigDict(title="Column value")

    key: str = InputField(
        title="Column", description="The column's logical name (name, revenue, parentcustomerid).", examples=["name"],
        min_length=1, data_source=COLUMNS, data_source_inputs={"table": "entityType", "purpose": literal("create")},
    )
    value: Any = InputField(
        None, title="Value",
        description=(
            "The value: text, a number, true/false, null (clears it), or a lookup reference. " + LOOKUP_FORMS
        ),
        examples=["Contoso", 1000, True], widget="any",
    )


def _field_values() -> Any:
    return InputField(
        [],
        title="Field values",
        description=(
            "Column values as a key/value list. " + LOOKUP_FORMS
        ),
        examples=[[{"key": "name", "value": "Contoso"}]],
        widget="keyvalue",
    )


def _dynamic_values() -> Any:
    return InputField(
        None,
        title="Dynamic values",
        description=(
            "Column values as a JSON object, merged with Field values; where both set a column, "
            "Dynamic values wins. " + LOOKUP_FORMS
        ),
        examples=[{"name": "Contoso", "revenue": 1000000, "parentaccountid": {"table": "accounts", "id": "7eb682f1-ca75-e511-80d4-00155d2a68d1"}}],
        widget="code",
        language="json",
    )


def _detect_duplicates() -> Any:
    return InputField(
        False,
        title="Detect duplicates",
        description="Run the org's duplicate-detection rules and fail if the row would be a duplicate (the Web API skips them by default).",
        group=ADVANCED,
        advanced=True,
    )


def _return_representation(default: bool) -> Any:
    return InputField(
        default,
        title="Return the row",
        description="Return the row as saved (with its ETag); otherwise only its ID and URL.",
        group=ADVANCED,
        advanced=True,
    )


def _if_match() -> Any:
    return InputField(
        None,
        title="Only if ETag matches",
        description=(
            "The row's ETag from Get Entity (W/\"123\"). The action fails with a concurrency error "
            "if the row changed since, so no one's change is overwritten."
        ),
        examples=['W/"123456"'],
        group=ADVANCED,
        advanced=True,
        min_length=1,
    )


class _Addressed(InputModel):
    """Inputs naming one row: its table plus its ID or an alternate key."""

    model_config = ConfigDict(json_schema_extra=rules(exactly_one("entityId", "alternateKey")))

    entity_type: str = entity_type_field()
    entity_id: str | None = entity_id_field(None, description="The GUID of the row (its primary key). Give Row ID or Alternate key, not both.")
    alternate_key: dict[str, Any] | None = alternate_key_field()

    @model_validator(mode="after")
    def _one_key(self) -> _Addressed:
        if (self.entity_id is None) == (self.alternate_key is None):
            raise conflict(
                "give entityId or alternateKey (exactly one)" if self.entity_id is None
                else "give entityId or alternateKey, not both",
                "entityId", "alternateKey",
            )
        for column in self.alternate_key or {}:
            if not NAME.fullmatch(column):
                raise conflict(f"'{column}' is not a column name", "alternateKey")
        return self

    def key(self) -> str | dict[str, Any]:
        return self.entity_id if self.entity_id is not None else dict(self.alternate_key or {})


def _merged(inputs: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Field values then dynamic values (which win), and where each column came from."""
    values: dict[str, Any] = {}
    pointers: dict[str, str] = {}
    for index, item in enumerate(inputs.field_values):
        values[item.key] = _wire_value(item.value)
        pointers[item.key] = f"/fieldValues/{index}/value"
    for column, value in (inputs.dynamic_values or {}).items():
        values[column] = _wire_value(value)
        pointers[column] = f"/dynamicValues/{column}"
    return values, pointers


def _wire_value(value: Any) -> Any:
    """A multi-select choice given as a list of numbers (as generated table forms send it) is
    written the way Dataverse reads it: ``"1,2"``."""
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    return value


def _headers(inputs: Any, **extra: str) -> dict[str, str]:
    headers = impersonation_headers(getattr(inputs, "impersonate_user_id", None))
    if getattr(inputs, "detect_duplicates", False):
        headers.update(control_headers(duplicate_detection=True))
    headers.update(extra)
    return headers


def _prefer(representation: bool, formatted: bool) -> list[str]:
    prefer = ["return=representation"] if representation else []
    if formatted:
        prefer.append(f'odata.include-annotations="{FORMATTED}"')
    return prefer


def _row_id(table: TableInfo, row: dict[str, Any] | None, entity_url: str | None) -> str | None:
    if row is not None and table.primary_id and isinstance(row.get(table.primary_id), str):
        return str(row[table.primary_id]).lower()
    match = _ENTITY_ID.search(entity_url or "")
    if match and GUID.match(match.group(1)):
        return plain_id(match.group(1))
    return None


def _without_key_columns(values: dict[str, Any], key: Any, pointers: dict[str, str]) -> dict[str, Any]:
    """Drop alternate-key columns from the body (Dataverse sets them from the URL and refuses some
    bodies that repeat them); a different value would be silently ignored, so it is an error."""
    if not isinstance(key, dict):
        return values
    problems = [
        FieldError(pointers[c], f"'{c}' is part of the alternate key; a row's key cannot be changed through it (address the row by entityId)")
        for c in key
        if c in values and values[c] != key[c]
    ]
    if problems:
        raise InputValidationError(problems)
    return {c: v for c, v in values.items() if c not in key}


async def _table(ctx: Context, name: str) -> TableInfo:
    return await metadata_for(ctx.web_api).table(name)


async def _body(ctx: Context, table: TableInfo, inputs: Any) -> tuple[dict[str, Any], dict[str, str]]:
    values, pointers = _merged(inputs)
    return await bind_values(metadata_for(ctx.web_api), table, values, pointers), pointers


async def _addressed_body(ctx: Context, inputs: Any) -> tuple[TableInfo, str | dict[str, Any], dict[str, Any]]:
    """The table, the row's key and the body of an update or upsert (alternate-key columns left out)."""
    table = await _table(ctx, inputs.entity_type)
    body, pointers = await _body(ctx, table, inputs)
    key = inputs.key()
    return table, key, _without_key_columns(body, key, pointers)


def _row(response: httpx.Response, representation: bool) -> dict[str, Any] | None:
    """The returned row without its ``@odata.context`` (noise in a flow's data)."""
    if not representation or not response.content:
        return None
    row: dict[str, Any] = response.json()
    row.pop("@odata.context", None)
    return row


def _etag(row: dict[str, Any] | None, response: httpx.Response | None) -> str | None:
    if row and row.get("@odata.etag"):
        return str(row["@odata.etag"])
    etag: str | None = response.headers.get("ETag") if response is not None else None
    return etag


_EXAMPLE_ID = EXAMPLE_ID
_EXAMPLE_URL = f"{EXAMPLE_ORG}/accounts({_EXAMPLE_ID})"
_EXAMPLE_ROW = {"@odata.etag": 'W/"536530"', "accountid": _EXAMPLE_ID, "name": "Contoso", "revenue": 1000000.0}


# -- the actions ----------------------------------------------------------------------------------


class CreateEntity(Action):
    """Create a row; lookups can be set by ID, by alternate key or by a bare GUID."""

    key = "dynamics365.create_entity"
    label = "Create Entity"
    group = "Records"

    class Inputs(InputModel):
        entity_type: str = entity_type_field()
        field_values: list[FieldValue] = _field_values()
        dynamic_values: dict[str, Any] | None = _dynamic_values()
        return_representation: bool = _return_representation(True)
        field_names: list[str] = field_names_field("Columns of the returned row (all when empty).")
        include_formatted_values: bool = formatted_values_field()
        detect_duplicates: bool = _detect_duplicates()
        impersonate_user_id: str | None = impersonate_field()

    output_schema = record_output_schema()
    example = {"id": _EXAMPLE_ID, "entityType": "accounts", "entityUrl": _EXAMPLE_URL, "etag": 'W/"536530"', "record": _EXAMPLE_ROW}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        table = await _table(ctx, inputs.entity_type)
        body, _ = await _body(ctx, table, inputs)
        representation = inputs.return_representation
        params = {"$select": inputs.field_names} if representation and inputs.field_names else None
        response = await ctx.web_api.request(
            "POST", table.entity_set, params=params, json=body, headers=_headers(inputs),
            prefer=_prefer(representation, inputs.include_formatted_values),
        )
        row = _row(response, representation)
        entity_url = response.headers.get("OData-EntityId") or response.headers.get("Location")
        row_id = _row_id(table, row, entity_url)
        if entity_url is None and row_id is not None:
            entity_url = f"{ctx.web_api.api_url}/{entity_path(table.entity_set, row_id)}"
        return {"id": row_id, "entityType": table.entity_set, "entityUrl": entity_url, "etag": _etag(row, response), "record": row}


class GetEntity(Action):
    """Read one row by its ID or alternate key, with the row's ETag for optimistic concurrency."""

    key = "dynamics365.get_entity"
    label = "Get Entity"
    group = "Records"

    class Inputs(_Addressed):
        field_names: list[str] = field_names_field("Columns to return (all when empty; naming them is faster).")
        expand_property_names: list[str] = expand_field()
        include_formatted_values: bool = formatted_values_field()
        impersonate_user_id: str | None = impersonate_field()

    output_schema = record_output_schema()
    example = {"id": _EXAMPLE_ID, "entityType": "accounts", "entityUrl": _EXAMPLE_URL, "etag": 'W/"536530"', "record": _EXAMPLE_ROW}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        table = await _table(ctx, inputs.entity_type)
        row = await ctx.web_api.retrieve(
            table.entity_set, inputs.key(),
            select=inputs.field_names or None,
            expand=",".join(inputs.expand_property_names) or None,
            annotations=FORMATTED if inputs.include_formatted_values else None,
            headers=_headers(inputs),
        )
        row.pop("@odata.context", None)
        row_id = _row_id(table, row, None) or (plain_id(inputs.entity_id) if inputs.entity_id else None)
        path = entity_path(table.entity_set, row_id or inputs.key())
        return {
            "id": row_id, "entityType": table.entity_set, "entityUrl": f"{ctx.web_api.api_url}/{path}",
            "etag": row.get("@odata.etag"), "record": row,
        }


class UpdateEntity(Action):
    """Update an existing row (never creates one); optionally only if it has not changed since read."""

    key = "dynamics365.update_entity"
    label = "Update Entity"
    group = "Records"

    class Inputs(_Addressed):
        field_values: list[FieldValue] = _field_values()
        dynamic_values: dict[str, Any] | None = _dynamic_values()
        if_match_etag: str | None = _if_match()
        return_representation: bool = _return_representation(False)
        field_names: list[str] = field_names_field("Columns of the returned row when Return the row is on (all when empty).")
        include_formatted_values: bool = formatted_values_field()
        detect_duplicates: bool = _detect_duplicates()
        impersonate_user_id: str | None = impersonate_field()

    output_schema = record_output_schema()
    example = {"id": _EXAMPLE_ID, "entityType": "accounts", "entityUrl": _EXAMPLE_URL, "etag": None, "record": None}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        table, key, body = await _addressed_body(ctx, inputs)
        return await _patch(ctx, table, key, body, inputs, {"If-Match": inputs.if_match_etag or "*"})


class UpsertEntity(Action):
    """Update the row with this ID or alternate key, or create it if there is none; says which happened."""

    key = "dynamics365.upsert_entity"
    label = "Upsert Entity"
    group = "Records"

    class Inputs(_Addressed):
        field_values: list[FieldValue] = _field_values()
        dynamic_values: dict[str, Any] | None = _dynamic_values()
        upsert_behavior: Literal["upsert", "createOnly", "updateOnly"] = InputField(
            "upsert",
            title="Behavior",
            description=(
                "upsert: update or create; createOnly: fail if the row exists (If-None-Match: *); "
                "updateOnly: fail if it does not (If-Match: *)."
            ),
            widget="dropdown",
            enum_labels={"upsert": "Update or create", "createOnly": "Create only", "updateOnly": "Update only"},
        )
        return_representation: bool = _return_representation(True)
        field_names: list[str] = field_names_field("Columns of the returned row (all when empty).")
        include_formatted_values: bool = formatted_values_field()
        detect_duplicates: bool = _detect_duplicates()
        impersonate_user_id: str | None = impersonate_field()

    output_schema = record_output_schema(
        {"created": {"type": ["boolean", "null"], "description": "True when the row was created, false when updated (null if unknown: Return the row off)."}},
        ["created"],
    )
    example = {"id": _EXAMPLE_ID, "entityType": "accounts", "entityUrl": _EXAMPLE_URL, "etag": 'W/"536530"', "record": _EXAMPLE_ROW, "created": True}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        table, key, body = await _addressed_body(ctx, inputs)
        condition = {"upsert": {}, "createOnly": {"If-None-Match": "*"}, "updateOnly": {"If-Match": "*"}}
        result = await _patch(ctx, table, key, body, inputs, condition[inputs.upsert_behavior], keep_status=True)
        status = result.pop("_status")
        if status == 201:
            result["created"] = True
        elif status == 200:
            result["created"] = False
        else:
            result["created"] = {"upsert": None, "createOnly": True, "updateOnly": False}[inputs.upsert_behavior]
        return result


async def _patch(
    ctx: Context, table: TableInfo, key: Any, body: dict[str, Any], inputs: Any, conditions: dict[str, str],
    *, keep_status: bool = False,
) -> dict[str, Any]:
    representation = inputs.return_representation
    params = {"$select": inputs.field_names} if representation and inputs.field_names else None
    path = entity_path(table.entity_set, key)
    response = await ctx.web_api.request(
        "PATCH", path, params=params, json=body, headers=_headers(inputs, **conditions),
        prefer=_prefer(representation, inputs.include_formatted_values),
    )
    row = _row(response, representation)
    entity_url = response.headers.get("OData-EntityId") or f"{ctx.web_api.api_url}/{path}"
    row_id = _row_id(table, row, entity_url)
    if row_id is None and isinstance(key, str):
        row_id = plain_id(key)
    result = {"id": row_id, "entityType": table.entity_set, "entityUrl": entity_url, "etag": _etag(row, response), "record": row}
    if keep_status:
        result["_status"] = response.status_code
    return result


class DeleteEntity(Action):
    """Delete one row by its ID or alternate key; optionally only if it has not changed since read."""

    key = "dynamics365.delete_entity"
    label = "Delete Entity"
    group = "Records"

    class Inputs(_Addressed):
        if_match_etag: str | None = _if_match()
        impersonate_user_id: str | None = impersonate_field()

    output_schema = {
        "type": "object",
        "required": ["id", "entityType", "deleted"],
        "properties": {
            "id": {"type": ["string", "null"], "description": "The row's GUID (null when addressed by alternate key)."},
            "alternateKey": {"type": ["object", "null"], "description": "The alternate key the row was addressed by."},
            "entityType": {"type": "string", "description": "The table's entity set name."},
            "deleted": {"type": "boolean", "description": "Always true: a failed delete raises an error."},
        },
    }
    example = {"id": _EXAMPLE_ID, "alternateKey": None, "entityType": "accounts", "deleted": True}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        table = await _table(ctx, inputs.entity_type)
        await ctx.web_api.delete(table.entity_set, inputs.key(), if_match=inputs.if_match_etag, headers=_headers(inputs))
        entity_id = plain_id(inputs.entity_id) if inputs.entity_id else None
        return {"id": entity_id, "alternateKey": inputs.alternate_key, "entityType": table.entity_set, "deleted": True}
