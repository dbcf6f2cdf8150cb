"""FetchXML through the Web API: `GET {entityset}?fetchXml=<url-encoded XML>` (reference §4).

`handle(ctx, table)` answers the request the way Dataverse does: null columns are omitted, lookups
read as `_x_value`, link-entity columns as `alias.attr`, aggregates under their aliases, formatted
values and lookup names only when `Prefer: odata.include-annotations` asks for them.

Paging (§4.3): `count` (default and maximum 5,000) and `page`. When there are more rows the
response carries `@Microsoft.Dynamics.CRM.morerecords` and the paging cookie
`<cookie pagenumber="N+1" pagingcookie="<inner cookie, URL-encoded twice>" istracking="False" />`
(each only if the Prefer header asks for it). The inner cookie holds the first and last value of
every sort key of the page, sort keys being the orders then the primary key, so page N+1 sent
with it is a keyset query, `WHERE (keys) > (last keys)`, never an OFFSET (and an index seek when
the keys ascend over an indexed column pair such as (name, id)). Without a usable cookie (none,
one from a page other than N-1, or a query whose keys don't identify a root row, such as one
ordered by a joined column) page N falls back to OFFSET, as Dataverse ignores such cookies.

Orders follow Dataverse: choices sort by label, lookups by the related row's primary name, unless
`useraworderby="true"`; NULLs come first ascending.

The parser (fetchxml_parse) refuses DTDs, entity declarations and external references; the
planner (fetchxml_sql) checks every name against the schema and keeps values in parameters.

`execute_fetch(store, entity_set, fetch_xml, ...)` runs the same code without HTTP, for tests and
embedding; app routing calls `handle`.
"""

from __future__ import annotations

import json
import re
import weakref
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from d365_components.emulator import defaults
from d365_components.emulator.protocol.annotations import FORMATTED
from d365_components.emulator.protocol.errors import DataverseError, bad_request
from d365_components.emulator.query.fetchxml_parse import MAX_PAGE, Fetch, invalid, parse_fetch, parse_xml
from d365_components.emulator.query.fetchxml_plan import Plan, SortKey, option_labels, typed
from d365_components.emulator.query.fetchxml_sql import AGGREGATE_LIMIT, OPTION_LABEL, plan
from d365_components.emulator.query.filter_compiler import QueryUser
from d365_components.emulator.query.paging import keyset_after
from d365_components.emulator.records.query_audit import allow_options, unsupported_option
from d365_components.emulator.records.representation import add_value_annotations
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Column, Table
from d365_components.emulator.storage.store import Store

PAGING_COOKIE = "Microsoft.Dynamics.CRM.fetchxmlpagingcookie"
MORE_RECORDS = "Microsoft.Dynamics.CRM.morerecords"
TOTAL_COUNT = "Microsoft.Dynamics.CRM.totalrecordcount"
TOTAL_EXCEEDED = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"
ATTRIBUTE_NAME = "OData.Community.Display.V1.AttributeName"
AGGREGATE_LIMIT_EXCEEDED = "0x8004E023"
_GUID_TYPES = frozenset({"Uniqueidentifier", "Lookup", "Customer", "Owner"})
_prepared: weakref.WeakSet[Store] = weakref.WeakSet()   # stores whose connection has our SQL functions


def handle(ctx: Ctx, table: Table) -> Reply:
    """Answer `GET {table's entity set}?fetchXml=...`."""
    allow_options(ctx, frozenset({"$count"}))
    if "sql" in ctx.query:
        raise unsupported_option("sql")
    text = ctx.query.get("fetchXml", "")
    if not text.strip():
        raise invalid("The fetchXml parameter is empty.")
    fetch = parse_fetch(text)
    name = fetch.entity.name
    if name != table.logical_name:
        if name not in ctx.schema.tables:
            plan(ctx.schema, fetch)   # raises the unknown-entity error
        raise invalid(f"The entity name '{name}' in the FetchXML does not match the entity '{table.logical_name}' "
                      f"of the entity set '{table.entity_set}'.")
    p = plan(ctx.schema, fetch, QueryUser(ctx.user_id, ctx.business_unit_id))
    _prepare(ctx.store)
    size = fetch.top or min(fetch.count or MAX_PAGE, MAX_PAGE)
    rows, more = (_aggregate_rows if p.aggregate else _rows)(ctx, fetch, p, size)

    body: dict[str, Any] = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}({','.join(p.columns)})"}
    if more and ctx.wants(PAGING_COOKIE):
        body["@" + PAGING_COOKIE] = paging_cookie(p, rows, fetch.page)
    if more and ctx.wants(MORE_RECORDS):
        body["@" + MORE_RECORDS] = True
    if fetch.total_count or ctx.query.get("$count") == "true":
        n = _count(ctx, p, MAX_PAGE + 1)
        if ctx.query.get("$count") == "true":
            body["@odata.count"] = min(n, MAX_PAGE)
        if ctx.wants(TOTAL_COUNT):
            body["@" + TOTAL_COUNT] = min(n, MAX_PAGE)
        if ctx.wants(TOTAL_EXCEEDED):
            body["@" + TOTAL_EXCEEDED] = n > MAX_PAGE
    annotate = bool(ctx.annotations)
    body["value"] = [_row_json(ctx, p, row, annotate) for row in rows]
    headers = {"Preference-Applied": ",".join(dict.fromkeys(ctx.applied))} if ctx.applied else {}
    return Reply.json(200, body, headers)


