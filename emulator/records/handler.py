"""Business data through the Web API: every URL rooted at an entity set, routed to its handler.

`handle(ctx, table, key, rest)` serves every URL rooted at an entity set:
`accounts`, `accounts/$count`, `accounts(<key>)`, `accounts(<key>)/<property>`,
`accounts(<key>)/<navigation>[/$ref|/$count]`, `accounts(<key>)/<nav>(<key>)/$ref`.
Semantics follow reference/dataverse-web-api.md §2 and §3: 204 + OData-EntityId or 201/200 with
`Prefer: return=representation`, ETags from `versionnumber`, upsert with If-Match/If-None-Match,
`@odata.bind`, deep insert, keyset paging with an opaque `$skiptoken`."""

from __future__ import annotations

from d365_components.emulator.protocol.errors import (
    method_not_allowed,
    segment_not_found,
)
from d365_components.emulator.protocol.literals import (
    split_segment,
)
from d365_components.emulator.records import files
from d365_components.emulator.records.navigation import collection_nav, single_nav
from d365_components.emulator.records.query_audit import (
    NONE,
    QUERY_LANGUAGES,
    SINGLE,
    allow_options,
    unsupported_option,
)
from d365_components.emulator.records.read import (
    count_reply,
    property_value,
    query_collection,
    raw_value,
    retrieve,
)
from d365_components.emulator.records.rows import find_row
from d365_components.emulator.records.write import create, delete, upsert
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Table

# ---- routing ------------------------------------------------------------------------------

def handle(ctx: Ctx, table: Table, key: str | None, rest: list[str]) -> Reply:
    _audit_options(ctx, table, key, rest)
    return _route(ctx, table, key, rest)


def _audit_options(ctx: Ctx, table: Table, key: str | None, rest: list[str]) -> None:
    """Refuse the `$` options this request shape does not use (collection GETs check their own)."""
    m = ctx.method
    if key is None and not rest and m == "GET":
        return
    for name in QUERY_LANGUAGES:
        if name in ctx.query:                   # only a GET on the entity set itself runs them
            raise unsupported_option(name)
    if key is None:
        allowed = {"POST": SINGLE}.get(m, NONE) if not rest else frozenset({"$filter"})
        allow_options(ctx, allowed, single=not rest)
        return
    if not rest:
        allow_options(ctx, SINGLE if m in ("GET", "PATCH", "PUT") else NONE, single=True)
        return
    name, sub_key = split_segment(rest[0])
    if name in table.collection_navs:
        if rest[1:] == ["$ref"]:
            allow_options(ctx, frozenset({"$id"}) if m == "DELETE" else NONE)
        elif rest[1:] == ["$count"]:
            allow_options(ctx, frozenset({"$filter"}))
        elif sub_key is not None or rest[1:]:
            allow_options(ctx, NONE)
        return                                  # a collection: query_collection checks
    if name in table.single_navs and rest[1:] != ["$ref"]:
        allow_options(ctx, SINGLE, single=True)
        return
    allow_options(ctx, NONE, single=True)


def _route(ctx: Ctx, table: Table, key: str | None, rest: list[str]) -> Reply:
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
        return files.handle(ctx, table, row, col, rest[1:])
    if col is not None and sub_key is None and not rest[1:]:
        return property_value(ctx, table, row, col)
    if col is not None and sub_key is None and rest[1:] == ["$value"]:
        return raw_value(ctx, table, row, col)
    raise segment_not_found(rest[0])
