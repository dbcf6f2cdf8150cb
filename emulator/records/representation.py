"""Records as JSON: the column plan, formatted-value annotations, $expand of related rows."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.protocol.annotations import ASSOCIATED_NAV, FORMATTED, LOOKUP_NAME
from d365_components.emulator.protocol.errors import (
    bad_request,
    not_supported,
)
from d365_components.emulator.query.filter_compiler import QueryUser, compile_filter
from d365_components.emulator.query.filter_grammar import substitute_aliases
from d365_components.emulator.query.query_options import Expand, parse_orderby, parse_select
from d365_components.emulator.records.images import record_value
from d365_components.emulator.records.rows import entity_url
from d365_components.emulator.request.context import Ctx
from d365_components.emulator.storage.schema import CollectionNav, Column, Table
from d365_components.emulator.storage.store import q

MAX_PAGE = 5000


# ---- serialization -------------------------------------------------------------------------

def column_plan(ctx: Ctx, table: Table, cols: list[Column] | None) -> list[tuple[Any, ...]]:
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


def to_json(ctx: Ctx, table: Table, row: dict[str, Any], plan: list[tuple[Any, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {"@odata.etag": f'W/"{row.get("versionnumber")}"'}
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
            elif kind == "Image":
                v = record_value(ctx.store, v)
        if annotate and v is not None:
            add_value_annotations(ctx, table, row, col, json_name, v, out)
        out[json_name] = v
    return out


def add_value_annotations(ctx: Ctx, table: Table, row: dict[str, Any], col: Column, json_name: str, v: Any, out: dict[str, Any]) -> None:
    formatted = None
    t = col.type
    if col.option_set is not None and t != "MultiSelectPicklist":
        formatted = col.option_set.label(int(v))
    elif t == "MultiSelectPicklist" and col.option_set is not None:
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
            formatted = _primary_name(ctx, str(target), v)
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


def _primary_name(ctx: Ctx, table_name: str, row_id: str) -> str | None:
    key = ("name", table_name, row_id)
    if key not in ctx.cache:
        t = ctx.schema.tables[table_name]
        rows = ctx.store.select(table_name, f"t0.{q(t.primary_id)} = ?", [row_id], columns=f"t0.{q(t.primary_name)} AS n")
        ctx.cache[key] = rows[0]["n"] if rows else None
    name: str | None = ctx.cache[key]
    return name


def context_select(cols: list[Column] | None, expands: list[Expand]) -> str:
    parts = [c.json_name for c in cols] if cols else []
    for e in expands:
        inner = e.select or ""
        parts.append(f"{e.nav}({inner})" if inner else e.nav)
    return f"({','.join(parts)})" if parts else ""


def represent(ctx: Ctx, table: Table, row: dict[str, Any], cols: list[Column] | None, expands: list[Expand]) -> dict[str, Any]:
    out = to_json(ctx, table, row, column_plan(ctx, table, cols))
    if expands:
        expand_row(ctx, table, row, out, expands)
    return out


# ---- $expand --------------------------------------------------------------------------------

def expand_row(ctx: Ctx, table: Table, row: dict[str, Any], out: dict[str, Any], expands: list[Expand], depth: int = 0) -> None:
    nested = depth > 0 or any(e.expand for e in expands)
    for e in expands:
        if e.nav in table.single_navs:
            single = table.single_navs[e.nav]
            if e.filter or e.orderby or e.top is not None:
                raise not_supported("Only $select and $filter clause can be provided while doing $expand on many-to-one "
                                    "relationship or nested one-to-many relationship.")
            col = table.columns[single.column]
            target_id = row.get(single.column)
            target_name = (row.get(col.type_column) if col.type_column else single.targets[0])
            if target_id is None or target_name not in single.targets:
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
            value = to_json(ctx, target, related, column_plan(ctx, target, parse_select(target, e.select)))
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
            where, params = nav_where(nav, target, row[table.primary_id])
            if e.filter:
                cond, params = compile_filter(ctx.schema, target, substitute_aliases(e.filter, {}), user=query_user(ctx), params=params)
                where = f"{where} AND {cond}"
            order = ", ".join(f"t0.{q(c.name)}{' DESC' if d else ''}" for c, d in parse_orderby(target, e.orderby))
            order = (order + ", " if order else "") + f"t0.{q(target.primary_id)}"
            limit = min(e.top, MAX_PAGE) if e.top is not None else MAX_PAGE
            children = ctx.store.select(target.logical_name, where, params, order=order, limit=limit)
            plan = column_plan(ctx, target, parse_select(target, e.select))
            values = []
            for child in children:
                value = to_json(ctx, target, child, plan)
                if e.expand:
                    expand_row(ctx, target, child, value, e.expand, depth + 1)
                values.append(value)
            out[e.nav] = values
        else:
            raise bad_request(f"Could not find a property named '{e.nav}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'.")


def nav_where(nav: CollectionNav, target: Table, row_id: str) -> tuple[str, list[Any]]:
    if nav.many_to_many:
        return (f"t0.{q(target.primary_id)} IN (SELECT {q(nav.target_id)} FROM {q(nav.intersect)} "
                f"WHERE {q(nav.own_id)} = ?)"), [row_id]
    return f"t0.{q(nav.column)} = ?", [row_id]


def query_user(ctx: Ctx) -> QueryUser:
    return QueryUser(ctx.user_id, ctx.business_unit_id)


def preference_headers(ctx: Ctx, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    h = dict(extra or {})
    if ctx.applied:
        h["Preference-Applied"] = ",".join(dict.fromkeys(ctx.applied))
    return h
