"""What the CRM messages share: reading their parameters (Dataverse's errors naming the parameter), status changes, inserts and updates as the calling user."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.messages.registry import NAMESPACE
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    INVALID_OPERATION,
    INVALID_STATE_STATUS,
    DataverseError,
    bad_request,
    record_not_found,
)
from d365_components.emulator.protocol.literals import GUID_RE
from d365_components.emulator.records.rows import resolve_reference
from d365_components.emulator.request.context import Ctx
from d365_components.emulator.storage.schema import OptionSet, Table

# ---- parameters ---------------------------------------------------------------------------------

def required_param(params: dict[str, Any], name: str, message: str) -> Any:
    if params.get(name) is None:
        raise bad_request(f"Required parameter '{name}' of the message '{message}' is missing.", INVALID_ARGUMENT)
    return params[name]


def boolean_param(params: dict[str, Any], name: str, message: str) -> bool:
    value = required_param(params, name, message)
    if not isinstance(value, bool):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean' "
                          f"(parameter '{name}').")
    return value


def integer_param(params: dict[str, Any], name: str, message: str) -> int:
    value = required_param(params, name, message)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32' "
                          f"(parameter '{name}').")
    return value


def entity_param(params: dict[str, Any], name: str, message: str) -> dict[str, Any]:
    value = required_param(params, name, message)
    if not isinstance(value, dict):
        raise bad_request(f"The parameter '{name}' must be an entity (a JSON object).")
    return value


def reference_param(ctx: Ctx, value: Any, what: str, targets: tuple[str, ...] | None = None) -> tuple[Table, dict[str, Any]]:
    """An entity parameter -> (table, row): `{'@odata.id': 'accounts(<id>)'}`, a bind URL, or
    `{"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": "<id>"}`."""
    if isinstance(value, str):
        return resolve_reference(ctx, value, targets, what)
    if not isinstance(value, dict):
        raise bad_request(f"The parameter '{what}' must be an entity reference.")
    if value.get("@odata.id"):
        return resolve_reference(ctx, value["@odata.id"], targets, what)
    typed = str(value.get("@odata.type", "")).lstrip("#").removeprefix(NAMESPACE)
    if not typed and targets and len(targets) == 1:
        typed = targets[0]
    table = ctx.schema.tables.get(typed)
    if table is None:
        raise bad_request(f"The parameter '{what}' needs '@odata.type' naming its table "
                          "(EdmEntityObject passed should have the key property value set).")
    if targets is not None and table.logical_name not in targets:
        raise bad_request(f"The parameter '{what}' cannot be a '{table.logical_name}': expected "
                          f"{' or '.join(targets)}.")
    row_id = value.get(table.primary_id) or (value.get("activityid") if table.is_activity else None)
    if not isinstance(row_id, str) or not GUID_RE.match(row_id):
        raise bad_request(f"EdmEntityObject passed should have the key property value set ('{what}' has no "
                          f"'{table.primary_id}').")
    row = ctx.store.get(table.logical_name, row_id.lower())
    if row is None:
        raise record_not_found(table.logical_name, row_id.lower())
    return table, row


def optional_reference_param(ctx: Ctx, params: dict[str, Any], name: str, targets: tuple[str, ...]) -> tuple[Table, dict[str, Any]] | None:
    """A reference given as `Name` (entity) or `Name@odata.bind` (URL), or None."""
    if params.get(name + "@odata.bind") is not None:
        return reference_param(ctx, params[name + "@odata.bind"], name, targets)
    if params.get(name) is not None:
        return reference_param(ctx, params[name], name, targets)
    return None


def option_set_of(table: Table, column: str) -> OptionSet:
    """The option set of a choice column the code knows to have one (statecode, statuscode)."""
    option_set = table.columns[column].option_set
    assert option_set is not None, f"{table.logical_name}.{column} is a choice column"
    return option_set


def set_status(ctx: Ctx, table: Table, row_id: str, state: int, status: int) -> int:
    """The status reason to set with `state`; -1 means the state's default (as in Dataverse)."""
    options = option_set_of(table, "statuscode").options
    valid = [o.value for o in options if o.state == state]
    if status == -1:
        return valid[0]
    if status not in valid:
        state_label = option_set_of(table, "statecode").label(state)
        raise bad_request(f"{status} is not a valid status code for state code {table.schema_name}State."
                          f"{state_label} on {table.logical_name} with Id {row_id}.", INVALID_STATE_STATUS)
    return status


def not_open(table: Table, row: dict[str, Any], doing: str) -> DataverseError:
    state = option_set_of(table, "statecode").label(row.get("statecode"))
    return DataverseError(400, INVALID_OPERATION,
                          f"Cannot {doing} the {table.logical_name} with Id {row[table.primary_id]} because it is "
                          f"{state}, not open.")


def insert_row(ctx: Ctx, table: str, values: dict[str, Any]) -> dict[str, Any]:
    return ctx.store.insert(table, {k: v for k, v in values.items() if v is not None},
                            user=ctx.user_id, on_behalf_of=ctx.on_behalf_of)


def update_row(ctx: Ctx, table: str, row: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    changed = ctx.store.update(table, row[ctx.schema.tables[table].primary_id], values, user=ctx.user_id,
                               on_behalf_of=ctx.on_behalf_of, before=row)
    assert changed is not None, "the row was just read"
    return changed[1]


def date_only(value: str) -> str:
    return value[:10] + "T00:00:00Z"
