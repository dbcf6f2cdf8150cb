"""Business data through the Web API: create, retrieve, update, upsert, delete, query, associate.

`handle(ctx, table, key, rest)` serves every URL rooted at an entity set:
`accounts`, `accounts/$count`, `accounts(<key>)`, `accounts(<key>)/<property>`,
`accounts(<key>)/<navigation>[/$ref|/$count]`, `accounts(<key>)/<nav>(<key>)/$ref`.
Semantics follow reference/dataverse-web-api.md §2 and §3: 204 + OData-EntityId or 201/200 with
`Prefer: return=representation`, ETags from `versionnumber`, upsert with If-Match/If-None-Match,
`@odata.bind`, deep insert, keyset paging with an opaque `$skiptoken`.
"""

from __future__ import annotations

import math
import re
from urllib.parse import unquote

from d365_components.emulator.context import Ctx, Reply
from d365_components.emulator.errors import (
    INVALID_ARGUMENT,
    INVALID_STATE_STATUS,
    OPTION_OUT_OF_RANGE,
    QUERY_NOT_SUPPORTED,
    VALIDATION,
    DataverseError,
    already_exists,
    bad_request,
    duplicate_key,
    key_not_found,
    method_not_allowed,
    not_supported,
    record_not_found,
    segment_not_found,
    unknown_body_property,
    version_mismatch,
)
from d365_components.emulator.literals import (
    GUID_RE,
    Alias,
    Guid,
    parse_args,
    parse_literal,
    split_path,
    split_segment,
)
from d365_components.emulator.query import (
    Expand,
    QueryUser,
    compile_filter,
    decode_token,
    encode_token,
    iso_datetime,
    keyset_after,
    parse_expand,
    parse_orderby,
    parse_select,
    parse_top,
    substitute_aliases,
)
from d365_components.emulator.schema import Column, Table
from d365_components.emulator.store import q

MAX_PAGE = 5000
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
ASSOCIATED_NAV = "Microsoft.Dynamics.CRM.associatednavigationproperty"
COLLECTION_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$expand", "$count", "$skiptoken"}
ENTITY_REF = "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead."


# ---- routing ------------------------------------------------------------------------------

def handle(ctx: Ctx, table: Table, key: str | None, rest: list[str]) -> Reply:
    m = ctx.method
    if key is None:
        if not rest:
            if m == "GET":
                return query_collection(ctx, table)
            if m == "POST":
                return create(ctx, table)
            raise method_not_allowed(m)
        if rest == ["$count"] and m == "GET":
            return count_reply(ctx, table, "", [])
        raise segment_not_found(rest[0])
    if not rest:
        if m == "GET":
            return retrieve(ctx, table, key)
        if m == "PATCH":
            return upsert(ctx, table, key)
        if m == "DELETE":
            return delete(ctx, table, key)
        raise method_not_allowed(m)
    name, sub_key = split_segment(rest[0])
    row = find_row(ctx, table, key, required=True)
    if name in table.collection_navs:
        return collection_nav(ctx, table, row, table.collection_navs[name], sub_key, rest[1:])
    if name in table.single_navs and sub_key is None:
        return single_nav(ctx, table, row, table.single_navs[name], rest[1:])
    col = table.column_for_json(name)
    if col is not None and sub_key is None and col.type in ("File", "Image"):
        from d365_components.emulator import files

        return files.handle(ctx, table, row, col, rest[1:])
    if col is not None and sub_key is None and not rest[1:]:
        return property_value(ctx, table, row, col)
    raise segment_not_found(rest[0])


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
            return values
    raise _bad_key(table)


def _bad_key(table: Table) -> DataverseError:
    t = f"Microsoft.Dynamics.CRM.{table.logical_name}"
    return bad_request(f"The key in the request URI is not valid for resource '{t}'. Ensure that the names and "
                       f"number of key properties match the declared or alternate key properties for the resource '{t}'.")


