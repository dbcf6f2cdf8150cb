"""Changing the schema through the Web API: create a column (a real SQLite column, usable by the next request), update its labels and limits (honouring MSCRM.MergeLabels), create a relationship or a custom table."""

from __future__ import annotations

import re
from typing import Any

from d365_components.emulator.metadata.shapes import (
    ATTRIBUTE_CLASS,
    CREATABLE,
    LANGUAGE,
    NS,
    TYPE_OF_CLASS,
)
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    bad_request,
    not_supported,
)
from d365_components.emulator.records.files import (
    DEFAULT_MAX_SIZE_KB,
    FILE_TYPES,
    IMAGE_MAX_SIZE_KB,
    add_file_column,
)
from d365_components.emulator.records.files import install as ensure_files
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.columns import active_states, string_column
from d365_components.emulator.storage.schema import (
    Column,
    ManyToMany,
    OneToMany,
    Option,
    OptionSet,
    Table,
)
from d365_components.emulator.storage.table_builder import TableBuilder

# ---- creating and updating columns -----------------------------------------------------------

def label_text(value: Any, current: str, merge: bool) -> str:
    """The 1033 label from a Label body; with MergeLabels, a label not sent keeps its old text."""
    if not isinstance(value, dict):
        return current if merge else ""
    for item in value.get("LocalizedLabels") or []:
        if item.get("LanguageCode") == LANGUAGE:
            return str(item.get("Label") or "")
    return current if merge else ""


def _attribute_type(body: dict[str, Any]) -> str:
    odata_type = str(body.get("@odata.type", "")).lstrip("#").removeprefix(NS)
    kind = TYPE_OF_CLASS.get(odata_type) or body.get("AttributeType")
    if kind == "Lookup":
        raise bad_request("Lookup columns are created with a relationship (POST RelationshipDefinitions).", INVALID_ARGUMENT)
    if kind not in CREATABLE:
        raise bad_request(f"The attribute type '{odata_type or kind}' cannot be created; expected one of "
                          f"{', '.join(sorted(ATTRIBUTE_CLASS[k] for k in CREATABLE))}.", INVALID_ARGUMENT)
    return str(kind)


def _options(body: dict[str, Any], name: str, kind: str) -> OptionSet:
    spec = body.get("OptionSet") or {}
    if kind == "Boolean":
        true = label_text(((spec.get("TrueOption") or {}).get("Label")), "Yes", True) or "Yes"
        false = label_text(((spec.get("FalseOption") or {}).get("Label")), "No", True) or "No"
        return OptionSet(name, [Option(0, false), Option(1, true)], kind="Boolean")
    options = []
    for i, o in enumerate(spec.get("Options") or []):
        value = o.get("Value")
        if value is None:
            value = 100000000 + i
        options.append(Option(int(value), label_text(o.get("Label"), "", False) or str(value)))
    return OptionSet(name, options, kind=kind)


def create_attribute(ctx: Ctx, t: Table) -> Reply:
    col = add_attribute(ctx, t, ctx.json_body())
    url = f"{ctx.api}/EntityDefinitions(LogicalName='{t.logical_name}')/Attributes({col.metadata_id})"
    return Reply.empty(204, {"OData-EntityId": url})


def add_attribute(ctx: Ctx, t: Table, body: dict[str, Any]) -> Column:
    """A new column from an AttributeMetadata body, usable by the next request."""
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
    if kind in FILE_TYPES:
        return _add_file_attribute(ctx, t, body, kind, schema_name)
    global_bind = body.get("GlobalOptionSet@odata.bind")
    col = Column(name, kind, schema_name=schema_name, display=label_text(body.get("DisplayName"), "", False) or schema_name,
                 description=label_text(body.get("Description"), "", False), required=required, is_custom=True)
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
    ctx.store.plans.clear()
    return col


def _add_file_attribute(ctx: Ctx, t: Table, body: dict[str, Any], kind: str, schema_name: str) -> Column:
    """FileAttributeMetadata (MaxSizeInKB, default 32768) or ImageAttributeMetadata (MaxSizeInKB default
    10240, CanStoreFullImage, IsPrimaryImage): the column and its `<name>_name` companion."""
    default_kb = DEFAULT_MAX_SIZE_KB if kind == "File" else IMAGE_MAX_SIZE_KB
    size_kb = body.get("MaxSizeInKB") or default_kb
    if not isinstance(size_kb, int) or not 1 <= size_kb <= (10485760 if kind == "File" else 30720):
        raise bad_request(f"MaxSizeInKB '{size_kb}' is out of range for a {kind} column.", INVALID_ARGUMENT)
    ensure_files(ctx.store)
    col = add_file_column(ctx.store, t, schema_name.lower(), label_text(body.get("DisplayName"), "", False) or schema_name,
                          max_size_kb=size_kb, kind=kind)
    col.schema_name, col.is_custom = schema_name, True
    if kind == "Image":
        col.can_store_full_image = bool(body.get("CanStoreFullImage", False))
        if body.get("IsPrimaryImage") or t.primary_image is None:
            t.primary_image = col.name
    ctx.store.plans.clear()
    return col


