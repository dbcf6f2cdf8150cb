"""`GET {entityset}?sql=<statement>`: the SQL subset (query/sql.py) run over the same storage as OData.

Rows carry exactly the selected columns or aliases (null values included, as the SDK expects its
keys). Pages hold at most 5,000 rows (or `Prefer: odata.maxpagesize`); a longer result carries an
`@odata.nextLink` whose opaque `$skiptoken` is the next page's offset in the statement's order.
"""

from __future__ import annotations

from typing import Any

from d365_components.emulator.protocol.errors import INVALID_ARGUMENT, QUERY_NOT_SUPPORTED, bad_request
from d365_components.emulator.query.paging import decode_token, encode_token
from d365_components.emulator.query.sql import Compiled, compile_sql
from d365_components.emulator.records.representation import MAX_PAGE
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Table

ALLOWED = {"sql", "$skiptoken"}


def handle(ctx: Ctx, table: Table) -> Reply:
    """Answer `GET {table's entity set}?sql=...`."""
    for name in ctx.query:
        if name not in ALLOWED:
            raise bad_request(f"The query parameter {name} is not supported with the sql query parameter.",
                              QUERY_NOT_SUPPORTED)
    text = ctx.query.get("sql", "")
    if not text.strip():
        raise bad_request("The sql query parameter is empty.", INVALID_ARGUMENT)
    plan = compile_sql(ctx.schema, text)
    if plan.root.logical_name != table.logical_name:
        raise bad_request(f"The table '{plan.root.logical_name}' in the SQL query does not match the entity "
                          f"set '{table.entity_set}'.", INVALID_ARGUMENT)
    page = MAX_PAGE
    max_page = ctx.prefer.get("odata.maxpagesize")
    if max_page is not None:
        if not max_page.isdigit() or int(max_page) < 1:
            raise bad_request(f"The value '{max_page}' for odata.maxpagesize is not valid.")
        page = min(int(max_page), MAX_PAGE)
        ctx.applied.append(f"odata.maxpagesize={page}")
    skip = decode_token(ctx.query["$skiptoken"], 1)[0] if "$skiptoken" in ctx.query else 0
    if not isinstance(skip, int) or skip < 0:
        raise bad_request("The $skiptoken value is not valid.")
    limit = plan.top if plan.top is not None else plan.fetch
    remaining = None if limit is None else max(limit - skip, 0)
    size = page if remaining is None else min(page, remaining)
    rows = _run(ctx, plan, plan.offset + skip, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    body: dict[str, Any] = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}",
                            "value": [_row_json(plan, row) for row in rows]}
    if more:
        kept = [p for p in ctx.raw_query.split("&") if p and not p.startswith(("$skiptoken=", "%24skiptoken="))]
        kept.append("$skiptoken=" + encode_token([skip + size]))
        body["@odata.nextLink"] = f"{ctx.api}/{ctx.path}?{'&'.join(kept)}"
    headers = {"Preference-Applied": ",".join(dict.fromkeys(ctx.applied))} if ctx.applied else {}
    return Reply.json(200, body, headers)


def _run(ctx: Ctx, plan: Compiled, offset: int, limit: int) -> list[dict[str, Any]]:
    sql = f"SELECT {'DISTINCT ' if plan.distinct else ''}{plan.select_sql} FROM {plan.from_sql}"
    if plan.where_sql:
        sql += f" WHERE {plan.where_sql}"
    if plan.group_sql:
        sql += f" GROUP BY {plan.group_sql}"
    sql += f" ORDER BY {plan.order_sql} LIMIT ? OFFSET ?"
    return ctx.store.execute(sql, [*plan.params, limit, offset])


def _row_json(plan: Compiled, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for output in plan.outputs:
        v = row.get(output.key)
        col = output.column
        if v is not None and col is not None:
            if col.type == "Boolean":
                v = bool(v)
            elif col.type in ("Money", "Decimal", "Double"):
                v = float(v)
            elif col.type == "DateTime" and col.format == "DateOnly":
                v = v[:10]
        out[output.key] = v
    return out
