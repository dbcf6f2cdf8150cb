"""The metadata entity sets EntityDefinitions, RelationshipDefinitions, GlobalOptionSetDefinitions: routing and reads (reference/dataverse-web-api.md §7). Metadata sets are small and not paged by Dataverse, so they are queried in Python."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.metadata.customization import (
    create_attribute,
    create_entities,
    create_entity,
    create_relationship,
    update_attribute,
)
from d365_components.emulator.metadata.dict_query import Expander, collection_reply, single_reply
from d365_components.emulator.metadata.keys import create_key, delete_key, find_key
from d365_components.emulator.metadata.metadata_changes import retrieve_metadata_changes
from d365_components.emulator.metadata.schema_removal import (
    delete_attribute,
    delete_entity,
    delete_relationship,
)
from d365_components.emulator.metadata.shapes import (
    ATTRIBUTE_CLASS,
    ENTITY_NAVS,
    NS,
    TYPE_OF_CLASS,
    attribute_json,
    entity_json,
    key_json,
    many_to_many_json,
    one_to_many_json,
    option_set_json,
    relationship_json,
)
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    OBJECT_DOES_NOT_EXIST,
    DataverseError,
    bad_request,
    method_not_allowed,
    not_supported,
    segment_not_found,
)
from d365_components.emulator.protocol.literals import parse_args, split_segment
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import (
    ManyToMany,
    OneToMany,
    Table,
)

# ---- routing --------------------------------------------------------------------------------

def handle(ctx: Ctx, segments: list[str]) -> Reply:
    name, key = split_segment(segments[0])
    rest = segments[1:]
    try:
        if name in ("CreateEntities", "RetrieveMetadataChanges"):
            if rest:
                raise segment_not_found(rest[0])
            if name == "CreateEntities":      # an action: POST, parameters in the body
                if ctx.method != "POST":
                    raise method_not_allowed(ctx.method)
                if key is not None:
                    raise bad_request("The action 'CreateEntities' takes its parameters in the request body.")
                return create_entities(ctx)
            if ctx.method != "GET":
                raise method_not_allowed(ctx.method)
            return retrieve_metadata_changes(ctx, key or "")
        if name == "EntityDefinitions":
            return _entities(ctx, key, rest)
        if name == "RelationshipDefinitions":
            return _relationships(ctx, key, rest)
        return _global_option_sets(ctx, key, rest)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        if ctx.method not in ("POST", "PUT"):
            raise
        # a metadata body with a property of the wrong shape (a string where a Label goes, ...)
        raise bad_request(f"The request body is not a valid metadata definition: {type(exc).__name__}.",
                          INVALID_ARGUMENT) from None


def _key(text: str, names: tuple[str, ...]) -> tuple[str, str]:
    positional, named = parse_args(text)
    if positional is not None and not named:
        return "MetadataId", str(positional).lower()
    if len(named) == 1:
        (k, v), = named.items()
        if k in names:
            return k, str(v)
    raise bad_request(f"The key '{text}' is not valid for this metadata resource.")


def _missing(message: str) -> DataverseError:
    return DataverseError(404, OBJECT_DOES_NOT_EXIST, message)


def _find_table(ctx: Ctx, key: str) -> Table:
    field, value = _key(key, ("LogicalName",))
    for t in ctx.schema.tables.values():
        if (field == "LogicalName" and t.logical_name == value) or (field == "MetadataId" and t.metadata_id == value):
            return t
    raise _missing(f"Could not find entity with {'name' if field == 'LogicalName' else 'id'} '{value}'.")


def _entities(ctx: Ctx, key: str | None, rest: list[str]) -> Reply:
    api = ctx.api
    if key is None:
        if rest:
            raise segment_not_found(rest[0])
        if ctx.method == "POST":
            return create_entity(ctx)
        if ctx.method != "GET":
            raise method_not_allowed(ctx.method)
        items = [_entity_with_navs(ctx, t) for t in ctx.schema.tables.values()]
        return collection_reply(ctx, items, f"{api}/$metadata#EntityDefinitions", "EntityMetadata", _entity_expander(ctx))
    t = _find_table(ctx, key)
    if not rest:
        if ctx.method == "DELETE":
            return delete_entity(ctx, t)
        if ctx.method != "GET":
            raise method_not_allowed(ctx.method)
        return single_reply(ctx, _entity_with_navs(ctx, t), f"{api}/$metadata#EntityDefinitions", "EntityMetadata",
                       _entity_expander(ctx))
    nav, nav_key = split_segment(rest[0])
    base = f"{api}/$metadata#EntityDefinitions({t.metadata_id})/{nav}"
    if nav == "Attributes":
        return _attributes(ctx, t, nav_key, rest[1:], base)
    if nav == "Keys" and ctx.method in ("POST", "DELETE") and len(rest) == 1:
        if ctx.method == "POST" and nav_key is None:
            return create_key(ctx, t)
        if ctx.method == "DELETE" and nav_key is not None:
            return delete_key(ctx, t, find_key(t, nav_key))
        raise method_not_allowed(ctx.method)
    if nav in ("OneToManyRelationships", "ManyToOneRelationships", "ManyToManyRelationships", "Keys"):
        if ctx.method != "GET":
            raise method_not_allowed(ctx.method)
        items = _entity_nav(ctx, t, nav)
        if nav_key is not None:
            field, value = _key(nav_key, ("SchemaName", "LogicalName"))
            for item in items:
                if item.get(field) == value or item["MetadataId"] == value:
                    return single_reply(ctx, item, base, "RelationshipMetadataBase")
            raise segment_not_found(rest[0])
        return collection_reply(ctx, items, base, "RelationshipMetadataBase")
    raise segment_not_found(rest[0])


def _entity_with_navs(ctx: Ctx, t: Table) -> dict[str, Any]:
    return entity_json(t)


def _entity_nav(ctx: Ctx, t: Table, nav: str) -> list[dict[str, Any]]:
    schema = ctx.schema
    if nav == "Keys":
        return [key_json(t, k) for k in t.keys]
    if nav == "Attributes":
        return [attribute_json(t, c, i, False) for i, c in enumerate(t.columns.values(), 1)]
    rels = schema.relationships.values()
    if nav == "OneToManyRelationships":
        return [one_to_many_json(r) for r in rels if isinstance(r, OneToMany) and r.referenced == t.logical_name]
    if nav == "ManyToOneRelationships":
        return [one_to_many_json(r) for r in rels if isinstance(r, OneToMany) and r.referencing == t.logical_name]
    return [many_to_many_json(r, schema) for r in rels if isinstance(r, ManyToMany)
            and t.logical_name in (r.entity1, r.entity2)]


def _entity_expander(ctx: Ctx) -> Expander:
    def expand(item: dict[str, Any], nav: str) -> list[dict[str, Any]] | None:
        if nav not in ENTITY_NAVS:
            return None
        t = ctx.schema.tables[item["LogicalName"]]
        return _entity_nav(ctx, t, nav)
    return expand


def _attributes(ctx: Ctx, t: Table, key: str | None, rest: list[str], base: str) -> Reply:
    cast = None
    if rest and rest[0].startswith(NS):
        cast = rest[0][len(NS):]
        if cast not in TYPE_OF_CLASS and cast != "AttributeMetadata":
            if cast == "EnumAttributeMetadata":
                raise bad_request("Casting to the abstract type 'Microsoft.Dynamics.CRM.EnumAttributeMetadata' is not allowed.")
            raise segment_not_found(rest[0])
        rest = rest[1:]
    columns = list(t.columns.values())
    if key is None:
        if rest:
            raise segment_not_found(rest[0])
        if ctx.method == "POST":
            if cast:
                raise method_not_allowed("POST")
            return create_attribute(ctx, t)
        if ctx.method != "GET":
            raise method_not_allowed(ctx.method)
        items = [attribute_json(t, c, i, cast is not None) for i, c in enumerate(columns, 1)
                 if cast is None or cast == "AttributeMetadata" or ATTRIBUTE_CLASS.get(c.type) == cast]
        if cast:
            base += f"/{NS}{cast}"
        return collection_reply(ctx, items, base, cast or "AttributeMetadata", _attribute_expander(ctx, t))
    field, value = _key(key, ("LogicalName",))
    found = [(i, c) for i, c in enumerate(columns, 1)
             if (field == "LogicalName" and c.name == value) or (field == "MetadataId" and c.metadata_id == value)]
    if not found:
        raise _missing(f"Could not find attribute with {'name' if field == 'LogicalName' else 'id'} '{value}' "
                       f"on entity '{t.logical_name}'.")
    i, c = found[0]
    if cast and cast != "AttributeMetadata" and ATTRIBUTE_CLASS.get(c.type) != cast:
        raise bad_request(f"The attribute '{c.name}' is not of type 'Microsoft.Dynamics.CRM.{cast}'.")
    if ctx.method == "PUT" and not rest:
        return update_attribute(ctx, t, c)
    if ctx.method == "DELETE" and not rest and not cast:
        return delete_attribute(ctx, t, c)
    if ctx.method != "GET":
        raise method_not_allowed(ctx.method)
    item = attribute_json(t, c, i, cast is not None)
    if rest:
        if rest == ["OptionSet"] or rest == ["GlobalOptionSet"]:
            if cast is None or c.option_set is None:
                raise segment_not_found(rest[0])
            if rest == ["GlobalOptionSet"] and not c.option_set.is_global:
                return Reply.empty(204)
            return single_reply(ctx, option_set_json(c.option_set, t), f"{ctx.api}/$metadata#EntityDefinitions"
                           f"({t.metadata_id})/Attributes({c.metadata_id})/{NS}{cast}/{rest[0]}", "OptionSetMetadata")
        raise segment_not_found(rest[0])
    ctx_url = base + f"/{NS}{cast}" if cast else base
    return single_reply(ctx, item, ctx_url, cast or "AttributeMetadata", _attribute_expander(ctx, t, cast is not None))


def _attribute_expander(ctx: Ctx, t: Table, typed: bool = True) -> Expander:
    def expand(item: dict[str, Any], nav: str) -> list[dict[str, Any]] | dict[str, Any] | None:
        if nav not in ("OptionSet", "GlobalOptionSet"):
            return None
        if not typed:
            raise bad_request(f"Could not find a property named '{nav}' on type 'Microsoft.Dynamics.CRM.AttributeMetadata'.")
        c = t.columns[item["LogicalName"]]
        if c.option_set is None:
            return None
        if nav == "GlobalOptionSet" and not c.option_set.is_global:
            return {"__single__": None}
        return {"__single__": option_set_json(c.option_set, t)}
    return expand


# ---- relationships and global option sets ---------------------------------------------------

def _relationships(ctx: Ctx, key: str | None, rest: list[str]) -> Reply:
    if ctx.method == "POST" and key is None and not rest:
        return create_relationship(ctx)
    if ctx.method == "DELETE" and key is not None and not rest:
        field, value = _key(key, ("SchemaName",))
        for rel in ctx.schema.relationships.values():
            if (rel.metadata_id if field == "MetadataId" else rel.schema_name) == value:
                return delete_relationship(ctx, rel)
        raise _missing(f"Could not find relationship with {'name' if field == 'SchemaName' else 'id'} '{value}'.")
    if ctx.method != "GET":
        raise not_supported("Changing relationships is not supported by the emulator.") \
            if ctx.method == "PUT" else method_not_allowed(ctx.method)
    schema = ctx.schema
    base = f"{ctx.api}/$metadata#RelationshipDefinitions"
    cast = None
    if rest and rest[0].startswith(NS):
        cast = rest[0][len(NS):]
        if cast not in ("OneToManyRelationshipMetadata", "ManyToManyRelationshipMetadata"):
            raise segment_not_found(rest[0])
        rest = rest[1:]
    if rest:
        raise segment_not_found(rest[0])
    items = [relationship_json(r, schema) for r in schema.relationships.values()]
    if cast:
        items = [i for i in items if i["@odata.type"] == f"#{NS}{cast}"]
        base += f"/{NS}{cast}"
    if key is None:
        return collection_reply(ctx, items, base, cast or "RelationshipMetadataBase")
    field, value = _key(key, ("SchemaName",))
    for item in items:
        if item[field] == value:
            return single_reply(ctx, item, base, cast or "RelationshipMetadataBase")
    raise _missing(f"Could not find relationship with {'name' if field == 'SchemaName' else 'id'} '{value}'.")


def _global_option_sets(ctx: Ctx, key: str | None, rest: list[str]) -> Reply:
    if ctx.method != "GET":
        raise method_not_allowed(ctx.method)
    if rest:
        raise segment_not_found(rest[0])
    items = [option_set_json(s) for s in ctx.schema.option_sets.values()]
    base = f"{ctx.api}/$metadata#GlobalOptionSetDefinitions"
    if key is None:
        if "$filter" in ctx.query:
            raise bad_request("The query parameter $filter is not supported for GlobalOptionSetDefinitions.",
                              "0x80060888")
        return collection_reply(ctx, items, base, "OptionSetMetadataBase")
    field, value = _key(key, ("Name",))
    for item in items:
        if item[field] == value:
            return single_reply(ctx, item, base, "OptionSetMetadataBase")
    raise _missing(f"Could not find optionset with {'name' if field == 'Name' else 'id'} '{value}'.")
