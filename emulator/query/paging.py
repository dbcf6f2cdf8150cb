"""Keyset paging: rows are ordered by the $orderby columns then the primary key, and the opaque `$skiptoken` carries the last row's sort values, so each page is one indexed range scan."""

from __future__ import annotations

import base64
import json
from typing import Any

from d365_components.emulator.protocol.errors import bad_request

# ---- keyset paging ------------------------------------------------------------------------

def encode_token(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, width: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        raise bad_request("The $skiptoken value is not valid.") from None
    if not isinstance(values, list) or len(values) != width or not all(map(_sql_scalar, values)):
        raise bad_request("The $skiptoken value is not valid.")
    return values


def _sql_scalar(value: Any) -> bool:
    """A value SQLite can bind: tokens are opaque, but a hand-made one must not become a 500."""
    if isinstance(value, int):
        return -(1 << 63) <= value < (1 << 63)
    return value is None or isinstance(value, (str, float))


def keyset_after(keys: list[tuple[str, bool]], last: list[Any], params: list[Any]) -> str:
    """SQL condition: rows strictly after `last` in ORDER BY keys (NULLs first ascending).

    All-ascending keys with no NULL in `last` become a row-value comparison `(a, id) > (?, ?)`,
    which SQLite answers with an index seek; the OR-expansion (any other shape) scans the index."""
    if not any(desc for _, desc in keys) and None not in last:
        params.extend(last)
        return f"(({', '.join(expr for expr, _ in keys)}) > ({', '.join('?' * len(keys))}))"
    clauses = []
    for i, (expr, desc) in enumerate(keys):
        value = last[i]
        if value is None:
            after = None if desc else f"{expr} IS NOT NULL"
        else:
            after = f"({expr} < ? OR {expr} IS NULL)" if desc else f"{expr} > ?"
        if after is None:
            continue
        eqs = [f"{keys[j][0]} IS ?" for j in range(i)]
        clause_params = [last[j] for j in range(i)] + ([value] if value is not None else [])
        clauses.append("(" + " AND ".join(eqs + [after]) + ")")
        params.extend(clause_params)
    return "(" + " OR ".join(clauses) + ")" if clauses else "0"
