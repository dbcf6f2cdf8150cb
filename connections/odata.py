"""OData literals and key segments: the one place where values become URL text.

``quote`` writes a value as an OData literal (strings single-quoted with ``''`` escaping, GUIDs
bare, dates in ISO form); ``format_key`` writes the ``(...)`` key segment of a row's URL, for a
primary key GUID or an alternate key given as a dict.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import quote as url_quote

from d365_components.connections.input_errors import RequestInputError
from d365_components.conventions import DOTTED_NAME, GUID, NAME

__all__ = ["GUID", "RawLiteral", "entity_path", "format_key", "is_guid", "quote"]

# Characters kept as-is inside key segments and literals; everything else is percent-encoded.
_SAFE = "-_.~!$&*+,;=:@'()"


class RawLiteral(str):
    """Text that is already an OData literal (an enum such as
    ``Microsoft.Dynamics.CRM.EndpointAccessType'Default'``); :func:`quote` leaves it as is."""


def is_guid(value: Any) -> bool:
    return isinstance(value, uuid.UUID) or (isinstance(value, str) and bool(GUID.fullmatch(value)))


def _guid(value: Any) -> str:
    return str(value).strip("{}").lower()


def quote(value: Any) -> str:
    """``value`` as an OData literal for ``$filter``, function parameters and keys.

    >>> quote("O'Brien"), quote(True), quote(None), quote(5)
    ("'O''Brien'", 'true', 'null', '5')
    """
    if value is None:
        return "null"
    if isinstance(value, RawLiteral):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise RequestInputError(f"{value} cannot be written as an OData number")
        return repr(value)
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        if GUID.fullmatch(value):
            return _guid(value)
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"cannot write a {type(value).__name__} as an OData literal")


def format_key(key: Any) -> str:
    """The key segment of a row URL: ``(guid)`` or ``(accountnumber='A-1',name='x')``.

    A string that is not a GUID is taken as an already formatted key (``accountnumber='A-1'``),
    so keys copied from an ``OData-EntityId`` work unchanged.
    """
    if isinstance(key, uuid.UUID) or (isinstance(key, str) and GUID.fullmatch(key.strip())):
        return f"({_guid(str(key).strip())})"
    if isinstance(key, dict):
        if not key:
            raise RequestInputError("an alternate key needs at least one column")
        parts = []
        for name, value in key.items():
            if not isinstance(name, str) or not NAME.fullmatch(name):
                raise RequestInputError(f"'{name}' is not a column name")
            parts.append(f"{name}={url_quote(quote(value), safe=_SAFE)}")
        return "(" + ",".join(parts) + ")"
    if isinstance(key, str) and key.strip():
        text = key.strip()
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1]
        if "=" not in text:
            raise RequestInputError(f"'{key}' is neither a GUID nor an alternate key such as name='value'")
        return f"({url_quote(text, safe=_SAFE)})"
    raise RequestInputError(f"a key must be a GUID or a dict of alternate-key columns, not {key!r}")


def entity_path(entity_set: str, key: Any) -> str:
    """``accounts(…)``: the path of one row relative to the Web API root."""
    if not isinstance(entity_set, str) or not DOTTED_NAME.fullmatch(entity_set):
        raise RequestInputError(f"'{entity_set}' is not an entity set name (such as 'accounts')")
    return entity_set + format_key(key)