def lookup_key(ctx: Ctx, table: Table, values: dict) -> dict | None:
    if table.primary_id in values:
        return ctx.store.get(table.logical_name, values[table.primary_id])
    where = " AND ".join(f"t0.{q(c)} = ?" for c in values)
    rows = ctx.store.select(table.logical_name, where, list(values.values()), limit=1)
    return rows[0] if rows else None


def find_row(ctx: Ctx, table: Table, key: str, *, required: bool) -> dict | None:
    values = parse_key(ctx, table, key)
    row = lookup_key(ctx, table, values)
    if row is None and required:
        raise not_found(table, values)
    return row


def not_found(table: Table, values: dict) -> DataverseError:
    if table.primary_id in values:
        return record_not_found(table.logical_name, values[table.primary_id])
    return key_not_found(table.logical_name)


def resolve_reference(ctx: Ctx, url: str, targets: tuple[str, ...] | None, what: str) -> tuple[Table, dict]:
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


# ---- serialization -------------------------------------------------------------------------

def _plan(ctx: Ctx, table: Table, cols: list[Column] | None) -> list[tuple]:
    key = ("plan", table.logical_name, tuple(c.name for c in cols) if cols else None, ctx.schema.version)
    cache = ctx.store.plans
    plan = cache.get(key)
    if plan is None:
        chosen = cols if cols is not None else list(table.columns.values())
        if cols is not None:
            if table.columns[table.primary_id] not in chosen:
                chosen = chosen + [table.columns[table.primary_id]]
            if any(c.type == "Money" for c in chosen) and "transactioncurrencyid" in table.columns \
                    and table.columns["transactioncurrencyid"] not in chosen:
                chosen = chosen + [table.columns["transactioncurrencyid"]]
        plan = [(c.name, c.json_name, c.type, c) for c in chosen]
        if len(cache) > 2000:
            cache.clear()
        cache[key] = plan
    return plan


def to_json(ctx: Ctx, table: Table, row: dict, plan: list[tuple]) -> dict:
    out = {"@odata.etag": f'W/"{row.get("versionnumber")}"'}
    annotate = bool(ctx.annotations)
    for name, json_name, kind, col in plan:
        v = row.get(name)
        if v is not None:
            if kind == "Boolean":
                v = bool(v)
            elif kind in ("Money", "Decimal", "Double"):
                v = float(v)
            elif kind == "DateTime" and col.format == "DateOnly":
                v = v[:10]
        if annotate and v is not None:
            _annotate(ctx, table, row, col, json_name, v, out)
        out[json_name] = v
    return out


def _annotate(ctx: Ctx, table: Table, row: dict, col: Column, json_name: str, v, out: dict) -> None:
    formatted = None
    t = col.type
    if col.option_set is not None and t != "MultiSelectPicklist":
        formatted = col.option_set.label(int(v))
    elif t == "MultiSelectPicklist":
        formatted = "; ".join(col.option_set.label(int(x)) or x for x in str(v).split(",") if x)
    elif t == "Money":
        formatted = f"${v:,.2f}" if v >= 0 else f"-${-v:,.2f}"
    elif t in ("Integer", "BigInt"):
        formatted = f"{v:,}"
    elif t in ("Decimal", "Double"):
        formatted = f"{v:,.2f}"
    elif t == "DateTime":
        formatted = _format_date(v, col.format == "DateOnly")
    elif col.is_lookup:
        target = row.get(col.type_column) if col.type_column else col.targets[0]
        if target in ctx.schema.tables:
            formatted = _primary_name(ctx, target, v)
            if ctx.wants(f"{json_name}@{ASSOCIATED_NAV}") or ctx.wants(ASSOCIATED_NAV):
                out[f"{json_name}@{ASSOCIATED_NAV}"] = ctx.schema.nav_for_lookup(table, col.name, target) or col.name
            if ctx.wants(LOOKUP_NAME):
                out[f"{json_name}@{LOOKUP_NAME}"] = target
    if formatted is not None and ctx.wants(FORMATTED):
        out[f"{json_name}@{FORMATTED}"] = formatted


