"""Reading records: collection queries with keyset paging, $count, retrieve, a single property."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.protocol.errors import (
    QUERY_NOT_SUPPORTED,
    bad_request,
    method_not_allowed,
)
from d365_components.emulator.query import aggregate
from d365_components.emulator.query.filter_compiler import compile_filter
from d365_components.emulator.query.filter_grammar import substitute_aliases
from d365_components.emulator.query.paging import decode_token, encode_token, keyset_after
from d365_components.emulator.query.query_options import parse_expand, parse_orderby, parse_select, parse_top
from d365_components.emulator.records.representation import (
    MAX_PAGE,
    column_plan,
    context_select,
    expand_row,
    preference_headers,
    query_user,
    represent,
    to_json,
)
from d365_components.emulator.records.rows import find_row
from d365_components.emulator.records.values import ENTITY_REF, to_storage
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Column, Table
from d365_components.emulator.storage.store import q

COLLECTION_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$expand", "$count", "$skiptoken"}

# ---- queries --------------------------------------------------------------------------------

def query_collection(ctx: Ctx, table: Table, base_where: str = "", base_params: list[Any] | None = None,
                     context_path: str | None = None) -> Reply:
    """A collection GET with $select/$filter/$orderby/$top/$expand/$count and keyset paging."""
    opts = ctx.query
    if "$apply" in opts and not base_where:
        return aggregate.apply(ctx, table)
    for name in opts:
        if name.startswith("$") and name not in COLLECTION_OPTIONS:
            raise bad_request(f"The query parameter {name} is not supported", QUERY_NOT_SUPPORTED)
    aliases = {k: v for k, v in opts.items() if k.startswith("@")}
    cols = parse_select(table, opts.get("$select"))
    expands = parse_expand(opts.get("$expand"))
    params = list(base_params or [])
    where = base_where
    if opts.get("$filter"):
        cond, params = compile_filter(ctx.schema, table, substitute_aliases(opts["$filter"], aliases),
                                      user=query_user(ctx), params=params)
        where = f"({where}) AND {cond}" if where else cond
    order = parse_orderby(table, substitute_aliases(opts.get("$orderby", ""), aliases))
    keys = [(f"t0.{q(c.name)}", d) for c, d in order] + [(f"t0.{q(table.primary_id)}", False)]
    names = [c.name for c, _ in order] + [table.primary_id]

    page = MAX_PAGE
    max_page = ctx.prefer.get("odata.maxpagesize")
    top = parse_top(opts["$top"]) if "$top" in opts else None
    if max_page is not None:
        if not max_page.isdigit() or int(max_page) < 1:
            raise bad_request(f"The value '{max_page}' for odata.maxpagesize is not valid.")
        page = min(int(max_page), MAX_PAGE)
        ctx.applied.append(f"odata.maxpagesize={page}")
        top = None
    elif top is not None:
        page = min(top, MAX_PAGE)

    page_params = list(params)
    page_where = where
    if "$skiptoken" in opts:
        last = decode_token(opts["$skiptoken"], len(keys))
        after = keyset_after(keys, last, page_params)
        page_where = f"({where}) AND {after}" if where else after
    order_sql = ", ".join(f"{e}{' DESC' if d else ''}" for e, d in keys)
    rows = ctx.store.select(table.logical_name, page_where, page_params, order=order_sql,
                            limit=page + (0 if top is not None else 1))
    more = len(rows) > page
    rows = rows[:page]
    plan = column_plan(ctx, table, cols)
    values = []
    for row in rows:
        value = to_json(ctx, table, row, plan)
        if expands:
            expand_row(ctx, table, row, value, expands)
        values.append(value)
    body: dict[str, Any] = {"@odata.context": f"{ctx.api}/$metadata#{context_path or table.entity_set}{context_select(cols, expands)}"}
    if ctx.annotations and ctx.wants("Microsoft.Dynamics.CRM.globalmetadataversion"):
        body["@Microsoft.Dynamics.CRM.globalmetadataversion"] = str(ctx.schema.version)
    if opts.get("$count") == "true":
        n = ctx.store.count(table.logical_name, where, params, cap=MAX_PAGE + 1)
        body["@odata.count"] = min(n, MAX_PAGE)
        if ctx.wants("Microsoft.Dynamics.CRM.totalrecordcount"):
            body["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(n, MAX_PAGE)
        if ctx.wants("Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"):
            body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = n > MAX_PAGE
    elif opts.get("$count") not in (None, "false"):
        raise bad_request(f"'{opts['$count']}' is not a valid count option.")
    body["value"] = values
    if more:
        last = [rows[-1][n] for n in names]
        kept = [p for p in ctx.raw_query.split("&") if p and not p.startswith("$skiptoken=") and not p.startswith("%24skiptoken=")]
        kept.append("$skiptoken=" + encode_token(last))
        body["@odata.nextLink"] = f"{ctx.api}/{ctx.path}?{'&'.join(kept)}"
    return Reply.json(200, body, preference_headers(ctx))


def count_reply(ctx: Ctx, table: Table, where: str, params: list[Any]) -> Reply:
    if ctx.query.get("$filter"):
        aliases = {k: v for k, v in ctx.query.items() if k.startswith("@")}
        cond, params = compile_filter(ctx.schema, table, substitute_aliases(ctx.query["$filter"], aliases),
                                      user=query_user(ctx), params=list(params))
        where = f"({where}) AND {cond}" if where else cond
    n = ctx.store.count(table.logical_name, where, params)
    return Reply(200, str(n).encode(), {"Content-Type": "text/plain"})


# ---- retrieve -------------------------------------------------------------------------------

def retrieve(ctx: Ctx, table: Table, key: str) -> Reply:
    for name in ctx.query:
        if name.startswith("$") and name not in COLLECTION_OPTIONS:
            raise bad_request(f"The query parameter {name} is not supported", QUERY_NOT_SUPPORTED)
    row = find_row(ctx, table, key, required=True)
    etag = f'W/"{row["versionnumber"]}"'
    inm = ctx.headers.get("if-none-match")
    if inm and inm != "null" and inm == etag and "$expand" not in ctx.query and not ctx.annotations:
        return Reply.empty(304, {"ETag": etag})
    cols = parse_select(table, ctx.query.get("$select"))
    expands = parse_expand(ctx.query.get("$expand"))
    body = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}{context_select(cols, expands)}/$entity"}
    body.update(represent(ctx, table, row, cols, expands))
    return Reply.json(200, body, preference_headers(ctx, {"ETag": etag}))


def property_value(ctx: Ctx, table: Table, row: dict[str, Any], col: Column) -> Reply:
    row_id = row[table.primary_id]
    if ctx.method == "GET":
        value = to_json(ctx, table, row, column_plan(ctx, table, [col])).get(col.json_name)
        if value is None:
            return Reply.empty(204)
        return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}({row_id})/{col.json_name}",
                                "value": value})
    if ctx.method in ("PUT", "DELETE"):
        if col.is_lookup:
            raise bad_request(ENTITY_REF)
        value = ctx.json_body().get("value") if ctx.method == "PUT" else None
        values = {col.name: to_storage(table, col, value)}
        with ctx.store.transaction():
            ctx.store.update(table.logical_name, row_id, values, user=ctx.user_id, on_behalf_of=ctx.on_behalf_of, before=row)
        return Reply.empty(204)
    raise method_not_allowed(ctx.method)


def raw_value(ctx: Ctx, table: Table, row: dict[str, Any], col: Column) -> Reply:
    """`GET accounts(id)/numberofemployees/$value`: the value as plain text (OData §11.2.4.1), 204 when null."""
    if ctx.method != "GET":
        raise method_not_allowed(ctx.method)
    for name in ctx.query:
        if name.startswith("$"):
            raise bad_request(f"The query parameter {name} is not supported", QUERY_NOT_SUPPORTED)
    value = to_json(ctx, table, row, column_plan(ctx, table, [col])).get(col.json_name)
    if value is None:
        return Reply.empty(204)
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return Reply(200, text.encode(), {"Content-Type": "text/plain"})
