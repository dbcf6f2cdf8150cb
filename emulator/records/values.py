"""Column values from JSON bodies to storage: one conversion per column type, Dataverse's errors for the rest."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from d365_components.emulator.protocol.errors import (
    OPTION_OUT_OF_RANGE,
    VALIDATION,
    DataverseError,
    bad_request,
)
from d365_components.emulator.protocol.literals import (
    GUID_RE,
)
from d365_components.emulator.query.filter_values import iso_datetime
from d365_components.emulator.storage.schema import Column, Table

ENTITY_REF = "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead."

# ---- writes ---------------------------------------------------------------------------------

def to_storage(table: Table, col: Column, value: Any) -> Any:
    """A JSON value -> the stored value for `col`, or the 400 Dataverse gives."""
    if value is None:
        return None
    t = col.type
    edm = col.edm_type
    if t in ("String", "Memo", "EntityName"):
        if not isinstance(value, str):
            raise cannot_convert(value, edm)
        if col.max_length and len(value) > col.max_length:
            raise bad_request(f"A validation error occurred.  The length of the '{col.name}' attribute of the "
                              f"'{table.logical_name}' entity exceeded the maximum allowed length of '{col.max_length}'.",
                              VALIDATION)
        return value
    if t in ("Integer", "BigInt"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise cannot_convert(value, edm)
        if (col.min_value is not None and value < col.min_value) or (col.max_value is not None and value > col.max_value):
            raise bad_request(f"A validation error occurred.  The value {value} of '{col.name}' on record of type "
                              f"'{table.logical_name}' is outside the valid range.", VALIDATION)
        return value
    if t in ("Decimal", "Double", "Money"):
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):       # NaN/Infinity are not JSON numbers
            raise cannot_convert(value, edm)
        if (col.min_value is not None and number < col.min_value) or (col.max_value is not None and number > col.max_value):
            raise bad_request(f"A validation error occurred.  The value {value} of '{col.name}' on record of type "
                              f"'{table.logical_name}' is outside the valid range.", VALIDATION)
        return number
    if t == "Boolean":
        if not isinstance(value, bool):
            raise cannot_convert(value, edm)
        return int(value)
    if t in ("Picklist", "State", "Status"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise cannot_convert(value, edm)
        if col.option_set and value not in col.option_set.values():
            accepted = ",".join(str(v) for v in col.option_set.values())
            raise bad_request(f"A validation error occurred.  The value {value} of '{col.name}' on record of type "
                              f"'{table.logical_name}' is outside the valid range. Accepted Values: {accepted}",
                              OPTION_OUT_OF_RANGE)
        return value
    if t == "MultiSelectPicklist":
        if not isinstance(value, str):
            raise cannot_convert(value, edm)
        items = [v.strip() for v in value.split(",") if v.strip()]
        allowed = set(col.option_set.values()) if col.option_set else None
        for item in items:
            if not re.fullmatch(r"-?\d+", item) or (allowed is not None and int(item) not in allowed):
                raise bad_request(f"A validation error occurred.  The value {item} of '{col.name}' on record of type "
                                  f"'{table.logical_name}' is outside the valid range.", OPTION_OUT_OF_RANGE)
        return ",".join(items) or None
    if t == "DateTime":
        if not isinstance(value, str):
            raise cannot_convert(value, edm)
        return iso_datetime(value)
    if t == "Uniqueidentifier":
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise cannot_convert(value, edm)
        return value.lower()
    return value


def cannot_convert(value: Any, edm: str) -> DataverseError:
    return bad_request(f"Cannot convert the literal '{json.dumps(value) if not isinstance(value, str) else value}' "
                       f"to the expected type '{edm}'.")


# States an update may not set: Dataverse closes these rows only through their messages, which
# also write the close activity (opportunityclose, incidentresolution).
