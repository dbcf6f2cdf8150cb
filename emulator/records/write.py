"""Writing records: body conversion (@odata.bind, deep insert), create, update, upsert, delete."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    INVALID_STATE_STATUS,
    already_exists,
    bad_request,
    duplicate_key,
    unknown_body_property,
    version_mismatch,
)
from d365_components.emulator.query.query_options import parse_expand, parse_select
from d365_components.emulator.records.representation import preference_headers, represent
from d365_components.emulator.records.rows import (
    entity_url,
    find_row,
    lookup_key,
    not_found,
    parse_key,
    resolve_reference,
)
from d365_components.emulator.records.values import ENTITY_REF, to_storage
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import CollectionNav, SingleNav, Table

STATES_BY_MESSAGE = {
    ("opportunity", 1): ("Won", "WinOpportunity"),
    ("opportunity", 2): ("Lost", "LoseOpportunity"),
    ("incident", 1): ("Resolved", "CloseIncident"),
}


def convert_body(ctx: Ctx, table: Table, body: dict[str, Any], *, creating: bool) -> tuple[dict[str, Any], list[Any]]:
    """A request body -> (column values, operations to run once the row exists)."""
    values: dict[str, Any] = {}
    later: list[Any] = []
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
            single = table.single_navs[key]
            col = table.columns[single.column]
            if value is None:
                values[col.name] = None
                if col.type_column:
                    values[col.type_column] = None
            elif isinstance(value, dict):
                target = ctx.schema.tables[_deep_target(ctx, single, value)]
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
        column = table.column_for_json(key)
        if column is None:
            raise unknown_body_property(key, table.logical_name)
        if column.is_lookup:
            raise bad_request(ENTITY_REF)
        if not column.writable or (column.is_primary_id and not creating):
            continue
        values[column.name] = to_storage(table, column, value)
    if not creating and (table.logical_name, values.get("statecode")) in STATES_BY_MESSAGE:
        label, message = STATES_BY_MESSAGE[table.logical_name, values["statecode"]]
        # Wording as Dataverse's SetState/Update refusal is commonly quoted; the code is UNCONFIRMED.
        raise bad_request(f"This message can not be used to set the state of {table.logical_name} to {label}. "
                          f"In order to set state of {table.logical_name} to {label}, use the {message}Request "
                          f"message instead (the Web API's {message} action).", INVALID_ARGUMENT)
    if "statecode" in values and "statuscode" in values and values["statuscode"] is not None:
        statuses = table.columns["statuscode"].option_set
        assert statuses is not None, "statuscode is a choice column"
        state_of = {o.value: o.state for o in statuses.options}
        if state_of.get(values["statuscode"]) != values["statecode"]:
            raise bad_request(f"{values['statuscode']} is not a valid status code for state code "
                              f"{table.schema_name}State.{values['statecode']}.", INVALID_STATE_STATUS)
    return values, later


def _deep_target(ctx: Ctx, nav: SingleNav, value: dict[str, Any]) -> str:
    typed = str(value.get("@odata.type") or "").lstrip("#").rsplit(".", 1)[-1]
    if typed in nav.targets:
        return typed
    return nav.targets[0]


def _bind(ctx: Ctx, table: Table, nav_name: str, value: Any, values: dict[str, Any], later: list[Any]) -> None:
    if nav_name in table.single_navs:
        single = table.single_navs[nav_name]
        col = table.columns[single.column]
        if value is None:
            values[col.name] = None
            if col.type_column:
                values[col.type_column] = None
            return
        target, row = resolve_reference(ctx, value, single.targets, nav_name)
        values[col.name] = row[target.primary_id]
        if col.type_column:
            values[col.type_column] = target.logical_name
        return
    if nav_name in table.collection_navs:
        nav = table.collection_navs[nav_name]
        if not isinstance(value, list):
            raise bad_request(f"The value of '{nav_name}@odata.bind' must be an array of URLs.")
        refs = [resolve_reference(ctx, v, (nav.target,), nav_name) for v in value]
        def link_all(row: dict[str, Any], nav: CollectionNav = nav, refs: list[tuple[Table, dict[str, Any]]] = refs) -> None:
            for t, r in refs:
                link_rows(ctx, table, row, nav, t, r)

        later.append(link_all)
        return
    raise bad_request(f"An undeclared property '{nav_name}' which only has property annotations in the payload but no "
                      "property value was found in the payload. In OData, only declared navigation properties and "
                      "declared named streams can be represented as properties without values.")


def link_rows(ctx: Ctx, table: Table, row: dict[str, Any], nav: CollectionNav, target: Table, target_row: dict[str, Any], *, strict: bool = False) -> None:
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


def _deep_children(ctx: Ctx, table: Table, row: dict[str, Any], nav: CollectionNav, items: list[Any]) -> None:
    target = ctx.schema.tables[nav.target]
    for item in items:
        if not isinstance(item, dict):
            raise bad_request(f"The value of '{nav.name}' must be an array of objects.")
        if nav.many_to_many:
            link_rows(ctx, table, row, nav, target, create_row(ctx, target, item))
            continue
        back = {nav.column: row[table.primary_id]}          # born linked: one Create, no Update
        type_column = target.columns[nav.column].type_column
        if type_column:
            back[type_column] = table.logical_name
        create_row(ctx, target, item, extra=back)


def create_row(ctx: Ctx, table: Table, body: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Insert one row from a JSON body (binds, deep insert); inside a transaction when the body nests."""
    values, later = convert_body(ctx, table, body, creating=True)
    if extra:
        for k, v in extra.items():
            values.setdefault(k, v)
    row = ctx.store.insert(table.logical_name, values, user=ctx.user_id, on_behalf_of=ctx.on_behalf_of)
    for op in later:
        op(row)
    return row


def _nested(body: dict[str, Any]) -> bool:
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
        stored = ctx.store.get(table.logical_name, row_id)
        assert stored is not None, "the row was just written"
        row = stored
        cols = parse_select(table, ctx.query.get("$select"))
        expands = parse_expand(ctx.query.get("$expand"))
        payload = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}/$entity"}
        payload.update(represent(ctx, table, row, cols, expands))
        return Reply.json(201, payload, preference_headers(ctx, {"ETag": payload["@odata.etag"],
                                                       "OData-EntityId": entity_url(ctx, table, row_id)}))
    url = entity_url(ctx, table, row_id)
    return Reply.empty(204, {"OData-EntityId": url, "Location": url})


def _check_etag(ctx: Ctx, row: dict[str, Any]) -> None:
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
            changed = ctx.store.update(table.logical_name, row[table.primary_id], values, user=ctx.user_id,
                                       on_behalf_of=ctx.on_behalf_of, before=row)
            assert changed is not None, "the row was just read"
            _, row = changed
            for op in later:
                op(row)
            created = False
    if ctx.wants_representation():
        row = ctx.store.get(table.logical_name, row[table.primary_id])
        assert row is not None, "the row was just written"
        cols = parse_select(table, ctx.query.get("$select"))
        payload = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}/$entity"}
        payload.update(represent(ctx, table, row, cols, []))
        return Reply.json(201 if created else 200, payload, preference_headers(ctx, {"ETag": payload["@odata.etag"]}))
    return Reply.empty(204, {"OData-EntityId": addressed})


def delete(ctx: Ctx, table: Table, key: str) -> Reply:
    with ctx.store.transaction():
        row = find_row(ctx, table, key, required=True)
        _check_etag(ctx, row)
        ctx.store.delete(table.logical_name, row[table.primary_id])
    return Reply.empty(204)
