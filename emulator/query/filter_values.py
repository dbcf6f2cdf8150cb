"""Values in $filter: literals coerced to a column's type, SQL LIKE patterns from contains/startswith/endswith, ISO dates."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, NoReturn

from d365_components.emulator.protocol.errors import bad_request, not_supported
from d365_components.emulator.storage.schema import Column

# ---- values ---------------------------------------------------------------------------------

EDM_OF_KIND = {"string": "Edm.String", "guid": "Edm.Guid", "datetime": "Edm.DateTimeOffset",
               "number": "Edm.Int32", "bool": "Edm.Boolean", "enum": "Edm.String", "array": "Collection"}
OP_NAMES = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
            "lt": "LessThan", "le": "LessThanOrEqual"}
SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def iso_datetime(text: str) -> str:
    """Any ISO date/datetime -> the stored form `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).strftime("%Y-%m-%dT00:00:00Z")
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'.") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError:       # 9999-12-31T23:59:59-05:00 is past the last representable instant
        raise bad_request(f"The date-time '{text}' is outside the supported range.") from None


def coerce(col: Column, kind: str, value: Any, op: str = "eq") -> Any:
    """A filter literal -> the stored value for `col`, or 400 naming both types."""
    t = col.type
    if kind == "null":
        return None
    ok = value
    if t in ("String", "Memo", "EntityName", "MultiSelectPicklist"):
        ok = value if kind in ("string", "enum") else _mismatch(col, kind, op)
    elif t in ("Uniqueidentifier", "Lookup", "Customer", "Owner"):
        if kind in ("guid", "string") and re.fullmatch(r"[0-9a-fA-F-]{36}", str(value)):
            ok = str(value).lower()
        else:
            _mismatch(col, kind, op)
    elif t == "DateTime":
        ok = iso_datetime(str(value)) if kind in ("datetime", "string") else _mismatch(col, kind, op)
    elif t == "Boolean":
        ok = int(value) if kind == "bool" else _mismatch(col, kind, op)
    elif t in ("Integer", "BigInt", "Picklist", "State", "Status"):
        if kind == "number" and _is_whole(value):
            ok = int(value)
        elif kind == "string" and re.fullmatch(r"-?\d+", str(value)):
            ok = int(value)
        else:
            _mismatch(col, kind, op)
        bits = 63 if t == "BigInt" else 31
        if not -(1 << bits) <= ok < (1 << bits):
            # Wording UNCONFIRMED; Dataverse answers an out-of-range literal with a 400, not a 500.
            raise bad_request(f"The value '{value}' is out of range for the property '{col.name}' "
                              f"of type '{col.edm_type}'.")
    elif t in ("Decimal", "Double", "Money"):
        if kind == "number":
            ok = sql_number(value)
        elif kind == "string":
            try:
                ok = float(value)
            except ValueError:
                _mismatch(col, kind, op)
        else:
            _mismatch(col, kind, op)
    return ok


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and value.is_integer())


def sql_number(value: Any) -> Any:
    """Ints beyond SQLite's 64-bit INTEGER bind as REAL (SQLite raises OverflowError otherwise)."""
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 63):
        return float(value)
    return value


_LIKE_PART = re.compile(r"\[(\[|[^\]]*)\]|\\|[^\[\\]+|\[")


def like_pattern(text: str) -> str:
    """A SQL Server LIKE pattern -> the same pattern for SQLite `LIKE ? ESCAPE '\\'`.

    Dataverse runs contains/startswith/endswith as SQL Server LIKE, where `[%]`, `[_]` and `[[]`
    stand for the character itself (that's how clients escape user text); `%` and `_` outside
    brackets stay wildcards. SQLite has no brackets, so bracketed characters become escaped
    literals. Character ranges (`[a-c]`) have no SQLite LIKE equivalent: a 400 saying so, not a wrong answer."""
    out = []
    for m in _LIKE_PART.finditer(text):
        part = m.group(0)
        if m.group(1) is not None:
            if len(m.group(1)) != 1:
                raise not_supported(f"The character class '{part}' in a LIKE pattern is not supported by the emulator.")
            part = m.group(1)
            out.append("\\" + part if part in "%_\\" else part)
        elif part == "\\":
            out.append("\\\\")
        else:
            out.append(part)
    return "".join(out)


def _mismatch(col: Column, kind: str, op: str) -> NoReturn:
    raise bad_request("A binary operator with incompatible types was detected. Found operand types "
                      f"'{col.edm_type}' and '{EDM_OF_KIND.get(kind, kind)}' for operator kind '{OP_NAMES.get(op, op)}'.")
