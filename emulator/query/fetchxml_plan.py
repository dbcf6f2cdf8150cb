"""What a FetchXML query compiles to (`Plan`: scopes, outputs, sort keys) and the value helpers the
planner and the executor share (typed values from FetchXML text, option labels as an SQL function)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from d365_components.emulator.protocol.errors import INVALID_ARGUMENT, DataverseError, bad_request
from d365_components.emulator.query.fetchxml_parse import Entity
from d365_components.emulator.query.filter_values import iso_datetime
from d365_components.emulator.storage.schema import Column, Schema, Table

SYSTEM_TYPES = {
    "Integer": "System.Int32", "BigInt": "System.Int64", "Picklist": "System.Int32", "State": "System.Int32",
    "Status": "System.Int32", "Boolean": "System.Boolean", "Money": "System.Decimal", "Decimal": "System.Decimal",
    "Double": "System.Double", "DateTime": "System.DateTime", "Uniqueidentifier": "System.Guid",
    "Lookup": "System.Guid", "Customer": "System.Guid", "Owner": "System.Guid",
}
_GUID = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?")




@dataclass
class Scope:
    """One `<entity>`/`<link-entity>` in the SQL: its table, SQL alias and output prefix."""

    entity: Entity
    table: Table
    sql: str                          # t0 for the root, l1, l2... for joins
    prefix: str | None                # link alias used in `alias.attr` (None for the root)
    to_one: bool = True               # joining it never repeats a root row


@dataclass
class Output:
    """One selected SQL expression and the JSON property it becomes."""

    label: str                        # the SQL column label (c0, c1...)
    key: str                          # the JSON name
    column: Column                    # drives JSON conversion and formatted values
    table: Table
    expr: str                         # the SQL expression
    attribute_name: str | None = None  # for @OData.Community.Display.V1.AttributeName (aliased columns)
    type_label: str | None = None     # label of a multi-target lookup's target-table column
    kind: str = "column"              # column, aggregate, dategroup
    scope: Scope | None = None      # the entity it was selected from


@dataclass
class SortKey:
    expr: str
    descending: bool
    label: str                        # selected as this label, so the last row's value can be read
    name: str                         # element name in the paging cookie
    column: Column | None             # how to read the value back from a cookie
    root: bool = False                # depends on root columns only (keyset paging needs that)


@dataclass
class Plan:
    root: Table
    from_sql: str
    from_params: list[Any]
    where_sql: str
    where_params: list[Any]
    select_sql: str
    outputs: list[Output]
    keys: list[SortKey]
    keyset: bool
    aggregate: bool
    group_sql: str = ""
    distinct: bool = False
    columns: list[str] = field(default_factory=list)    # $metadata#set(columns)

    def order_sql(self) -> str:
        return ", ".join(f"{k.expr}{' DESC' if k.descending else ''}" for k in self.keys)




def sql_text(name: str) -> str:
    """A schema name as an SQL string literal (only ever names from the schema, never request text)."""
    return "'" + name.replace("'", "''") + "'"


def option_labels(schema: Schema) -> Callable[[str, str, Any], str | None]:
    """The Python behind the `d365_option_label` SQL function: a choice value's label, from the live schema."""

    def label(table: str, column: str, value: Any) -> str | None:
        if value is None:
            return None
        owner = schema.tables.get(table)
        col = owner.columns.get(column) if owner is not None else None
        return col.option_set.label(value) if col is not None and col.option_set is not None else None

    return label


def balanced(parts: list[str], op: str, width: int = 8) -> str:
    """`a OP b OP c ...` grouped in parentheses `width` at a time, so a filter with thousands of
    conditions stays far below SQLite's expression depth limit of 1000."""
    while len(parts) > width:
        parts = ["(" + op.join(parts[i:i + width]) + ")" for i in range(0, len(parts), width)]
    return "(" + op.join(parts) + ")"


def sql_datetime(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def typed(col: Column, text: str, where: str = "") -> Any:
    """A condition value (always text in FetchXML) -> the value as the store keeps it."""
    t = col.type
    try:
        if t in ("Integer", "BigInt", "Picklist", "State", "Status"):
            n = int(text.strip())
            if not -2**63 <= n < 2**63:
                raise ValueError(text)
            return n
        if t in ("Money", "Decimal", "Double"):
            return float(text.strip())
        if t == "Boolean":
            flag = text.strip().lower()
            if flag in ("1", "true"):
                return 1
            if flag in ("0", "false"):
                return 0
            raise ValueError(text)
        if t in ("Uniqueidentifier", "Lookup", "Customer", "Owner"):
            m = _GUID.fullmatch(text.strip())
            if m is None:
                raise ValueError(text)
            return m.group(1).lower()
        if t == "DateTime":
            return date_value(text)
    except (ValueError, DataverseError):
        raise bad_request(f"Condition for attribute '{where or col.name}': expected argument(s) of type "
                          f"'{SYSTEM_TYPES.get(t, 'System.String')}' but received '{text}'.", INVALID_ARGUMENT) from None
    return text


def date_value(text: str) -> str:
    """ISO dates and the US forms FetchXML tools write (`2/28/2022`, `2/28/2022 3:04 PM`) -> stored form."""
    text = text.strip()
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?", text)
    if m is None:
        return iso_datetime(text)
    mo, d, y, h, mi, s, ampm = m.groups()
    hour = int(h or 0)
    if ampm:
        hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
    return datetime(int(y), int(mo), int(d), hour, int(mi or 0), int(s or 0)).strftime("%Y-%m-%dT%H:%M:%SZ")