# ---- running the SQL --------------------------------------------------------------------------

def _prepare(store: Store) -> None:
    """Register the SQL function that sorts choices by label, once per store connection."""
    if store not in _prepared:
        with store.lock:
            store.conn.create_function(OPTION_LABEL, 3, option_labels(store.schema), deterministic=True)
        _prepared.add(store)


def _rows(ctx: Ctx, fetch: Fetch, p: Plan, size: int) -> tuple[list[dict[str, Any]], bool]:
    where, params = p.where_sql, [*p.from_params, *p.where_params]
    offset = (fetch.page - 1) * size
    last = _cookie_keys(fetch, p) if fetch.paging_cookie and fetch.page > 1 and p.keyset else None
    if last is not None:
        after = _after(p.keys, last, params)
        where = f"({where}) AND {after}" if where else after
        offset = 0
    sql = f"SELECT {'DISTINCT ' if p.distinct else ''}{p.select_sql} FROM {p.from_sql}"
    if where:
        sql += f" WHERE {where}"
    limit = size if fetch.top else size + 1
    sql += f" ORDER BY {p.order_sql()} LIMIT {limit} OFFSET {offset}"
    rows = ctx.store.execute(sql, params)
    return rows[:size], len(rows) > size


def _after(keys: list[SortKey], last: list[Any], params: list[Any]) -> str:
    """Rows after `last` in key order (an index seek when every key ascends; see keyset_after)."""
    return keyset_after([(k.expr, k.descending) for k in keys], last, params)


def _aggregate_rows(ctx: Ctx, fetch: Fetch, p: Plan, size: int) -> tuple[list[dict[str, Any]], bool]:
    limit = min(fetch.aggregate_limit or AGGREGATE_LIMIT, AGGREGATE_LIMIT)
    if _count(ctx, p, limit + 1) > limit:
        raise bad_request("AggregateQueryRecordLimit exceeded. Cannot perform this operation.", AGGREGATE_LIMIT_EXCEEDED)
    sql = f"SELECT {p.select_sql} FROM {p.from_sql}"
    if p.where_sql:
        sql += f" WHERE {p.where_sql}"
    if p.group_sql:
        sql += f" GROUP BY {p.group_sql}"
    if p.keys:
        sql += f" ORDER BY {p.order_sql()}"
    limit = size if fetch.top else size + 1
    sql += f" LIMIT {limit} OFFSET {(fetch.page - 1) * size}"
    rows = ctx.store.execute(sql, [*p.from_params, *p.where_params])
    return rows[:size], len(rows) > size


def _count(ctx: Ctx, p: Plan, cap: int) -> int:
    inner = f"SELECT 1 FROM {p.from_sql}" + (f" WHERE {p.where_sql}" if p.where_sql else "") + f" LIMIT {int(cap)}"
    n: int = ctx.store.execute(f"SELECT count(*) AS n FROM ({inner})", [*p.from_params, *p.where_params])[0]["n"]
    return n


# ---- rows as JSON -----------------------------------------------------------------------------

def json_value(col: Column, v: Any) -> Any:
    t = col.type
    if t == "Boolean":
        return bool(v)
    if t in ("Money", "Decimal", "Double"):
        return float(v)
    if t == "DateTime" and col.format == "DateOnly":
        return v[:10]
    return v


