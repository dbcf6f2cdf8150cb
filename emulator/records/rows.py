"""Finding records: alternate and primary keys in URLs, entity URLs, references in bodies."""

from __future__ import annotations

import re
from typing import Any, Literal, overload
from urllib.parse import unquote

from d365_components.emulator.protocol.errors import (
    DataverseError,
    bad_request,
    key_not_found,
    record_not_found,
)
from d365_components.emulator.protocol.literals import (
    GUID_RE,
    Alias,
    Guid,
    parse_args,
    parse_literal,
    split_path,
    split_segment,
)
from d365_components.emulator.request.context import Ctx
from d365_components.emulator.storage.schema import Table
from d365_components.emulator.storage.store import q


def entity_url(ctx: Ctx, table: Table, row_id: str) -> str:
    return f"{ctx.api}/{table.entity_set}({row_id})"


# ---- keys ---------------------------------------------------------------------------------

def parse_key(ctx: Ctx, table: Table, key: str) -> dict[str, object]:
    """`(guid)`, `(accountid=guid)`, `(accountnumber='A1')`, `(a='x',b=2)` -> {column: value}."""
    positional, named = parse_args(key)
    if positional is not None:
        if named or not isinstance(positional, Guid):
            raise bad_request(f"Bad Request - Error in query syntax. '{key}' is not a valid key for "
                              f"'Microsoft.Dynamics.CRM.{table.logical_name}'.")
        return {table.primary_id: str(positional)}
    values = {}
    for name, value in named.items():
        if isinstance(value, Alias):
            value = parse_literal(ctx.query.get(value, "null"))
        col = table.column_for_json(name)
        if col is None or (isinstance(value, int) and not -(1 << 63) <= value < (1 << 63)):
            raise _bad_key(table)
        values[col.name] = str(value).lower() if col.is_lookup or col.type == "Uniqueidentifier" else value
    if set(values) == {table.primary_id}:
        if not GUID_RE.match(str(values[table.primary_id])):
            raise _bad_key(table)
        return values
    for alt in table.keys:
        if set(alt.columns) == set(values):
            if alt.status != "Active":      # its index is still being built (metadata/keys.py); wording UNCONFIRMED
                raise bad_request(f"The entity key '{alt.name}' of entity '{table.logical_name}' is not active "
                                  f"(EntityKeyIndexStatus is {alt.status}); it cannot be used to address a record.")
            return values
    raise _bad_key(table)


def _bad_key(table: Table) -> DataverseError:
    t = f"Microsoft.Dynamics.CRM.{table.logical_name}"
    return bad_request(f"The key in the request URI is not valid for resource '{t}'. Ensure that the names and "
                       f"number of key properties match the declared or alternate key properties for the resource '{t}'.")


def lookup_key(ctx: Ctx, table: Table, values: dict[str, Any]) -> dict[str, Any] | None:
    if table.primary_id in values:
        return ctx.store.get(table.logical_name, values[table.primary_id])
    where = " AND ".join(f"t0.{q(c)} = ?" for c in values)
    rows = ctx.store.select(table.logical_name, where, list(values.values()), limit=1)
    return rows[0] if rows else None


@overload
def find_row(ctx: Ctx, table: Table, key: str, *, required: Literal[True]) -> dict[str, Any]: ...
@overload
def find_row(ctx: Ctx, table: Table, key: str, *, required: bool) -> dict[str, Any] | None: ...


def find_row(ctx: Ctx, table: Table, key: str, *, required: bool) -> dict[str, Any] | None:
    values = parse_key(ctx, table, key)
    row = lookup_key(ctx, table, values)
    if row is None and required:
        raise not_found(table, values)
    return row


def not_found(table: Table, values: dict[str, Any]) -> DataverseError:
    if table.primary_id in values:
        return record_not_found(table.logical_name, values[table.primary_id])
    return key_not_found(table.logical_name)


def resolve_reference(ctx: Ctx, url: object, targets: tuple[str, ...] | None, what: str) -> tuple[Table, dict[str, Any]]:
    """`/contacts(<id>)`, `contacts(<id>)`, an absolute URL or an alternate-key URL -> (table, row)."""
    if not isinstance(url, str):
        raise bad_request(f"The value of '{what}' must be a URL string.")
    if re.fullmatch(r"\$\w+", url.strip()):
        raise bad_request(f"Content-ID Reference: '{url.strip()}' does not exist in the batch context.")
    path = re.sub(r"^[a-z]+://[^/]+", "", url.strip())
    path = re.sub(r"^/?api/data/v9\.[0-2]/", "", path).lstrip("/")
    segments = split_path(unquote(path))
    name, key = split_segment(segments[0]) if segments else ("", None)
    table = ctx.schema.by_set.get(name)
    if table is None or key is None or len(segments) != 1:
        raise bad_request(f"An undeclared property '{what}' which only has property annotations in the payload "
                          f"but no property value was found in the payload, or '{url}' is not a valid entity URL.")
    if targets is not None and table.logical_name not in targets:
        raise bad_request(f"The entity set '{name}' cannot be bound to '{what}': expected "
                          f"{' or '.join(targets)}.")
    return table, find_row(ctx, table, key, required=True)