def _format_date(v: str, date_only: bool) -> str:
    y, mo, d = int(v[0:4]), int(v[5:7]), int(v[8:10])
    if date_only:
        return f"{mo}/{d}/{y}"
    h, mi = int(v[11:13]), int(v[14:16])
    return f"{mo}/{d}/{y} {(h % 12) or 12}:{mi:02d} {'AM' if h < 12 else 'PM'}"


def _primary_name(ctx: Ctx, table_name: str, row_id: str):
    key = ("name", table_name, row_id)
    if key not in ctx.cache:
        t = ctx.schema.tables[table_name]
        rows = ctx.store.select(table_name, f"t0.{q(t.primary_id)} = ?", [row_id], columns=f"t0.{q(t.primary_name)} AS n")
        ctx.cache[key] = rows[0]["n"] if rows else None
    return ctx.cache[key]


def context_select(cols: list[Column] | None, expands: list[Expand]) -> str:
    parts = [c.json_name for c in cols] if cols else []
    for e in expands:
        inner = e.select or ""
        parts.append(f"{e.nav}({inner})" if inner else e.nav)
    return f"({','.join(parts)})" if parts else ""


def represent(ctx: Ctx, table: Table, row: dict, cols: list[Column] | None, expands: list[Expand]) -> dict:
    out = to_json(ctx, table, row, _plan(ctx, table, cols))
    if expands:
        expand_row(ctx, table, row, out, expands)
    return out


# ---- $expand --------------------------------------------------------------------------------

def expand_row(ctx: Ctx, table: Table, row: dict, out: dict, expands: list[Expand], depth: int = 0) -> None:
    nested = depth > 0 or any(e.expand for e in expands)
    for e in expands:
        if e.nav in table.single_navs:
            nav = table.single_navs[e.nav]
            if e.filter or e.orderby or e.top is not None:
                raise not_supported("Only $select and $filter clause can be provided while doing $expand on many-to-one "
                                    "relationship or nested one-to-many relationship.")
            col = table.columns[nav.column]
            target_id = row.get(nav.column)
            target_name = (row.get(col.type_column) if col.type_column else nav.targets[0])
            if target_id is None or target_name not in nav.targets:
                out[e.nav] = None
                continue
            target = ctx.schema.tables[target_name]
            if e.ref:
                out[e.nav] = {"@odata.id": entity_url(ctx, target, target_id)}
                continue
            related = ctx.store.get(target_name, target_id)
            if related is None:
                out[e.nav] = None
                continue
            value = to_json(ctx, target, related, _plan(ctx, target, parse_select(target, e.select)))
            if e.expand:
                expand_row(ctx, target, related, value, e.expand, depth + 1)
            out[e.nav] = value
        elif e.nav in table.collection_navs:
            if e.ref:
                raise not_supported("Expand with $ref is only supported on lookup type navigation property.")
            if nested and (e.orderby or e.top is not None):
                raise not_supported("Only $select and $filter clause can be provided while doing $expand on many-to-one "
                                    "relationship or nested one-to-many relationship.")
            nav = table.collection_navs[e.nav]
            target = ctx.schema.tables[nav.target]
            where, params = _nav_where(nav, target, row[table.primary_id])
            if e.filter:
                cond, params = compile_filter(ctx.schema, target, substitute_aliases(e.filter, {}), user=_user(ctx), params=params)
                where = f"{where} AND {cond}"
            order = ", ".join(f"t0.{q(c.name)}{' DESC' if d else ''}" for c, d in parse_orderby(target, e.orderby))
            order = (order + ", " if order else "") + f"t0.{q(target.primary_id)}"
            limit = min(e.top, MAX_PAGE) if e.top is not None else MAX_PAGE
            children = ctx.store.select(target.logical_name, where, params, order=order, limit=limit)
            plan = _plan(ctx, target, parse_select(target, e.select))
            values = []
            for child in children:
                value = to_json(ctx, target, child, plan)
                if e.expand:
                    expand_row(ctx, target, child, value, e.expand, depth + 1)
                values.append(value)
            out[e.nav] = values
        else:
            raise bad_request(f"Could not find a property named '{e.nav}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.")


