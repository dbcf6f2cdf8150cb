"""The other OData query options: $select, $orderby, $expand (with its nested options) and $top."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from d365_components.emulator.protocol.errors import bad_request, not_supported, unknown_property
from d365_components.emulator.protocol.literals import split_top
from d365_components.emulator.query import complexity
from d365_components.emulator.storage.schema import Column, Table

# ---- $select, $orderby, $expand -----------------------------------------------------------

def parse_select(table: Table, text: str | None) -> list[Column] | None:
    """$select -> columns (None = all). Lookup columns may be named by logical name or `_x_value`."""
    if text is None or text.strip() in ("", "*"):
        return None
    cols = []
    for name in text.split(","):
        name = name.strip()
        col = table.column_for_json(name)
        if col is None:
            raise unknown_property(name, table.logical_name)
        if col not in cols:
            cols.append(col)
    return cols


def parse_orderby(table: Table, text: str | None) -> list[tuple[Column, bool]]:
    """$orderby -> [(column, descending)]."""
    if not text:
        return []
    out = []
    for item in split_top(text):
        parts = item.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise bad_request(f"Syntax error at position {len(parts[0])} in '{text}'.")
        if "/" in parts[0]:
            raise not_supported("Ordering by a related table's column is not supported by the emulator.")
        col = table.column_for_json(parts[0])
        if col is None:
            raise unknown_property(parts[0], table.logical_name)
        out.append((col, len(parts) == 2 and parts[1] == "desc"))
    return out


@dataclass
class Expand:
    nav: str
    ref: bool = False
    select: str | None = None
    filter: str | None = None
    orderby: str | None = None
    top: int | None = None
    expand: list[Expand] = field(default_factory=list)


EXPAND_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$expand"}


def parse_expand(text: str | None) -> list[Expand]:
    if not text:
        return []
    items = []
    for part in split_top(text):
        m = re.fullmatch(r"([A-Za-z_]\w*)(/\$ref)?\s*(?:\((.*)\))?", part, re.S)
        if m is None:
            raise bad_request(f"Syntax error in $expand '{text}'.")
        item = Expand(m.group(1), ref=bool(m.group(2)))
        for opt in split_top(m.group(3) or "", ";"):
            key, _, value = opt.partition("=")
            key = key.strip()
            if key not in EXPAND_OPTIONS:
                raise bad_request(f"The query option '{key}' is not supported inside $expand.",
                                  "0x80060888" if key.startswith("$") else "0x0")
            if key == "$select":
                item.select = value
            elif key == "$filter":
                item.filter = value
            elif key == "$orderby":
                item.orderby = value
            elif key == "$top":
                item.top = parse_top(value)
            else:
                item.expand = parse_expand(value)
        items.append(item)
    complexity.check_expand(items)
    return items


def parse_top(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise bad_request(f"Invalid value '{text}' for $top query option found. The $top query option requires "
                          "a non-negative integer value.")
    return int(text)
