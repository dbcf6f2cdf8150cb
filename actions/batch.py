"""Run Batch Operations: up to 1,000 writes in one ``$batch`` request, with one result each.

Each operation is checked before anything is sent (a missing key names ``/actions/3/key``). With
``atomic`` they run in one change set, so either every write lands or none does; with
``continueOnError`` every operation runs and each reports its own outcome; with neither, the batch
stops at the first failure and the rest report ``notRun``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, field_validator, model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    ERROR_SCHEMA,
    EXAMPLE_ID,
    LOOKUP_FORMS,
    conflict,
    error_json,
    impersonate_field,
    impersonation_headers,
    plain_id,
)
from d365_components.actions._lookups import bind_values, metadata_for
from d365_components.connections.batch import MAX_OPERATIONS, BatchOperation, BatchResult
from d365_components.connections.odata import entity_path, is_guid
from d365_components.conventions import GUID, GUID_PATTERN, NAME, NAME_PATTERN, TABLES
from d365_components.errors import FieldError, InputValidationError
from d365_components.inputs import absent, equals, forbidden, given, rules

_NEEDS_KEY = ("update", "upsert", "delete")
_NEEDS_DATA = ("create", "update", "upsert")

#: the outcome of one operation as the output reports it
OUTCOMES = ("succeeded", "failed", "rolledBack", "notRun")

__all__ = ["ERROR_SCHEMA", "OUTCOMES", "BatchItem", "RunBatchOperations", "error_json"]


class BatchItem(InputModel):
    """One write inside the batch."""

    model_config = ConfigDict(
        title="Write",
        # Published so a form and the validator agree on what each action needs.
        json_schema_extra=rules(
            forbidden("is required",
                      ["key"], equals("action", *_NEEDS_KEY), absent("key")),
            forbidden("is required",
                      ["data"], equals("action", *_NEEDS_DATA), absent("data")),
            forbidden("is not used by delete; remove it", ["data"], equals("action", "delete"), given("data")),
            forbidden("etag applies only to update and delete", ["etag"], equals("action", "create", "upsert"),
                      {"required": ["etag"], "properties": {"etag": {"type": "string", "minLength": 1}}}),
        ),
    )

    collection: str = InputField(
        title="Table",
        description="The table: its entity set name (accounts) or logical name (account).",
        examples=["accounts"],
        pattern=NAME_PATTERN,
        data_source=TABLES,
    )
    action: Literal["create", "update", "upsert", "delete"] = InputField(
        title="Action",
        description=(
            "create (a key, if given, must not exist yet), update (the row must exist), "
            "upsert (update or create by key) or delete."
        ),
        widget="dropdown",
        enum_labels={"create": "Create", "update": "Update", "upsert": "Upsert", "delete": "Delete"},
    )
    key: str | dict[str, str | int | float | bool] | None = InputField(
        None,
        title="Key",
        description=(
            "The GUID of the row, or an alternate key object such as {\"accountnumber\": \"A-100\"}. "
            "Required for update, upsert and delete."
        ),
        examples=[EXAMPLE_ID, {"accountnumber": "A-100"}],
        validate_default=True,
        # text is a GUID, an object an alternate key: type-specific keywords apply to their type only
        schema={"anyOf": None, "type": ["string", "object", "null"], "pattern": GUID_PATTERN,
                "minProperties": 1, "propertyNames": {"pattern": NAME_PATTERN},
                "additionalProperties": {"type": ["string", "number", "integer", "boolean"]}},
    )
    data: dict[str, Any] | None = InputField(
        None,
        title="Column values",
        description=(
            "The columns to write. " + LOOKUP_FORMS + " "
            "In an atomic batch \"$1\" stands for the row created by operation 1 (1-based)."
        ),
        examples=[{"name": "Contoso", "telephone1": "555-0100"}],
        validate_default=True,
    )
    return_representation: bool = InputField(
        False,
        title="Return the row",
        description="Return the written row (create, update, upsert).",
    )
    etag: str | None = InputField(
        None,
        title="ETag",
        description="Update or delete only if the row still has this @odata.etag (optimistic concurrency).",
        examples=['W/"123456"'],
    )

    @field_validator("key")
    @classmethod
    def _key_fits_action(cls, key: Any, info: Any) -> Any:
        action = info.data.get("action")
        if key is None:
            if action in _NEEDS_KEY:
                raise ValueError(f"is required for {action}: the row's GUID or an alternate key object")
            return None
        if isinstance(key, str):
            if not GUID.match(key.strip()):
                raise ValueError("must be a GUID or an alternate key object such as {\"accountnumber\": \"A-100\"}")
            return plain_id(key)
        if not key:
            raise ValueError("an alternate key object needs at least one column")
        bad = [name for name in key if not NAME.match(name)]
        if bad:
            raise ValueError(f"'{bad[0]}' is not a column name")
        return key

    @field_validator("data")
    @classmethod
    def _data_fits_action(cls, data: Any, info: Any) -> Any:
        action = info.data.get("action")
        if data is None and action in _NEEDS_DATA:
            raise ValueError(f"is required for {action}: an object of column values")
        if data is not None and action == "delete":
            raise ValueError("is not used by delete; remove it")
        return data

    @model_validator(mode="after")
    def _etag_fits_action(self) -> BatchItem:
        if self.etag and self.action not in ("update", "delete"):
            raise ValueError("etag applies only to update and delete")
        return self


class RunBatchOperations(Action):
    """Run up to 1,000 creates, updates, upserts and deletes in one request, all-or-nothing or one by one."""

    key = "dynamics365.run_batch_operations"
    label = "Run Batch Operations"
    group = "Batch"

    class Inputs(InputModel):
        model_config = ConfigDict(json_schema_extra=rules(forbidden(
            "atomic and continueOnError cannot both be true: a change set is all or nothing",
            ["atomic", "continueOnError"], equals("atomic", True), equals("continueOnError", True),
        )))

        actions: list[BatchItem] = InputField(
            title="Operations",
            description=(
                "A JSON array of up to 1,000 operations: {collection, action: create|update|upsert|delete, "
                "key, data, returnRepresentation, etag}. Results come back in the same order."
            ),
            examples=[[
                {"collection": "accounts", "action": "create", "data": {"name": "Contoso"}},
                {"collection": "accounts", "action": "update", "key": {"accountnumber": "A-100"},
                 "data": {"telephone1": "555-0100"}},
                {"collection": "contacts", "action": "delete", "key": EXAMPLE_ID},
            ]],
            widget="code",
            language="json",
            min_length=1,
            max_length=MAX_OPERATIONS,
        )
        atomic: bool = InputField(
            False,
            title="All or nothing",
            description="Run every operation in one change set: if one fails, none is written.",
        )
        continue_on_error: bool = InputField(
            False,
            title="Continue on error",
            description="Run every operation even when some fail (not with All or nothing).",
        )
        impersonate_user_id: str | None = impersonate_field()

        @model_validator(mode="after")
        def _one_error_mode(self) -> RunBatchOperations.Inputs:
            if self.atomic and self.continue_on_error:
                raise conflict("atomic and continueOnError cannot both be true: a change set is all or nothing",
                               "atomic", "continueOnError")
            return self

    output_schema = {
        "type": "object",
        "required": ["results", "succeeded", "failed", "notApplied", "rolledBack"],
        "properties": {
            "results": {
                "type": "array",
                "description": "One result per operation, in input order.",
                "items": {
                    "type": "object",
                    "required": ["index", "action", "outcome", "status", "id", "row", "error"],
                    "properties": {
                        "index": {"type": "integer", "description": "Position in the input (0-based)."},
                        "action": {"type": "string", "description": "create, update, upsert or delete, as given."},
                        "outcome": {"enum": list(OUTCOMES), "description": (
                            "succeeded, failed, rolledBack (undone with its change set) or notRun (after a failure).")},
                        "status": {"type": "integer", "description": "HTTP status of the operation (424: not applied)."},
                        "id": {"type": ["string", "null"], "description": (
                            "GUID of the row written or deleted; null when Dataverse does not tell it "
                            "(an alternate-key write without returnRepresentation).")},
                        "row": {"type": ["object", "null"], "description": "The row, when returnRepresentation was set."},
                        "error": ERROR_SCHEMA,
                    },
                },
            },
            "succeeded": {"type": "integer", "description": "Operations written."},
            "failed": {"type": "integer", "description": "Operations that Dataverse refused."},
            "notApplied": {"type": "integer", "description": "Operations rolled back or never run."},
            "rolledBack": {"type": "boolean", "description": "True when an atomic batch failed and nothing was written."},
        },
    }
    example = {
        "results": [
            {"index": 0, "action": "create", "outcome": "succeeded", "status": 204,
             "id": "a1b2c3d4-0000-0000-0000-000000000001", "row": None, "error": None},
            {"index": 1, "action": "delete", "outcome": "failed", "status": 404, "id": None, "row": None,
             "error": {"status": 404, "code": "0x80040217", "message": "account With Id = 7eb682f1-... Does Not Exist",
                       "hint": "Check the row's ID and table."}},
        ],
        "succeeded": 1,
        "failed": 1,
        "notApplied": 0,
        "rolledBack": False,
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        headers = impersonation_headers(inputs.impersonate_user_id)
        operations = [_operation(item, headers) for item in await _resolved(ctx, inputs.actions)]
        answers = await ctx.web_api.batch(
            operations, atomic=inputs.atomic, continue_on_error=inputs.continue_on_error
        )
        results = [_result(item, answer) for item, answer in zip(inputs.actions, answers, strict=True)]
        ctx.report(len(results), len(results))
        counts = {outcome: sum(r["outcome"] == outcome for r in results) for outcome in OUTCOMES}
        return {
            "results": results,
            "succeeded": counts["succeeded"],
            "failed": counts["failed"],
            "notApplied": counts["rolledBack"] + counts["notRun"],
            "rolledBack": inputs.atomic and counts["succeeded"] < len(results),
        }


async def _resolved(ctx: Context, items: list[BatchItem]) -> list[BatchItem]:
    """Items with their table as an entity set and their lookups as ``navprop@odata.bind``, as the
    record actions take them (metadata read once, cached); every bad one named before any request."""
    metadata = metadata_for(ctx.web_api)
    resolved: list[BatchItem] = []
    problems: list[FieldError] = []
    for index, item in enumerate(items):
        try:
            table = await metadata.table(item.collection, pointer=f"/actions/{index}/collection")
            data = item.data
            if data is not None:
                pointers = {column: f"/actions/{index}/data/{column}" for column in data}
                data = await bind_values(metadata, table, dict(data), pointers)
        except InputValidationError as exc:
            problems.extend(exc.errors)
            continue
        resolved.append(item.model_copy(update={"collection": table.entity_set, "data": data}))
    if problems:
        raise InputValidationError(problems, subject="inputs of dynamics365.run_batch_operations")
    return resolved


def _operation(item: BatchItem, headers: dict[str, str]) -> BatchOperation:
    """The HTTP request that performs one item (create with a key is a PATCH that must not update)."""
    part = dict(headers)
    if item.return_representation and item.action != "delete":
        part["Prefer"] = "return=representation"
    if item.action == "create" and item.key is None:
        return BatchOperation("POST", item.collection, body=item.data, headers=part)
    path = entity_path(item.collection, item.key)
    if item.action == "delete":
        if item.etag:
            part["If-Match"] = item.etag
        return BatchOperation("DELETE", path, headers=part)
    if item.action == "create":
        part["If-None-Match"] = "*"
    elif item.action == "update":
        part["If-Match"] = item.etag or "*"
    return BatchOperation("PATCH", path, body=item.data, headers=part)


def _result(item: BatchItem, answer: BatchResult) -> dict[str, Any]:
    if answer.ok:
        outcome = "succeeded"
    elif answer.status == 424:  # the client's marker for "rolled back" / "never ran"
        outcome = "rolledBack" if "rolled back" in str(getattr(answer.error, "message", "")) else "notRun"
    else:
        outcome = "failed"
    row = answer.body if answer.ok and isinstance(answer.body, dict) else None
    row_id = answer.id if answer.id and is_guid(answer.id) else None
    if row_id is None and outcome == "succeeded" and isinstance(item.key, str):
        row_id = item.key
    if row_id is None and row is not None:
        row_id = _primary_id_of(row)
    return {
        "index": answer.index,
        "action": item.action,
        "outcome": outcome,
        "status": answer.status,
        "id": plain_id(row_id) if row_id else None,
        "row": row,
        "error": error_json(answer.error) if outcome != "succeeded" else None,
    }


def _primary_id_of(row: dict[str, Any]) -> str | None:
    """The GUID of a returned row: the one ``...id`` column holding a GUID that is not a lookup."""
    for name, value in row.items():
        if name.endswith("id") and not name.startswith("_") and isinstance(value, str) and is_guid(value):
            return value
    return None