def _nav_where(nav, target: Table, row_id: str) -> tuple[str, list]:
    if nav.many_to_many:
        return (f"t0.{q(target.primary_id)} IN (SELECT {q(nav.target_id)} FROM {q(nav.intersect)} "
                f"WHERE {q(nav.own_id)} = ?)"), [row_id]
    return f"t0.{q(nav.column)} = ?", [row_id]


def _user(ctx: Ctx) -> QueryUser:
    return QueryUser(ctx.user_id, ctx.business_unit_id)


# ---- queries --------------------------------------------------------------------------------

def query_collection(ctx: Ctx, table: Table, base_where: str = "", base_params: list | None = None,
                     context_path: str | None = None) -> Reply:
    """A collection GET with $select/$filter/$orderby/$top/$expand/$count and keyset paging."""
    opts = ctx.query
    if "$apply" in opts and not base_where:
        from d365_components.emulator.aggregate import apply
        return apply(ctx, table)
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
                                      user=_user(ctx), params=params)
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
    plan = _plan(ctx, table, cols)
    values = []
    for row in rows:
        value = to_json(ctx, table, row, plan)
        if expands:
            expand_row(ctx, table, row, value, expands)
        values.append(value)
    body = {"@odata.context": f"{ctx.api}/$metadata#{context_path or table.entity_set}{context_select(cols, expands)}"}
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
    return Reply.json(200, body, _applied(ctx))


def count_reply(ctx: Ctx, table: Table, where: str, params: list) -> Reply:
    if ctx.query.get("$filter"):
        aliases = {k: v for k, v in ctx.query.items() if k.startswith("@")}
        cond, params = compile_filter(ctx.schema, table, substitute_aliases(ctx.query["$filter"], aliases),
                                      user=_user(ctx), params=list(params))
        where = f"({where}) AND {cond}" if where else cond
    n = ctx.store.count(table.logical_name, where, params)
    return Reply(200, str(n).encode(), {"Content-Type": "text/plain"})


def _applied(ctx: Ctx, extra: dict | None = None) -> dict:
    h = dict(extra or {})
    if ctx.applied:
        h["Preference-Applied"] = ",".join(dict.fromkeys(ctx.applied))
    return h


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
    return Reply.json(200, body, _applied(ctx, {"ETag": etag}))


def property_value(ctx: Ctx, table: Table, row: dict, col: Column) -> Reply:
    row_id = row[table.primary_id]
    if ctx.method == "GET":
        value = to_json(ctx, table, row, _plan(ctx, table, [col])).get(col.json_name)
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


# ---- writes ---------------------------------------------------------------------------------

