"""The schema as the Web API shows it: service document, CSDL `$metadata`, and the metadata entity
sets `EntityDefinitions`, `RelationshipDefinitions`, `GlobalOptionSetDefinitions`
(reference/dataverse-web-api.md §7).

Metadata objects are built from emulator/schema.py as plain dicts (cached per schema version) and
queried in Python: metadata sets are small, and Dataverse does not page them. `$filter` reuses the
query grammar and is evaluated against the dicts. Creating a column (POST .../Attributes) adds a
real SQLite column, usable by the next request; PUT updates labels and limits, honouring
`MSCRM.MergeLabels`.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import quoteattr

from d365_components.emulator.context import Ctx, Reply
from d365_components.emulator.errors import (
    INVALID_ARGUMENT,
    OBJECT_DOES_NOT_EXIST,
    DataverseError,
    bad_request,
    method_not_allowed,
    not_supported,
    segment_not_found,
)
from d365_components.emulator.literals import parse_args, split_segment
from d365_components.emulator.query import parse_expand, parse_filter
from d365_components.emulator.schema import (
    Column,
    ManyToMany,
    OneToMany,
    Option,
    OptionSet,
    Table,
    stable_id,
)

NS = "Microsoft.Dynamics.CRM."
LANGUAGE = 1033
ATTRIBUTE_CLASS = {
    "String": "StringAttributeMetadata", "Memo": "MemoAttributeMetadata", "Integer": "IntegerAttributeMetadata",
    "BigInt": "BigIntAttributeMetadata", "Decimal": "DecimalAttributeMetadata", "Double": "DoubleAttributeMetadata",
    "Money": "MoneyAttributeMetadata", "Boolean": "BooleanAttributeMetadata", "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata", "Status": "StatusAttributeMetadata", "DateTime": "DateTimeAttributeMetadata",
    "Lookup": "LookupAttributeMetadata", "Customer": "LookupAttributeMetadata", "Owner": "LookupAttributeMetadata",
    "Uniqueidentifier": "UniqueIdentifierAttributeMetadata", "EntityName": "EntityNameAttributeMetadata",
    "MultiSelectPicklist": "MultiSelectPicklistAttributeMetadata",
    "File": "FileAttributeMetadata", "Image": "ImageAttributeMetadata",
}
TYPE_OF_CLASS = {v: k for k, v in ATTRIBUTE_CLASS.items() if k not in ("Customer", "Owner")}
CREATABLE = {"String", "Memo", "Integer", "BigInt", "Decimal", "Double", "Money", "Boolean", "Picklist",
             "DateTime", "MultiSelectPicklist"}
ENTITY_NAVS = ("Attributes", "OneToManyRelationships", "ManyToOneRelationships", "ManyToManyRelationships", "Keys")


# ---- service document and CSDL ------------------------------------------------------------

def service_document(ctx: Ctx) -> Reply:
    sets = [{"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set} for t in ctx.schema.tables.values()]
    sets += [{"name": n, "kind": "EntitySet", "url": n}
             for n in ("EntityDefinitions", "RelationshipDefinitions", "GlobalOptionSetDefinitions")]
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata", "value": sets})


def csdl(ctx: Ctx) -> Reply:
    key = ("csdl", ctx.schema.version)
    cache = ctx.store.plans
    if key not in cache:
        cache[key] = _build_csdl(ctx.schema).encode()
    return Reply(200, cache[key], {"Content-Type": "application/xml"})


def _build_csdl(schema) -> str:
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
           '<edmx:DataServices>',
           '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
           '<EntityType Name="crmbaseentity" Abstract="true"/>']
    for t in schema.tables.values():
        out.append(f'<EntityType Name={quoteattr(t.logical_name)} BaseType="mscrm.crmbaseentity">')
        out.append(f'<Key><PropertyRef Name={quoteattr(t.primary_id)}/></Key>')
        for c in t.columns.values():
            out.append(f'<Property Name={quoteattr(c.json_name)} Type="{c.edm_type}"/>')
        for nav in t.single_navs.values():
            out.append(f'<NavigationProperty Name={quoteattr(nav.name)} Type="mscrm.{nav.targets[0]}"/>')
        for nav in t.collection_navs.values():
            out.append(f'<NavigationProperty Name={quoteattr(nav.name)} Type="Collection(mscrm.{nav.target})"/>')
        out.append('</EntityType>')
    out.append('<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" Type="Edm.Guid"/>'
               '<Property Name="UserId" Type="Edm.Guid"/><Property Name="OrganizationId" Type="Edm.Guid"/></ComplexType>')
    out.append('<Function Name="WhoAmI"><ReturnType Type="mscrm.WhoAmIResponse" Nullable="false"/></Function>')
    out.append('<EntityContainer Name="System">')
    for t in schema.tables.values():
        out.append(f'<EntitySet Name={quoteattr(t.entity_set)} EntityType="Microsoft.Dynamics.CRM.{t.logical_name}"/>')
    out.append('<FunctionImport Name="WhoAmI" Function="Microsoft.Dynamics.CRM.WhoAmI"/>')
    out.append('</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>')
    return "\n".join(out)


# ---- building metadata objects ------------------------------------------------------------

def label(text: str, owner_id: str = "") -> dict:
    if not text:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    item = {"Label": text, "LanguageCode": LANGUAGE, "IsManaged": True,
            "MetadataId": stable_id("label", owner_id, text), "HasChanged": None}
    return {"LocalizedLabels": [item], "UserLocalizedLabel": dict(item)}


def managed(value, name: str, can_change: bool = True) -> dict:
    return {"Value": value, "CanBeChanged": can_change, "ManagedPropertyLogicalName": name}


def entity_json(t: Table) -> dict:
    return {
        "MetadataId": t.metadata_id, "LogicalName": t.logical_name, "SchemaName": t.schema_name,
        "EntitySetName": t.entity_set, "LogicalCollectionName": t.entity_set,
        "CollectionSchemaName": t.schema_name + "s", "PrimaryIdAttribute": t.primary_id,
        "PrimaryNameAttribute": t.primary_name, "PrimaryImageAttribute": None, "ObjectTypeCode": t.object_type_code,
        "OwnershipType": t.ownership if t.ownership != "BusinessOwned" else "BusinessOwned",
        "DisplayName": label(t.display, t.metadata_id), "DisplayCollectionName": label(t.display_collection, t.metadata_id),
        "Description": label(t.description, t.metadata_id),
        "IsCustomEntity": t.is_custom, "IsActivity": t.is_activity, "IsActivityParty": False, "IsChildEntity": False,
        "IsIntersect": False, "IsManaged": not t.is_custom, "IsPrivate": False, "IsLogicalEntity": False,
        "IsValidForAdvancedFind": True, "IsOptimisticConcurrencyEnabled": True, "ChangeTrackingEnabled": t.change_tracking,
        "IsAvailableOffline": True, "HasActivities": any(n.startswith(t.schema_name + "_") for n in t.collection_navs),
        "HasNotes": f"{t.logical_name.capitalize()}_Annotation" in t.collection_navs,
        "IsAuditEnabled": managed(False, "canmodifyauditsettings"), "IsCustomizable": managed(True, "iscustomizable"),
        "IsRenameable": managed(True, "isrenameable"), "IsMappable": managed(True, "ismappable"),
        "IsDuplicateDetectionEnabled": managed(False, "canmodifyduplicatedetectionsettings"),
        "CanCreateAttributes": managed(True, "cancreateattributes"), "IsValidForQueue": managed(False, "canmodifyqueuesettings"),
        "IsConnectionsEnabled": managed(False, "canmodifyconnectionsettings"),
        "CanChangeTrackingBeEnabled": managed(True, "canchangetrackingbeenabled"),
        "IntroducedVersion": "5.0.0.0", "EntityColor": None,
    }


def option_json(o: Option, owner: str, kind: str) -> dict:
    out = {"Value": o.value, "Color": o.color, "IsManaged": True, "ExternalValue": None, "ParentValues": [],
           "Tag": None, "IsHidden": False, "MetadataId": None, "HasChanged": None,
           "Label": label(o.label, f"{owner}:{o.value}"), "Description": label("")}
    if kind == "Status":
        out["State"] = o.state
    if kind == "State":
        out["InvariantName"] = o.label.replace(" ", "")
    return out


def option_set_json(s: OptionSet, table: Table | None = None) -> dict:
    out = {"@odata.type": "#Microsoft.Dynamics.CRM.BooleanOptionSetMetadata" if s.kind == "Boolean"
           else "#Microsoft.Dynamics.CRM.OptionSetMetadata",
           "MetadataId": s.metadata_id, "Name": s.name if s.is_global or table is None else f"{table.logical_name}_{s.name}",
           "IsGlobal": s.is_global, "IsCustomOptionSet": False, "IsManaged": True,
           "OptionSetType": "Picklist" if s.kind == "MultiSelectPicklist" else s.kind,
           "DisplayName": label(s.display or s.name, s.metadata_id), "Description": label("")}
    if s.kind == "Boolean":
        by_value = {o.value: o for o in s.options}
        out["TrueOption"] = option_json(by_value[1], s.metadata_id, "Boolean")
        out["FalseOption"] = option_json(by_value[0], s.metadata_id, "Boolean")
    else:
        out["Options"] = [option_json(o, s.metadata_id, s.kind) for o in s.options]
    return out


def attribute_json(t: Table, c: Column, index: int, typed: bool) -> dict:
    out = {
        "@odata.type": f"#{NS}{ATTRIBUTE_CLASS.get(c.type, 'AttributeMetadata')}",
        "MetadataId": c.metadata_id, "LogicalName": c.name, "SchemaName": c.schema_name, "EntityLogicalName": t.logical_name,
        "AttributeType": c.type, "AttributeTypeName": {"Value": f"{c.type}Type"}, "AttributeOf": None,
        "ColumnNumber": index, "DisplayName": label(c.display, c.metadata_id), "Description": label(c.description, c.metadata_id),
        "IsCustomAttribute": c.is_custom, "IsPrimaryId": c.is_primary_id, "IsPrimaryName": c.is_primary_name,
        "IsValidForCreate": c.writable, "IsValidForRead": True, "IsValidForUpdate": c.writable and not c.is_primary_id,
        "IsValidODataAttribute": True, "IsLogical": False, "IsManaged": not c.is_custom, "IsSecured": False,
        "IsFilterable": True, "IsSearchable": True, "IsRetrievable": True, "SourceType": 0,
        "RequiredLevel": managed("SystemRequired" if c.is_primary_id else c.required, "canmodifyrequirementlevelsettings"),
        "IsAuditEnabled": managed(True, "canmodifyauditsettings"),
        "IsValidForAdvancedFind": managed(True, "canmodifysearchsettings"),
    }
    if not typed:
        return out
    k = c.type
    if k == "String":
        out.update(MaxLength=c.max_length, DatabaseLength=(c.max_length or 0) * 2, Format="Text", FormatName={"Value": "Text"})
    elif k == "Memo":
        out.update(MaxLength=c.max_length, DatabaseLength=(c.max_length or 0) * 2, Format="TextArea")
    elif k in ("Integer", "BigInt"):
        out.update(MinValue=c.min_value, MaxValue=c.max_value, Format="None")
    elif k in ("Decimal", "Double"):
        out.update(MinValue=c.min_value, MaxValue=c.max_value, Precision=c.precision)
    elif k == "Money":
        out.update(MinValue=c.min_value, MaxValue=c.max_value, Precision=c.precision, PrecisionSource=2,
                   IsBaseCurrency=False)
    elif k in ("File", "Image"):
        out["MaxSizeInKB"] = int(c.max_value or 32768)
    elif k == "DateTime":
        out.update(Format=c.format or "DateAndTime",
                   DateTimeBehavior={"Value": "DateOnly" if c.format == "DateOnly" else "UserLocal"})
    elif c.is_lookup:
        out.update(Targets=list(c.targets), Format="None")
    elif c.option_set is not None:
        out["DefaultFormValue"] = -1 if k != "Boolean" else None
        if k == "Boolean":
            out["DefaultValue"] = False
    return out


def one_to_many_json(r: OneToMany) -> dict:
    return {
        "@odata.type": f"#{NS}OneToManyRelationshipMetadata",
        "MetadataId": r.metadata_id, "SchemaName": r.schema_name, "RelationshipType": "OneToManyRelationship",
        "ReferencedEntity": r.referenced, "ReferencedAttribute": r.referenced_attribute,
        "ReferencingEntity": r.referencing, "ReferencingAttribute": r.referencing_attribute,
        "ReferencedEntityNavigationPropertyName": r.referenced_nav,
        "ReferencingEntityNavigationPropertyName": r.referencing_nav,
        "IsCustomRelationship": r.is_custom, "IsManaged": not r.is_custom, "IsValidForAdvancedFind": True,
        "IsHierarchical": False, "SecurityTypes": "None", "IntroducedVersion": "5.0.0.0",
        "CascadeConfiguration": {"Assign": "NoCascade", "Delete": "RemoveLink", "Merge": "NoCascade",
                                 "Reparent": "NoCascade", "Share": "NoCascade", "Unshare": "NoCascade",
                                 "RollupView": "NoCascade"},
        "AssociatedMenuConfiguration": {"Behavior": "UseCollectionName", "Group": "Details", "Order": 10000,
                                        "Label": label("")},
    }


def many_to_many_json(r: ManyToMany, schema) -> dict:
    a, b = schema.tables[r.entity1], schema.tables[r.entity2]
    return {
        "@odata.type": f"#{NS}ManyToManyRelationshipMetadata",
        "MetadataId": r.metadata_id, "SchemaName": r.schema_name, "RelationshipType": "ManyToManyRelationship",
        "Entity1LogicalName": r.entity1, "Entity2LogicalName": r.entity2, "IntersectEntityName": r.intersect,
        "Entity1IntersectAttribute": a.primary_id, "Entity2IntersectAttribute": b.primary_id,
        "Entity1NavigationPropertyName": r.schema_name, "Entity2NavigationPropertyName": r.schema_name,
        "IsCustomRelationship": r.is_custom, "IsManaged": not r.is_custom, "IsValidForAdvancedFind": True,
        "SecurityTypes": "None", "IntroducedVersion": "5.0.0.0",
    }


def relationship_json(r, schema) -> dict:
    return one_to_many_json(r) if isinstance(r, OneToMany) else many_to_many_json(r, schema)


def key_json(t: Table, k) -> dict:
    k.metadata_id = k.metadata_id or stable_id("key", t.logical_name, k.name)
    return {"MetadataId": k.metadata_id, "LogicalName": k.name, "SchemaName": k.name, "EntityLogicalName": t.logical_name,
            "KeyAttributes": list(k.columns), "DisplayName": label(k.display or k.name, k.metadata_id),
            "EntityKeyIndexStatus": "Active", "IsManaged": True}


# ---- routing --------------------------------------------------------------------------------

def handle(ctx: Ctx, segments: list[str]) -> Reply:
    name, key = split_segment(segments[0])
    rest = segments[1:]
    try:
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
        return _collection(ctx, items, f"{api}/$metadata#EntityDefinitions", "EntityMetadata", _entity_expander(ctx))
    t = _find_table(ctx, key)
    if not rest:
        if ctx.method != "GET":
            raise method_not_allowed(ctx.method)
        return _single(ctx, _entity_with_navs(ctx, t), f"{api}/$metadata#EntityDefinitions", "EntityMetadata",
                       _entity_expander(ctx))
    nav, nav_key = split_segment(rest[0])
    base = f"{api}/$metadata#EntityDefinitions({t.metadata_id})/{nav}"
    if nav == "Attributes":
        return _attributes(ctx, t, nav_key, rest[1:], base)
    if nav in ("OneToManyRelationships", "ManyToOneRelationships", "ManyToManyRelationships", "Keys"):
        if ctx.method != "GET":
            raise method_not_allowed(ctx.method)
        items = _entity_nav(ctx, t, nav)
        if nav_key is not None:
            field, value = _key(nav_key, ("SchemaName", "LogicalName"))
            for item in items:
                if item.get(field) == value or item["MetadataId"] == value:
                    return _single(ctx, item, base, "RelationshipMetadataBase")
            raise segment_not_found(rest[0])
        return _collection(ctx, items, base, "RelationshipMetadataBase")
    raise segment_not_found(rest[0])


def _entity_with_navs(ctx: Ctx, t: Table) -> dict:
    return entity_json(t)


def _entity_nav(ctx: Ctx, t: Table, nav: str) -> list[dict]:
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


def _entity_expander(ctx: Ctx):
    def expand(item: dict, nav: str) -> list[dict] | None:
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
        return _collection(ctx, items, base, cast or "AttributeMetadata", _attribute_expander(ctx, t))
    field, value = _key(key, ("LogicalName",))
    for i, c in enumerate(columns, 1):
        if (field == "LogicalName" and c.name == value) or (field == "MetadataId" and c.metadata_id == value):
            break
    else:
        raise _missing(f"Could not find attribute with {'name' if field == 'LogicalName' else 'id'} '{value}' "
                       f"on entity '{t.logical_name}'.")
    if cast and cast != "AttributeMetadata" and ATTRIBUTE_CLASS.get(c.type) != cast:
        raise bad_request(f"The attribute '{c.name}' is not of type 'Microsoft.Dynamics.CRM.{cast}'.")
    if ctx.method == "PUT" and not rest:
        return update_attribute(ctx, t, c)
    if ctx.method != "GET":
        raise method_not_allowed(ctx.method)
    item = attribute_json(t, c, i, cast is not None)
    if rest:
        if rest == ["OptionSet"] or rest == ["GlobalOptionSet"]:
            if cast is None or c.option_set is None:
                raise segment_not_found(rest[0])
            if rest == ["GlobalOptionSet"] and not c.option_set.is_global:
                return Reply.empty(204)
            return _single(ctx, option_set_json(c.option_set, t), f"{ctx.api}/$metadata#EntityDefinitions"
                           f"({t.metadata_id})/Attributes({c.metadata_id})/{NS}{cast}/{rest[0]}", "OptionSetMetadata")
        raise segment_not_found(rest[0])
    ctx_url = base + f"/{NS}{cast}" if cast else base
    return _single(ctx, item, ctx_url, cast or "AttributeMetadata", _attribute_expander(ctx, t, cast is not None))


def _attribute_expander(ctx: Ctx, t: Table, typed: bool = True):
    def expand(item: dict, nav: str):
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
    if ctx.method != "GET":
        raise not_supported("Changing or deleting relationships is not supported by the emulator.") \
            if ctx.method in ("PUT", "DELETE") else method_not_allowed(ctx.method)
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
        return _collection(ctx, items, base, cast or "RelationshipMetadataBase")
    field, value = _key(key, ("SchemaName",))
    for item in items:
        if item[field] == value:
            return _single(ctx, item, base, cast or "RelationshipMetadataBase")
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
        return _collection(ctx, items, base, "OptionSetMetadataBase")
    field, value = _key(key, ("Name",))
    for item in items:
        if item[field] == value:
            return _single(ctx, item, base, "OptionSetMetadataBase")
    raise _missing(f"Could not find optionset with {'name' if field == 'Name' else 'id'} '{value}'.")


# ---- querying metadata dicts -----------------------------------------------------------------

def _collection(ctx: Ctx, items: list[dict], context: str, type_name: str, expander=None) -> Reply:
    for opt in ctx.query:
        if opt.startswith("$") and opt not in ("$select", "$filter", "$expand"):
            raise bad_request(f"The query parameter {opt} is not supported", "0x80060888")
    if ctx.query.get("$filter"):
        node = parse_filter(ctx.query["$filter"])
        items = [i for i in items if evaluate(node, i, type_name)]
    select = _select(ctx.query.get("$select"), items, type_name)
    expands = parse_expand(ctx.query.get("$expand"))
    value = [_shape(i, select, expands, expander, type_name) for i in items]
    return Reply.json(200, {"@odata.context": context + (f"({','.join(select)})" if select else ""), "value": value})


def _single(ctx: Ctx, item: dict, context: str, type_name: str, expander=None) -> Reply:
    for opt in ctx.query:
        if opt.startswith("$") and opt not in ("$select", "$expand"):
            raise bad_request(f"The query parameter {opt} is not supported", "0x80060888")
    select = _select(ctx.query.get("$select"), [item], type_name)
    expands = parse_expand(ctx.query.get("$expand"))
    body = {"@odata.context": context + (f"({','.join(select)})" if select else "") + "/$entity"}
    body.update(_shape(item, select, expands, expander, type_name))
    return Reply.json(200, body)


def _select(text: str | None, items: list[dict], type_name: str) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = set().union(*(i.keys() for i in items)) if items else set(names)
    for n in names:
        if n not in known:
            raise bad_request(f"Could not find a property named '{n}' on type 'Microsoft.Dynamics.CRM.{type_name}'.")
    return names


def _shape(item: dict, select: list[str] | None, expands, expander, type_name: str) -> dict:
    if select is None:
        out = dict(item)
    else:
        out = {k: v for k, v in item.items() if k in select or k in ("MetadataId", "@odata.type")}
    for e in expands:
        related = expander(item, e.nav) if expander else None
        if related is None:
            raise bad_request(f"Could not find a property named '{e.nav}' on type 'Microsoft.Dynamics.CRM.{type_name}'.")
        if isinstance(related, dict) and "__single__" in related:
            single = related["__single__"]
            if single is not None and e.select:
                keep = {s.strip() for s in e.select.split(",")} | {"MetadataId", "@odata.type"}
                single = {k: v for k, v in single.items() if k in keep}
            out[e.nav] = single
            continue
        if e.filter:
            node = parse_filter(e.filter)
            related = [r for r in related if evaluate(node, r, e.nav)]
        sel = _select(e.select, related, e.nav) if e.select else None
        out[e.nav] = [_shape(r, sel, [], None, e.nav) for r in related]
    return out


def evaluate(node, item: dict, type_name: str):
    """Evaluate a parsed $filter against a metadata dict (eq/ne/lt/gt, and/or/not, string functions)."""
    kind = node[0]
    if kind == "and":
        return evaluate(node[1], item, type_name) and evaluate(node[2], item, type_name)
    if kind == "or":
        return evaluate(node[1], item, type_name) or evaluate(node[2], item, type_name)
    if kind == "not":
        return not evaluate(node[1], item, type_name)
    if kind == "cmp":
        a, b = _operand(node[2], item, type_name), _operand(node[3], item, type_name)
        op = node[1]
        if op == "eq":
            return _norm(a) == _norm(b)
        if op == "ne":
            return _norm(a) != _norm(b)
        if a is None or b is None:
            return False
        try:
            return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
        except TypeError:
            raise bad_request("A binary operator with incompatible types was detected.") from None
    if kind == "func" and node[1] in ("contains", "startswith", "endswith") and len(node[2]) == 2:
        a, b = _operand(node[2][0], item, type_name), _operand(node[2][1], item, type_name)
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        a, b = a.lower(), b.lower()
        return {"contains": b in a, "startswith": a.startswith(b), "endswith": a.endswith(b)}[node[1]]
    raise not_supported("Only comparisons, and/or/not and contains/startswith/endswith are supported in metadata queries.")


def _operand(node, item: dict, type_name: str):
    if node[0] == "lit":
        return node[2]
    value = item
    for name in node[1]:
        if not isinstance(value, dict) or name not in value:
            raise bad_request(f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'.")
        value = value[name]
    return value


def _norm(v):
    return v.lower() if isinstance(v, str) else v


# ---- creating and updating columns -----------------------------------------------------------

def _label_text(value, current: str, merge: bool) -> str:
    """The 1033 label from a Label body; with MergeLabels, a label not sent keeps its old text."""
    if not isinstance(value, dict):
        return current if merge else ""
    for item in value.get("LocalizedLabels") or []:
        if item.get("LanguageCode") == LANGUAGE:
            return str(item.get("Label") or "")
    return current if merge else ""


def _attribute_type(body: dict) -> str:
    odata_type = str(body.get("@odata.type", "")).lstrip("#").removeprefix(NS)
    kind = TYPE_OF_CLASS.get(odata_type) or body.get("AttributeType")
    if kind == "Lookup":
        raise bad_request("Lookup columns are created with a relationship (POST RelationshipDefinitions).", INVALID_ARGUMENT)
    if kind not in CREATABLE:
        raise bad_request(f"The attribute type '{odata_type or kind}' cannot be created; expected one of "
                          f"{', '.join(sorted(ATTRIBUTE_CLASS[k] for k in CREATABLE))}.", INVALID_ARGUMENT)
    return kind


def _options(body: dict, name: str, kind: str) -> OptionSet:
    spec = body.get("OptionSet") or {}
    if kind == "Boolean":
        true = _label_text(((spec.get("TrueOption") or {}).get("Label")), "Yes", True) or "Yes"
        false = _label_text(((spec.get("FalseOption") or {}).get("Label")), "No", True) or "No"
        return OptionSet(name, [Option(0, false), Option(1, true)], kind="Boolean")
    options = []
    for i, o in enumerate(spec.get("Options") or []):
        value = o.get("Value")
        if value is None:
            value = 100000000 + i
        options.append(Option(int(value), _label_text(o.get("Label"), "", False) or str(value)))
    return OptionSet(name, options, kind=kind)


def create_attribute(ctx: Ctx, t: Table) -> Reply:
    body = ctx.json_body()
    kind = _attribute_type(body)
    schema_name = body.get("SchemaName")
    if not isinstance(schema_name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*_[A-Za-z0-9_]+", schema_name):
        raise bad_request("SchemaName is required and must start with a customization prefix, e.g. 'new_Balance'.",
                          INVALID_ARGUMENT)
    name = schema_name.lower()
    if name in t.columns or (name.endswith("type") and name[:-4] in t.columns):
        raise bad_request(f"An attribute with the specified name {name} already exists on entity {t.logical_name}.",
                          INVALID_ARGUMENT)
    required = (body.get("RequiredLevel") or {}).get("Value", "None")
    global_bind = body.get("GlobalOptionSet@odata.bind")
    col = Column(name, kind, schema_name=schema_name, display=_label_text(body.get("DisplayName"), "", False) or schema_name,
                 description=_label_text(body.get("Description"), "", False), required=required, is_custom=True)
    if kind in ("String", "Memo"):
        col.max_length = int(body.get("MaxLength") or (100 if kind == "String" else 2000))
    elif kind in ("Integer", "BigInt"):
        col.min_value = body.get("MinValue", -2147483648)
        col.max_value = body.get("MaxValue", 2147483647)
    elif kind in ("Decimal", "Double", "Money"):
        col.precision = int(body.get("Precision", 2))
        col.min_value = body.get("MinValue", -100000000000)
        col.max_value = body.get("MaxValue", 100000000000)
    elif kind == "DateTime":
        col.format = "DateOnly" if body.get("Format") == "DateOnly" else "DateAndTime"
    elif kind in ("Picklist", "MultiSelectPicklist", "Boolean"):
        if global_bind:
            m = re.search(r"GlobalOptionSetDefinitions\((?:Name=')?([^')]+)'?\)", global_bind)
            found = [s for s in ctx.schema.option_sets.values() if m and m.group(1) in (s.name, s.metadata_id)]
            if not found:
                raise bad_request(f"The global option set '{global_bind}' does not exist.", INVALID_ARGUMENT)
            col.option_set = found[0]
        else:
            col.option_set = _options(body, name, kind)
    ctx.store.add_column(t.logical_name, col)
    ctx.schema.version += 1
    url = f"{ctx.api}/EntityDefinitions(LogicalName='{t.logical_name}')/Attributes({col.metadata_id})"
    return Reply.empty(204, {"OData-EntityId": url})


def update_attribute(ctx: Ctx, t: Table, c: Column) -> Reply:
    body = ctx.json_body()
    merge = ctx.headers.get("mscrm.mergelabels", "").lower() == "true"
    if body.get("LogicalName", c.name) != c.name:
        raise bad_request("The LogicalName of an attribute cannot be changed.", INVALID_ARGUMENT)
    if body.get("AttributeType", c.type) != c.type:
        raise bad_request("The AttributeType of an attribute cannot be changed.", INVALID_ARGUMENT)
    c.display = _label_text(body.get("DisplayName"), c.display, merge) or c.name
    c.description = _label_text(body.get("Description"), c.description, merge)
    if isinstance(body.get("RequiredLevel"), dict) and not c.is_primary_id:
        c.required = body["RequiredLevel"].get("Value", c.required)
    if c.type in ("String", "Memo") and body.get("MaxLength"):
        c.max_length = int(body["MaxLength"])
    for prop, attr in (("MinValue", "min_value"), ("MaxValue", "max_value"), ("Precision", "precision")):
        if prop in body and body[prop] is not None and c.type in ("Integer", "BigInt", "Decimal", "Double", "Money"):
            setattr(c, attr, body[prop])
    ctx.schema.version += 1
    ctx.store.plans.clear()
    url = f"{ctx.api}/EntityDefinitions(LogicalName='{t.logical_name}')/Attributes({c.metadata_id})"
    return Reply.empty(204, {"OData-EntityId": url})


def create_relationship(ctx: Ctx) -> Reply:
    """POST RelationshipDefinitions: a 1:N (with its lookup column) or an N:N (with its intersect table)."""
    body = ctx.json_body()
    schema = ctx.schema
    kind = str(body.get("@odata.type", "")).lstrip("#").removeprefix(NS)
    schema_name = body.get("SchemaName")
    if not isinstance(schema_name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", schema_name):
        raise bad_request("SchemaName is required for a relationship.", INVALID_ARGUMENT)
    if schema_name in schema.relationships:
        raise bad_request(f"A relationship named {schema_name} already exists.", INVALID_ARGUMENT)

    def table(field: str) -> Table:
        name = body.get(field)
        if name not in schema.tables:
            raise bad_request(f"{field} '{name}' is not a table.", INVALID_ARGUMENT)
        return schema.tables[name]

    if kind == "OneToManyRelationshipMetadata":
        referenced, referencing = table("ReferencedEntity"), table("ReferencingEntity")
        lookup = body.get("Lookup") or {}
        lookup_schema = lookup.get("SchemaName")
        if not isinstance(lookup_schema, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*_[A-Za-z0-9_]+", lookup_schema):
            raise bad_request("Lookup.SchemaName is required and must start with a customization prefix.", INVALID_ARGUMENT)
        name = lookup_schema.lower()
        if name in referencing.columns:
            raise bad_request(f"An attribute with the specified name {name} already exists on entity "
                              f"{referencing.logical_name}.", INVALID_ARGUMENT)
        column = Column(name, "Lookup", schema_name=lookup_schema, targets=(referenced.logical_name,), is_custom=True,
                        display=_label_text(lookup.get("DisplayName"), "", False) or lookup_schema,
                        required=(lookup.get("RequiredLevel") or {}).get("Value", "None"))
        ctx.store.add_column(referencing.logical_name, column)
        rel = OneToMany(schema_name, referenced.logical_name, referencing.logical_name, name,
                        body.get("ReferencingEntityNavigationPropertyName") or name, is_custom=True)
        schema.add_relationship(rel)
    elif kind == "ManyToManyRelationshipMetadata":
        first, second = table("Entity1LogicalName"), table("Entity2LogicalName")
        if first is second:
            raise not_supported("Self-referencing many-to-many relationships are not supported by the emulator.")
        intersect = body.get("IntersectEntityName") or schema_name.lower()
        if intersect in schema.tables:
            raise bad_request(f"IntersectEntityName '{intersect}' is already a table.", INVALID_ARGUMENT)
        rel = ManyToMany(schema_name, first.logical_name, second.logical_name, intersect, is_custom=True)
        schema.add_relationship(rel)
        ctx.store.create_intersect(rel)
    else:
        raise bad_request("@odata.type must be Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata or "
                          "Microsoft.Dynamics.CRM.ManyToManyRelationshipMetadata.", INVALID_ARGUMENT)
    schema.link()
    ctx.store.plans.clear()
    return Reply.empty(204, {"OData-EntityId": f"{ctx.api}/RelationshipDefinitions({rel.metadata_id})"})


def create_entity(ctx: Ctx) -> Reply:
    """POST EntityDefinitions: a custom table with its primary name column and system columns."""
    from d365_components.emulator.seed import ACTIVE, S, TableBuilder

    body = ctx.json_body()
    schema = ctx.schema
    schema_name = body.get("SchemaName")
    if not isinstance(schema_name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*_[A-Za-z0-9_]+", schema_name):
        raise bad_request("SchemaName is required and must start with a customization prefix, e.g. 'new_BankAccount'.",
                          INVALID_ARGUMENT)
    name = schema_name.lower()
    if name in schema.tables or name + "s" in schema.by_set:
        raise bad_request(f"An entity with the specified name {name} already exists.", INVALID_ARGUMENT)
    primary = [a for a in body.get("Attributes") or [] if isinstance(a, dict) and a.get("IsPrimaryName")]
    if len(primary) != 1 or _attribute_type(primary[0]) != "String":
        raise bad_request("Attributes must hold exactly one StringAttributeMetadata with IsPrimaryName true.",
                          INVALID_ARGUMENT)
    primary_schema = primary[0].get("SchemaName") or ""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*_[A-Za-z0-9_]+", primary_schema):
        raise bad_request("The primary name attribute needs a SchemaName with a customization prefix.", INVALID_ARGUMENT)
    ownership = body.get("OwnershipType", "UserOwned")
    if ownership not in ("UserOwned", "OrganizationOwned"):
        raise bad_request(f"OwnershipType '{ownership}' is not supported; use UserOwned or OrganizationOwned.",
                          INVALID_ARGUMENT)
    display = _label_text(body.get("DisplayName"), "", False) or schema_name
    plural = _label_text(body.get("DisplayCollectionName"), "", False) or display + "s"
    primary_column = S(primary_schema.lower(), int(primary[0].get("MaxLength") or 100),
                       _label_text(primary[0].get("DisplayName"), "", False) or primary_schema)
    primary_column.schema_name, primary_column.is_custom = primary_schema, True
    otc = max([t.object_type_code for t in schema.tables.values()] + [10000]) + 1
    builder = TableBuilder(schema)
    table = builder.table(name, name + "s", name + "id", primary_column.name, otc, display, plural, [primary_column],
                          ownership=ownership, state=ACTIVE(), schema_name=schema_name, is_custom=True,
                          description=_label_text(body.get("Description"), "", False),
                          change_tracking=bool(body.get("ChangeTrackingEnabled", False)))
    for col in table.columns.values():
        col.is_custom = col.is_custom or col is primary_column
    builder.finish(ctx.store)
    ctx.store.plans.clear()
    return Reply.empty(204, {"OData-EntityId": f"{ctx.api}/EntityDefinitions({table.metadata_id})"})
