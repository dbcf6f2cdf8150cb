"""Navigation properties of a record: single-valued and collection-valued, $ref associate/disassociate."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.protocol.errors import (
    bad_request,
    method_not_allowed,
    record_not_found,
    segment_not_found,
)
from d365_components.emulator.query.query_options import parse_expand, parse_select
from d365_components.emulator.records.read import count_reply, query_collection
from d365_components.emulator.records.representation import (
    MAX_PAGE,
    context_select,
    nav_where,
    preference_headers,
    represent,
)
from d365_components.emulator.records.rows import entity_url, find_row, resolve_reference
from d365_components.emulator.records.write import link_rows
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import CollectionNav, SingleNav, Table
from d365_components.emulator.storage.store import q

# ---- navigation properties ------------------------------------------------------------------

def single_nav(ctx: Ctx, table: Table, row: dict[str, Any], nav: SingleNav, rest: list[str]) -> Reply:
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
    return Reply.json(200, payload, preference_headers(ctx))


def collection_nav(ctx: Ctx, table: Table, row: dict[str, Any], nav: CollectionNav, sub_key: str | None, rest: list[str]) -> Reply:
    target = ctx.schema.tables[nav.target]
    row_id = row[table.primary_id]
    where, params = nav_where(nav, target, row_id)
    if rest == ["$ref"]:
        if ctx.method == "GET" and sub_key is None:
            refs = ctx.store.select(target.logical_name, where, params, order=f"t0.{q(target.primary_id)}", limit=MAX_PAGE)
            return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#Collection($ref)",
                                    "value": [{"@odata.id": entity_url(ctx, target, r[target.primary_id])} for r in refs]})
        if ctx.method == "POST" and sub_key is None:
            ref = ctx.json_body().get("@odata.id")
            _, target_row = resolve_reference(ctx, ref, (nav.target,), nav.name)
            with ctx.store.transaction():
                link_rows(ctx, table, row, nav, target, target_row, strict=True)
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


def _unlink(ctx: Ctx, table: Table, row: dict[str, Any], nav: CollectionNav, target: Table, target_row: dict[str, Any]) -> None:
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