def to_storage(table: Table, col: Column, value):
    """A JSON value -> the stored value for `col`, or the 400 Dataverse gives."""
    if value is None:
        return None
    t = col.type
    edm = col.edm_type
    if t in ("String", "Memo", "EntityName"):
        if not isinstance(value, str):
            raise _cannot_convert(value, edm)
        if col.max_length and len(value) > col.max_length:
            raise bad_request(f"A validation error occurred.  The length of the '{col.name}' attribute of the "
                              f"'{table.logical_name}' entity exceeded the maximum allowed length of '{col.max_length}'.",
                              VALIDATION)
        return value
    if t in ("Integer", "BigInt"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _cannot_convert(value, edm)
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
            raise _cannot_convert(value, edm)
        if (col.min_value is not None and number < col.min_value) or (col.max_value is not None and number > col.max_value):
            raise bad_request(f"A validation error occurred.  The value {value} of '{col.name}' on record of type "
                              f"'{table.logical_name}' is outside the valid range.", VALIDATION)
        return number
    if t == "Boolean":
        if not isinstance(value, bool):
            raise _cannot_convert(value, edm)
        return int(value)
    if t in ("Picklist", "State", "Status"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _cannot_convert(value, edm)
        if col.option_set and value not in col.option_set.values():
            accepted = ",".join(str(v) for v in col.option_set.values())
            raise bad_request(f"A validation error occurred.  The value {value} of '{col.name}' on record of type "
                              f"'{table.logical_name}' is outside the valid range. Accepted Values: {accepted}",
                              OPTION_OUT_OF_RANGE)
        return value
    if t == "MultiSelectPicklist":
        if not isinstance(value, str):
            raise _cannot_convert(value, edm)
        items = [v.strip() for v in value.split(",") if v.strip()]
        allowed = set(col.option_set.values()) if col.option_set else None
        for item in items:
            if not re.fullmatch(r"-?\d+", item) or (allowed is not None and int(item) not in allowed):
                raise bad_request(f"A validation error occurred.  The value {item} of '{col.name}' on record of type "
                                  f"'{table.logical_name}' is outside the valid range.", OPTION_OUT_OF_RANGE)
        return ",".join(items) or None
    if t == "DateTime":
        if not isinstance(value, str):
            raise _cannot_convert(value, edm)
        return iso_datetime(value)
    if t == "Uniqueidentifier":
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise _cannot_convert(value, edm)
        return value.lower()
    return value


def _cannot_convert(value, edm: str) -> DataverseError:
    import json
    return bad_request(f"Cannot convert the literal '{json.dumps(value) if not isinstance(value, str) else value}' "
                       f"to the expected type '{edm}'.")


# States an update may not set: Dataverse closes these rows only through their messages, which
# also write the close activity (opportunityclose, incidentresolution).
STATES_BY_MESSAGE = {
    ("opportunity", 1): ("Won", "WinOpportunity"),
    ("opportunity", 2): ("Lost", "LoseOpportunity"),
    ("incident", 1): ("Resolved", "CloseIncident"),
}


def convert_body(ctx: Ctx, table: Table, body: dict, *, creating: bool) -> tuple[dict, list]:
    """A request body -> (column values, operations to run once the row exists)."""
    values: dict = {}
    later: list = []
    for key, value in body.items():
        if key.startswith("@"):
            continue
        if key.endswith("@odata.bind"):
            nav_name = key[:-len("@odata.bind")]
            _bind(ctx, table, nav_name, value, values, later)
            continue
        if "@" in key:
            continue
        if key in table.single_navs:
            nav = table.single_navs[key]
            col = table.columns[nav.column]
            if value is None:
                values[col.name] = None
                if col.type_column:
                    values[col.type_column] = None
            elif isinstance(value, dict):
                target = ctx.schema.tables[_deep_target(ctx, nav, value)]
                child = create_row(ctx, target, value)
                values[col.name] = child[target.primary_id]
                if col.type_column:
                    values[col.type_column] = target.logical_name
            else:
                raise bad_request(ENTITY_REF)
            continue
        if key in table.collection_navs:
            if not isinstance(value, list):
                raise bad_request(f"The value of '{key}' must be an array of objects.")
            nav = table.collection_navs[key]
            later.append(lambda row, nav=nav, items=value: _deep_children(ctx, table, row, nav, items))
            continue
        col = table.column_for_json(key)
        if col is None:
            raise unknown_body_property(key, table.logical_name)
        if col.is_lookup:
            raise bad_request(ENTITY_REF)
        if not col.writable or (col.is_primary_id and not creating):
            continue
        values[col.name] = to_storage(table, col, value)
    if not creating and (table.logical_name, values.get("statecode")) in STATES_BY_MESSAGE:
        label, message = STATES_BY_MESSAGE[table.logical_name, values["statecode"]]
        # Wording as Dataverse's SetState/Update refusal is commonly quoted; the code is UNCONFIRMED.
        raise bad_request(f"This message can not be used to set the state of {table.logical_name} to {label}. "
                          f"In order to set state of {table.logical_name} to {label}, use the {message}Request "
                          f"message instead (the Web API's {message} action).", INVALID_ARGUMENT)
    if "statecode" in values and "statuscode" in values and values["statuscode"] is not None:
        state_of = {o.value: o.state for o in table.columns["statuscode"].option_set.options}
        if state_of.get(values["statuscode"]) != values["statecode"]:
            raise bad_request(f"{values['statuscode']} is not a valid status code for state code "
                              f"{table.schema_name}State.{values['statecode']}.", INVALID_STATE_STATUS)
    return values, later


def _deep_target(ctx: Ctx, nav, value: dict) -> str:
    typed = str(value.get("@odata.type") or "").lstrip("#").rsplit(".", 1)[-1]
    if typed in nav.targets:
        return typed
    return nav.targets[0]


def _bind(ctx: Ctx, table: Table, nav_name: str, value, values: dict, later: list) -> None:
    if nav_name in table.single_navs:
        nav = table.single_navs[nav_name]
        col = table.columns[nav.column]
        if value is None:
            values[col.name] = None
            if col.type_column:
                values[col.type_column] = None
            return
        target, row = resolve_reference(ctx, value, nav.targets, nav_name)
        values[col.name] = row[target.primary_id]
        if col.type_column:
            values[col.type_column] = target.logical_name
        return
    if nav_name in table.collection_navs:
        nav = table.collection_navs[nav_name]
        if not isinstance(value, list):
            raise bad_request(f"The value of '{nav_name}@odata.bind' must be an array of URLs.")
        refs = [resolve_reference(ctx, v, (nav.target,), nav_name) for v in value]
        later.append(lambda row, nav=nav, refs=refs: [_link(ctx, table, row, nav, t, r) for t, r in refs])
        return
    raise bad_request(f"An undeclared property '{nav_name}' which only has property annotations in the payload but no "
                      "property value was found in the payload. In OData, only declared navigation properties and "
                      "declared named streams can be represented as properties without values.")


def _link(ctx: Ctx, table: Table, row: dict, nav, target: Table, target_row: dict, *, strict: bool = False) -> None:
    """Add `target_row` to `row`'s collection navigation property `nav`."""
    row_id, target_id = row[table.primary_id], target_row[target.primary_id]
    if nav.many_to_many:
        ok = ctx.store.associate(nav.intersect, (nav.own_id, nav.target_id), (row_id, target_id))
        if not ok and strict:
            raise duplicate_key()
        return
    col = target.columns[nav.column]
    values = {col.name: row_id}
    if col.type_column:
        values[col.type_column] = table.logical_name
    ctx.store.update(target.logical_name, target_id, values, user=ctx.user_id, on_behalf_of=ctx.on_behalf_of,
                     before=target_row)


def _deep_children(ctx: Ctx, table: Table, row: dict, nav, items: list) -> None:
    target = ctx.schema.tables[nav.target]
    for item in items:
        if not isinstance(item, dict):
            raise bad_request(f"The value of '{nav.name}' must be an array of objects.")
        if nav.many_to_many:
            _link(ctx, table, row, nav, target, create_row(ctx, target, item))
            continue
        back = {nav.column: row[table.primary_id]}          # born linked: one Create, no Update
        type_column = target.columns[nav.column].type_column
        if type_column:
            back[type_column] = table.logical_name
        create_row(ctx, target, item, extra=back)


def create_row(ctx: Ctx, table: Table, body: dict, extra: dict | None = None) -> dict:
    """Insert one row from a JSON body (binds, deep insert); inside a transaction when the body nests."""
    values, later = convert_body(ctx, table, body, creating=True)
    if extra:
        for k, v in extra.items():
            values.setdefault(k, v)
    row = ctx.store.insert(table.logical_name, values, user=ctx.user_id, on_behalf_of=ctx.on_behalf_of)
    for op in later:
        op(row)
    return row


def _nested(body: dict) -> bool:
    """Whether a body writes more than one row (deep insert, collection binds)."""
    return any(isinstance(v, (dict, list)) for v in body.values())


def create(ctx: Ctx, table: Table) -> Reply:
    body = ctx.json_body()
    if _nested(body):
        with ctx.store.transaction():
            row = create_row(ctx, table, body)
    else:                                    # one INSERT is atomic by itself
        row = create_row(ctx, table, body)
    row_id = row[table.primary_id]
    if ctx.wants_representation():
        row = ctx.store.get(table.logical_name, row_id)
        cols = parse_select(table, ctx.query.get("$select"))
        expands = parse_expand(ctx.query.get("$expand"))
        payload = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}/$entity"}
        payload.update(represent(ctx, table, row, cols, expands))
        return Reply.json(201, payload, _applied(ctx, {"ETag": payload["@odata.etag"],
                                                       "OData-EntityId": entity_url(ctx, table, row_id)}))
    url = entity_url(ctx, table, row_id)
    return Reply.empty(204, {"OData-EntityId": url, "Location": url})


def _check_etag(ctx: Ctx, row: dict) -> None:
    if_match = ctx.headers.get("if-match")
    if if_match and if_match != "*" and if_match != f'W/"{row["versionnumber"]}"':
        raise version_mismatch()


def upsert(ctx: Ctx, table: Table, key: str) -> Reply:
    body = ctx.json_body()
    key_values = parse_key(ctx, table, key)
    if_match = ctx.headers.get("if-match")
    if_none_match = ctx.headers.get("if-none-match")
    if if_none_match == "null":
        if_none_match = None
    addressed = f"{ctx.api}/{table.entity_set}({key})"
    with ctx.store.transaction():
        row = lookup_key(ctx, table, key_values)
        if row is None:
            if if_match:
                raise not_found(table, key_values)
            row = create_row(ctx, table, body, extra=key_values)
            created = True
        else:
            if if_none_match == "*":
                raise already_exists()
            _check_etag(ctx, row)
            body = {k: v for k, v in body.items() if k not in key_values or k == table.primary_id}
            values, later = convert_body(ctx, table, body, creating=False)
            _, row = ctx.store.update(table.logical_name, row[table.primary_id], values, user=ctx.user_id,
                                      on_behalf_of=ctx.on_behalf_of, before=row)
            for op in later:
                op(row)
            created = False
    if ctx.wants_representation():
        row = ctx.store.get(table.logical_name, row[table.primary_id])
        cols = parse_select(table, ctx.query.get("$select"))
        payload = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}/$entity"}
        payload.update(represent(ctx, table, row, cols, []))
        return Reply.json(201 if created else 200, payload, _applied(ctx, {"ETag": payload["@odata.etag"]}))
    return Reply.empty(204, {"OData-EntityId": addressed})