def update_attribute(ctx: Ctx, t: Table, c: Column) -> Reply:
    body = ctx.json_body()
    merge = ctx.headers.get("mscrm.mergelabels", "").lower() == "true"
    if body.get("LogicalName", c.name) != c.name:
        raise bad_request("The LogicalName of an attribute cannot be changed.", INVALID_ARGUMENT)
    if body.get("AttributeType", c.type) != c.type:
        raise bad_request("The AttributeType of an attribute cannot be changed.", INVALID_ARGUMENT)
    c.display = label_text(body.get("DisplayName"), c.display, merge) or c.name
    c.description = label_text(body.get("Description"), c.description, merge)
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
                        display=label_text(lookup.get("DisplayName"), "", False) or lookup_schema,
                        required=(lookup.get("RequiredLevel") or {}).get("Value", "None"))
        ctx.store.add_column(referencing.logical_name, column)
        # Dataverse names the lookup's navigation property by its SchemaName (case-sensitive), which
        # Microsoft's SDK binds with `new_SdkContactId@odata.bind` (research/microsoft_sdk_catalogue.md §10)
        rel: OneToMany | ManyToMany = OneToMany(schema_name, referenced.logical_name, referencing.logical_name, name,
                        body.get("ReferencingEntityNavigationPropertyName") or lookup_schema, is_custom=True)
        schema.add_relationship(rel)
    elif kind == "ManyToManyRelationshipMetadata":
        first, second = table("Entity1LogicalName"), table("Entity2LogicalName")
        if first is second:
            raise not_supported("Self-referencing many-to-many relationships are not supported by the emulator.")
        intersect = body.get("IntersectEntityName") or schema_name.lower()
        if intersect in schema.tables:
            raise bad_request(f"IntersectEntityName '{intersect}' is already a table.", INVALID_ARGUMENT)
        many = ManyToMany(schema_name, first.logical_name, second.logical_name, intersect, is_custom=True)
        schema.add_relationship(many)
        ctx.store.create_intersect(many)
        rel = many
    else:
        raise bad_request("@odata.type must be Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata or "
                          "Microsoft.Dynamics.CRM.ManyToManyRelationshipMetadata.", INVALID_ARGUMENT)
    schema.link()
    ctx.store.plans.clear()
    return Reply.empty(204, {"OData-EntityId": f"{ctx.api}/RelationshipDefinitions({rel.metadata_id})"})


def create_entity(ctx: Ctx) -> Reply:
    """POST EntityDefinitions: a custom table with its primary name column and system columns."""
    table = add_entity(ctx, ctx.json_body())
    return Reply.empty(204, {"OData-EntityId": f"{ctx.api}/EntityDefinitions({table.metadata_id})"})


def create_entities(ctx: Ctx) -> Reply:
    """POST CreateEntities {"Entities": [ComplexEntityMetadata, ...]}: each table with all its columns.

    Not in the public Web API reference; Microsoft's SDK (powerplatform-dataverse-client 1.1,
    `tables.create`) sends it and then reads the table back with GET EntityDefinitions?$filter, so
    the emulator serves it as the SDK expects: the documented POST EntityDefinitions for each entity,
    plus every non-primary attribute of its `Attributes` list. The response body (UNCONFIRMED) is
    {"EntityIds": [...]} with 200; the SDK does not read it.
    """
    body = ctx.json_body()
    entities = body.get("Entities")
    if not isinstance(entities, list) or not entities or not all(isinstance(e, dict) for e in entities):
        raise bad_request("Entities must be a non-empty list of ComplexEntityMetadata.", INVALID_ARGUMENT)
    if set(body) - {"Entities", "SolutionUniqueName"}:
        raise bad_request(f"CreateEntities has no parameter '{sorted(set(body) - {'Entities', 'SolutionUniqueName'})[0]}'.",
                          INVALID_ARGUMENT)
    ids = []
    for entity in entities:
        entity["Attributes"] = [_simple(a) for a in entity.get("Attributes") or []]
        table = add_entity(ctx, entity)
        for attribute in entity["Attributes"]:
            if isinstance(attribute, dict) and not attribute.get("IsPrimaryName"):
                add_attribute(ctx, table, attribute)
        ids.append(table.metadata_id)
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.CreateEntitiesResponse",
                       "EntityIds": ids})


def _simple(attribute: Any) -> Any:
    """CreateEntities carries Complex<X>AttributeMetadata, the message's own names for <X>AttributeMetadata."""
    if isinstance(attribute, dict):
        kind = str(attribute.get("@odata.type", "")).lstrip("#")
        if kind.startswith(NS + "Complex"):
            attribute = {**attribute, "@odata.type": NS + kind.removeprefix(NS + "Complex")}
    return attribute


def add_entity(ctx: Ctx, body: dict[str, Any]) -> Table:
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
    if body.get("IsActivity"):
        raise not_supported("Custom activity tables (IsActivity true) are not supported by the emulator.")
    ownership = body.get("OwnershipType", "UserOwned")
    if ownership not in ("UserOwned", "OrganizationOwned"):
        raise bad_request(f"OwnershipType '{ownership}' is not supported; use UserOwned or OrganizationOwned.",
                          INVALID_ARGUMENT)
    display = label_text(body.get("DisplayName"), "", False) or schema_name
    plural = label_text(body.get("DisplayCollectionName"), "", False) or display + "s"
    primary_column = string_column(primary_schema.lower(), int(primary[0].get("MaxLength") or 100),
                       label_text(primary[0].get("DisplayName"), "", False) or primary_schema)
    primary_column.schema_name, primary_column.is_custom = primary_schema, True
    otc = max([t.object_type_code for t in schema.tables.values()] + [10000]) + 1
    builder = TableBuilder(schema)
    table = builder.table(name, name + "s", name + "id", primary_column.name, otc, display, plural, [primary_column],
                          ownership=ownership, state=active_states(), schema_name=schema_name, is_custom=True,
                          description=label_text(body.get("Description"), "", False),
                          change_tracking=bool(body.get("ChangeTrackingEnabled", False)))
    for col in table.columns.values():
        col.is_custom = col.is_custom or col is primary_column
    builder.finish(ctx.store)
    ctx.store.plans.clear()
    return table