def _row_json(ctx: Ctx, p: Plan, row: dict[str, Any], annotate: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not p.aggregate and not p.distinct:
        out["@odata.etag"] = f'W/"{row["_version"]}"'
    for o in p.outputs:
        v = row[o.label]
        if v is None:
            continue
        v = json_value(o.column, v)
        if annotate:
            if o.kind == "dategroup":
                if ctx.wants(FORMATTED):
                    out[f"{o.key}@{FORMATTED}"] = str(v)
            else:
                target: dict[str, Any] = {o.column.type_column: row[o.type_label]} if o.type_label and o.column.type_column else {}
                add_value_annotations(ctx, o.table, target, o.column, o.key, v, out)
            if o.attribute_name and ctx.wants(ATTRIBUTE_NAME):
                out[f"{o.key}@{ATTRIBUTE_NAME}"] = o.attribute_name
        out[o.key] = v
    return out


# ---- the paging cookie --------------------------------------------------------------------------

def _encode(text: str) -> str:
    """URL-encode like Dataverse: every reserved character, lower-case hex (`%3c`, `%20`)."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(text, safe=""))


def _cookie_text(key: SortKey, v: Any) -> str:
    if key.column is not None and key.column.type in _GUID_TYPES:
        return "{" + str(v).upper() + "}"
    return json.dumps(v) if isinstance(v, float) else str(v)


def paging_cookie(p: Plan, rows: list[dict[str, Any]], page: int) -> str:
    """The `fetchxmlpagingcookie` annotation for the page after `page` (§4.3)."""
    parts = []
    for key in (k for k in p.keys if k.root):
        attrs = ""
        for which, row in (("last", rows[-1]), ("first", rows[0])):
            v = row.get(key.label)
            if v is not None:
                attrs += f" {which}={quoteattr(_cookie_text(key, v))}"
        parts.append(f"<{key.name}{attrs} />")
    inner = f'<cookie page="{page}">{"".join(parts)}</cookie>'
    return f'<cookie pagenumber="{page + 1}" pagingcookie="{_encode(_encode(inner))}" istracking="False" />'


def _cookie_keys(fetch: Fetch, p: Plan) -> list[Any] | None:
    """The last row's sort keys from the request's cookie, or None when it can't drive this page."""
    assert fetch.paging_cookie is not None, "only called with a paging cookie"
    cookie = parse_xml(fetch.paging_cookie, "paging cookie")
    elements = [e for e in cookie if isinstance(e.tag, str)]
    if cookie.tag != "cookie" or cookie.get("page") != str(fetch.page - 1) or len(elements) != len(p.keys):
        return None
    values = []
    for el, key in zip(elements, p.keys, strict=False):
        if el.tag != key.name or key.column is None:
            return None
        text = el.get("last")
        try:
            values.append(None if text is None else typed(key.column, text))
        except DataverseError:
            return None
    return values


# ---- without HTTP ---------------------------------------------------------------------------------

def execute_fetch(store: Store, entity_set: str, fetch_xml: str, *, annotations: set[str] | str | None = None,
                  org_url: str = "https://emulator.local", count: bool = False,
                  user_id: str = defaults.APP_USER_ID,
                  business_unit_id: str = defaults.BUSINESS_UNIT_ID) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Run a FetchXML query against `store` as `GET {entity_set}?fetchXml=...` would.

    `annotations` is what `Prefer: odata.include-annotations` would carry ("*", a comma list, or a
    set of names). Returns (status, headers, JSON body), errors included (never raises a
    DataverseError).
    """
    headers = {}
    if annotations:
        names = annotations if isinstance(annotations, str) else ",".join(sorted(annotations))
        headers["prefer"] = f'odata.include-annotations="{names}"'
    query = {"fetchXml": fetch_xml, **({"$count": "true"} if count else {})}
    api = f"{org_url.rstrip('/')}/api/data/v9.2"
    ctx = Ctx(SimpleNamespace(store=store, org_url=org_url), "GET", api, entity_set, "", query, headers, b"",
              {}, user_id, None, business_unit_id)
    try:
        table = store.schema.by_set.get(entity_set)
        if table is None:
            raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{entity_set}'.")
        reply = handle(ctx, table)
    except DataverseError as exc:
        return exc.status, {"Content-Type": "application/json; odata.metadata=minimal", **exc.headers}, \
            json.loads(exc.body())
    return reply.status, reply.headers, json.loads(reply.body)