def delete(ctx: Ctx, table: Table, key: str) -> Reply:
    with ctx.store.transaction():
        row = find_row(ctx, table, key, required=True)
        _check_etag(ctx, row)
        ctx.store.delete(table.logical_name, row[table.primary_id])
    return Reply.empty(204)


# ---- navigation properties ------------------------------------------------------------------

def single_nav(ctx: Ctx, table: Table, row: dict, nav, rest: list[str]) -> Reply:
    col = table.columns[nav.column]
    target_name = row.get(col.type_column) if col.type_column else nav.targets[0]
    target_id = row.get(nav.column)
    if rest == ["$ref"]:
        if ctx.method == "GET":
            if target_id is None or target_name not in nav.targets:
                return Reply.empty(204)
            target = ctx.schema.tables[target_name]
            return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#$ref",
                                    "@odata.id": entity_url(ctx, target, target_id)})
        if ctx.method == "PUT":
            ref = ctx.json_body().get("@odata.id")
            target, target_row = resolve_reference(ctx, ref, nav.targets, nav.name)
            values = {col.name: target_row[target.primary_id]}
            if col.type_column:
                values[col.type_column] = target.logical_name
        elif ctx.method == "DELETE":
            values = {col.name: None}
            if col.type_column:
                values[col.type_column] = None
        else:
            raise method_not_allowed(ctx.method)
        with ctx.store.transaction():
            ctx.store.update(table.logical_name, row[table.primary_id], values, user=ctx.user_id,
                             on_behalf_of=ctx.on_behalf_of, before=row)
        return Reply.empty(204)
    if rest:
        raise segment_not_found(rest[0])
    if ctx.method != "GET":
        raise method_not_allowed(ctx.method)
    if target_id is None or target_name not in nav.targets:
        return Reply.empty(204)
    target = ctx.schema.tables[target_name]
    related = ctx.store.get(target_name, target_id)
    if related is None:
        raise record_not_found(target_name, target_id)
    cols = parse_select(target, ctx.query.get("$select"))
    expands = parse_expand(ctx.query.get("$expand"))
    payload = {"@odata.context": f"{ctx.api}/$metadata#{target.entity_set}{context_select(cols, expands)}/$entity"}
    payload.update(represent(ctx, target, related, cols, expands))
    return Reply.json(200, payload, _applied(ctx))


