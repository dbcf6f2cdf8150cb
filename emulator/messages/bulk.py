"""Bulk messages bound to an entity set: CreateMultiple, UpdateMultiple, UpsertMultiple (§6).

Standard tables run each call as one transaction: any failing item rolls back every item, and
the error names the item's index. Each item reuses the single-record code paths (binds, deep
insert, validation), so a row written in bulk is identical to one written alone.

Importing this module registers the messages (messages.py's registry) for every standard table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal

from d365_components.emulator.messages.registry import Bound, register_action
from d365_components.emulator.protocol.errors import NOT_SUPPORTED, DataverseError, bad_request
from d365_components.emulator.records.rows import lookup_key, not_found, parse_key
from d365_components.emulator.records.write import convert_body, create_row
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Table
from d365_components.emulator.storage.standard_tables import standard_schema

NAMESPACE = "Microsoft.Dynamics.CRM."


def create_multiple(ctx: Ctx, table: Table) -> Reply:
    """`POST {set}/Microsoft.Dynamics.CRM.CreateMultiple` -> 200 with the new ids, in order."""
    targets = _targets(ctx, table)
    ids: list[str] = []
    with ctx.store.transaction():
        for index, target in enumerate(targets):
            with _item(index):
                ids.append(create_row(ctx, table, _fields(target))[table.primary_id])
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{NAMESPACE}CreateMultipleResponse", "Ids": ids})


def update_multiple(ctx: Ctx, table: Table) -> Reply:
    """`POST {set}/Microsoft.Dynamics.CRM.UpdateMultiple`: every target names an existing row by its id."""
    targets = _targets(ctx, table)
    with ctx.store.transaction():
        for index, target in enumerate(targets):
            with _item(index):
                row_id = target.get(table.primary_id)
                if not row_id:
                    raise bad_request(f"Targets[{index}] has no '{table.primary_id}': UpdateMultiple needs the "
                                      "primary key of every record.")
                key = {table.primary_id: str(row_id).lower()}
                row = lookup_key(ctx, table, key)
                if row is None:
                    raise not_found(table, key)
                _update(ctx, table, row, _fields(target))
    return Reply.empty(204)


def upsert_multiple(ctx: Ctx, table: Table) -> Reply:
    """`POST {set}/Microsoft.Dynamics.CRM.UpsertMultiple`: targets named by id or by `@odata.id` key URL."""
    targets = _targets(ctx, table)
    with ctx.store.transaction():
        for index, target in enumerate(targets):
            with _item(index):
                key = _upsert_key(ctx, table, target, index)
                row = lookup_key(ctx, table, key) if key else None
                fields = _fields(target)
                if row is None:
                    create_row(ctx, table, fields, extra=key)
                else:
                    _update(ctx, table, row, {k: v for k, v in fields.items() if k not in key})
    return Reply.empty(204)


def delete_multiple(ctx: Ctx, table: Table) -> Reply:
    """Only elastic tables support DeleteMultiple; the emulator has none (use BulkDelete)."""
    raise DataverseError(400, NOT_SUPPORTED, "DeleteMultiple has not yet been implemented.")


MESSAGES = {
    "CreateMultiple": create_multiple,
    "UpdateMultiple": update_multiple,
    "UpsertMultiple": upsert_multiple,
    "DeleteMultiple": delete_multiple,
}


def register(table_names: Iterable[str]) -> None:
    """Bind the bulk messages to each named table's collection."""
    for name, message in MESSAGES.items():
        def handler(ctx: Ctx, params: dict[str, Any], bound: Bound | None, message: Callable[[Ctx, Table], Reply] = message) -> Reply:
            assert bound is not None, "registered bound to a table"
            return message(ctx, bound.table)

        for table_name in table_names:
            register_action(name, handler, bound_to=table_name)


def _targets(ctx: Ctx, table: Table) -> list[dict[str, Any]]:
    targets = ctx.json_body().get("Targets")
    if not isinstance(targets, list) or not targets:
        raise bad_request("The request body must contain 'Targets': a non-empty array of records.")
    expected = NAMESPACE + table.logical_name
    for index, target in enumerate(targets):
        if not isinstance(target, dict):
            raise bad_request(f"Targets[{index}] must be a JSON object.")
        typed = str(target.get("@odata.type", "")).lstrip("#")
        if not typed:
            raise bad_request(f"Targets[{index}] has no '@odata.type'. Every item of Targets needs "
                              f"\"@odata.type\": \"{expected}\".")
        if typed != expected:
            raise bad_request(f"Targets[{index}] is a '{typed}' but this message is bound to '{table.entity_set}' "
                              f"({expected}): all items must be of the same table.")
    return targets


def _fields(target: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in target.items() if k not in ("@odata.type", "@odata.id")}


def _upsert_key(ctx: Ctx, table: Table, target: dict[str, Any], index: int) -> dict[str, Any]:
    odata_id = target.get("@odata.id")
    if odata_id:
        segment = str(odata_id).rstrip("/").rsplit("/", 1)[-1]
        name, _, rest = segment.partition("(")
        if name != table.entity_set or not rest.endswith(")"):
            raise bad_request(f"Targets[{index}] has '@odata.id' '{odata_id}', which does not address a "
                              f"{table.entity_set} record.")
        return parse_key(ctx, table, rest[:-1])
    if target.get(table.primary_id):
        return {table.primary_id: str(target[table.primary_id]).lower()}
    for alt in table.keys:
        if all(target.get(column) is not None for column in alt.columns):
            return {column: target[column] for column in alt.columns}
    return {}


def _update(ctx: Ctx, table: Table, row: dict[str, Any], body: dict[str, Any]) -> None:
    values, later = convert_body(ctx, table, body, creating=False)
    changed = ctx.store.update(table.logical_name, row[table.primary_id], values, user=ctx.user_id,
                               on_behalf_of=ctx.on_behalf_of, before=row)
    assert changed is not None, "the row was just read"
    _, after = changed
    for operation in later:
        operation(after)


class _item:
    """Prefix an item's error with its index, so a caller can find the bad record among many."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> Literal[False]:
        if isinstance(exc, DataverseError) and not exc.message.startswith("Targets["):
            exc.message = f"Targets[{self.index}]: {exc.message}"
            exc.args = (exc.message,)
        return False


register(standard_schema().tables)