def collection_nav(ctx: Ctx, table: Table, row: dict, nav, sub_key: str | None, rest: list[str]) -> Reply:
    target = ctx.schema.tables[nav.target]
    row_id = row[table.primary_id]
    where, params = _nav_where(nav, target, row_id)
    if rest == ["$ref"]:
        if ctx.method == "GET" and sub_key is None:
            refs = ctx.store.select(target.logical_name, where, params, order=f"t0.{q(target.primary_id)}", limit=MAX_PAGE)
            return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#Collection($ref)",
                                    "value": [{"@odata.id": entity_url(ctx, target, r[target.primary_id])} for r in refs]})
        if ctx.method == "POST" and sub_key is None:
            ref = ctx.json_body().get("@odata.id")
            _, target_row = resolve_reference(ctx, ref, (nav.target,), nav.name)
            with ctx.store.transaction():
                _link(ctx, table, row, nav, target, target_row, strict=True)
            return Reply.empty(204)
        if ctx.method == "DELETE":
            if sub_key is not None:
                target_row = find_row(ctx, target, sub_key, required=True)
            else:
                ref = ctx.query.get("$id")
                if not ref:
                    raise bad_request("The $id query option is required to remove a reference from a collection.")
                _, target_row = resolve_reference(ctx, ref, (nav.target,), nav.name)
            with ctx.store.transaction():
                _unlink(ctx, table, row, nav, target, target_row)
            return Reply.empty(204)
        raise method_not_allowed(ctx.method)
    if sub_key is not None:
        raise segment_not_found(f"{nav.name}({sub_key})")
    if rest == ["$count"] and ctx.method == "GET":
        return count_reply(ctx, target, where, params)
    if rest:
        raise segment_not_found(rest[0])
    if ctx.method != "GET":
        raise method_not_allowed(ctx.method)
    return query_collection(ctx, target, where, params, context_path=target.entity_set)


def _unlink(ctx: Ctx, table: Table, row: dict, nav, target: Table, target_row: dict) -> None:
    row_id, target_id = row[table.primary_id], target_row[target.primary_id]
    if nav.many_to_many:
        ctx.store.disassociate(nav.intersect, (nav.own_id, nav.target_id), (row_id, target_id))
        return
    col = target.columns[nav.column]
    if target_row.get(nav.column) != row_id:
        return
    values = {col.name: None}
    if col.type_column:
        values[col.type_column] = None
    ctx.store.update(target.logical_name, target_id, values, user=ctx.user_id, on_behalf_of=ctx.on_behalf_of,
                     before=target_row)
