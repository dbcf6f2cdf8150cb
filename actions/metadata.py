"""Metadata actions: tables, columns and choices as Dataverse describes them (reference §7).

Every action here takes ``table``: a table's logical name (``account``) or MetadataId, filled from
the ``dynamics365.table_definitions`` dropdown. It is never a row id (the leading connector's first
weakness), and an entity set name (``accounts``) is accepted too: it is looked up once when the
name is not a logical name.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import httpx
from pydantic import ConfigDict, field_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import ADVANCED, NAMESPACE, literal
from d365_components.actions._lookups import metadata_for
from d365_components.connections.odata import is_guid, quote
from d365_components.conventions import COLUMNS, NAME, NAME_OR_GUID_PATTERN, NAME_PATTERN, TABLE_DEFINITIONS
from d365_components.errors import FieldError, InputValidationError, RecordNotFoundError
from d365_components.inputs import forbidden, rules

T = TypeVar("T")
NS = NAMESPACE  # the short name other modules import

#: the concrete AttributeMetadata classes a path can be cast to (the abstract Enum type cannot)
ATTRIBUTE_TYPES = (
    "String", "Memo", "Integer", "BigInt", "Decimal", "Double", "Money", "Boolean", "Picklist",
    "MultiSelectPicklist", "State", "Status", "DateTime", "Lookup", "UniqueIdentifier", "EntityName",
    "Image", "File",
)
ATTRIBUTE_TYPE_LABELS = {
    "String": "Text", "Memo": "Multiline text", "Integer": "Whole number", "BigInt": "Big integer",
    "Decimal": "Decimal number", "Double": "Floating point number", "Money": "Currency", "Boolean": "Yes/No",
    "Picklist": "Choice", "MultiSelectPicklist": "Choices", "State": "Status", "Status": "Status reason",
    "DateTime": "Date and time", "Lookup": "Lookup", "UniqueIdentifier": "Unique identifier",
    "EntityName": "Table name", "Image": "Image", "File": "File",
}
#: a column type, or None (the enum lists null so an empty default validates against the schema)
OptionalAttributeType = Literal[(*ATTRIBUTE_TYPES, None)]  # type: ignore[valid-type]
CHOICE_TYPES = ("Picklist", "MultiSelectPicklist", "State", "Status", "Boolean")
ENTITY_NAVIGATIONS = ("Attributes", "Keys", "OneToManyRelationships", "ManyToOneRelationships", "ManyToManyRelationships")
TABLE_SUMMARY = [
    "LogicalName", "SchemaName", "EntitySetName", "DisplayName", "DisplayCollectionName", "PrimaryIdAttribute",
    "PrimaryNameAttribute", "ObjectTypeCode", "IsCustomEntity", "IsActivity", "IsChildEntity", "IsIntersect",
]
COLUMN_SUMMARY = [
    "LogicalName", "SchemaName", "AttributeType", "DisplayName", "RequiredLevel", "IsPrimaryId", "IsPrimaryName",
    "IsValidForRead", "IsValidForCreate", "IsValidForUpdate", "IsCustomAttribute",
]

# -- inputs every metadata action shares -------------------------------------------------------


def table_field(**overrides: Any) -> Any:
    return InputField(
        title=overrides.pop("title", "Table"),
        description=overrides.pop(
            "description",
            "The table whose definition to use: its logical name (account) or its MetadataId. "
            "Not a row ID. An entity set name (accounts) also works.",
        ),
        examples=["account"],
        data_source=TABLE_DEFINITIONS,
        pattern=NAME_OR_GUID_PATTERN,
        **overrides,
    )


def column_field(title: str = "Column", types: tuple[str, ...] = (), **overrides: Any) -> Any:
    """A column of ``table``, picked from its columns (only those of ``types`` when given)."""
    feed = {"table": "table", **({"types": literal(",".join(types))} if types else {})}
    return InputField(
        title=title,
        description=overrides.pop("description", "The column: its logical name (emailaddress1) or its MetadataId."),
        examples=overrides.pop("examples", ["emailaddress1"]),
        data_source=COLUMNS,
        data_source_inputs=feed,
        pattern=NAME_OR_GUID_PATTERN,
        **overrides,
    )


def field_names_field() -> Any:
    return InputField(
        [], title="Properties", description="Metadata properties to return ($select); empty returns all.",
        examples=[["LogicalName", "DisplayName"]], widget="list",
    )


def attribute_type_field(description: str) -> Any:
    return InputField(None, title="Column type", description=description, examples=["Picklist"], widget="dropdown",
                      enum_labels={**ATTRIBUTE_TYPE_LABELS, None: "Any type"})


def body_field(description: str) -> Any:
    return InputField(
        title="Column definition", description=description, widget="code", language="json",
        examples=[{"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "SchemaName": "new_Code",
                   "DisplayName": "Code", "MaxLength": 50,
                   "RequiredLevel": {"Value": "None"}}],
    )


def solution_field() -> Any:
    return InputField(
        None, title="Solution", description="Unique name of the unmanaged solution to add the change to.",
        examples=["examplesolution"], group=ADVANCED, advanced=True,
    )


def language_field() -> Any:
    return InputField(
        1033, title="Label language", description="Language code for labels given as plain text (1033 = English).",
        ge=1, group=ADVANCED, advanced=True,
    )


# -- addressing --------------------------------------------------------------------------------


def _key_segment(name_or_id: str, name_property: str = "LogicalName") -> str:
    if is_guid(name_or_id):
        return f"({name_or_id.strip('{}').lower()})"
    return f"({name_property}={quote(name_or_id.lower())})"


def table_path(table: str) -> str:
    return "EntityDefinitions" + _key_segment(table)


def column_path(table: str, column: str, attribute_type: str | None = None) -> str:
    path = f"{table_path(table)}/Attributes{_key_segment(column)}"
    return f"{path}/{NAMESPACE}{attribute_type}AttributeMetadata" if attribute_type else path


async def on_table(ctx: Context, table: str, call: Callable[[str], Awaitable[T]]) -> T:
    """``call(table)``; when ``table`` is no logical name, retry once with the table an entity set names."""
    try:
        return await call(table)
    except RecordNotFoundError:
        if is_guid(table):
            raise
        found = await ctx.web_api.get_json(
            "EntityDefinitions",
            params={"$select": "LogicalName", "$filter": f"EntitySetName eq {quote(table)}"},
        )
        if not found.get("value"):
            raise InputValidationError(
                [FieldError("/table", f"no table has the logical name or entity set name '{table}'")]
            ) from None
        return await call(found["value"][0]["LogicalName"])


def label_text(label: Any, language: int | None = None) -> str:
    """The text of a metadata Label: the user's label, or the one in ``language``, or the first."""
    if not isinstance(label, dict):
        return ""
    labels = label.get("LocalizedLabels") or []
    if language is not None:
        for item in labels:
            if item.get("LanguageCode") == language:
                return str(item.get("Label") or "")
    user = label.get("UserLocalizedLabel")
    if isinstance(user, dict) and user.get("Label"):
        return str(user["Label"])
    return str(labels[0].get("Label") or "") if labels else ""


def as_label(text: str, language: int) -> dict[str, Any]:
    return {
        "@odata.type": f"{NAMESPACE}Label",
        "LocalizedLabels": [{"@odata.type": f"{NAMESPACE}LocalizedLabel", "Label": text, "LanguageCode": language}],
    }


def type_of(attribute: dict[str, Any]) -> str | None:
    """``Picklist`` from ``#Microsoft.Dynamics.CRM.PicklistAttributeMetadata`` (None for the base class)."""
    odata_type = str(attribute.get("@odata.type", "")).lstrip("#").removeprefix(NAMESPACE)
    name = odata_type.removesuffix("AttributeMetadata")
    return name if name and odata_type.endswith("AttributeMetadata") else None


def _query(field_names: list[str], expand: list[str] | None = None, filter_expression: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if field_names:
        params["$select"] = field_names
    if filter_expression:
        params["$filter"] = filter_expression
    if expand:
        params["$expand"] = expand
    return params


def _clean(item: dict[str, Any]) -> dict[str, Any]:
    """A metadata object without the response's OData context annotations."""
    return {k: v for k, v in item.items() if not k.startswith("@odata.") or k == "@odata.type"}


def _table_filter(include_custom: bool, top_level_only: bool, names: list[str] | None = None) -> str | None:
    clauses = []
    if not include_custom:
        clauses.append("IsCustomEntity eq false")
    if top_level_only:
        clauses.append("IsChildEntity eq false and IsIntersect eq false")
    if names:
        clauses.append("(" + " or ".join(f"LogicalName eq {quote(n.lower())}" for n in names) + ")")
    return " and ".join(clauses) or None


def _with_logical_name(field_names: list[str]) -> list[str]:
    """A $select of metadata properties that always keeps LogicalName (the outputs promise it)."""
    return [*field_names, "LogicalName"] if field_names and "LogicalName" not in field_names else list(field_names)


def _listed(body: dict[str, Any]) -> dict[str, Any]:
    """A metadata collection as the list actions return it: cleaned items and their count."""
    value = [_clean(item) for item in body.get("value", [])]
    return {"value": value, "count": len(value)}


async def _table_columns(ctx: Context, table: str, params: dict[str, Any], attribute_type: str | None = None) -> dict[str, Any]:
    """The columns of ``table`` (only those of ``attribute_type``, cast to it, when given)."""
    cast = f"/{NAMESPACE}{attribute_type}AttributeMetadata" if attribute_type else ""

    async def read(name: str) -> dict[str, Any]:
        return await ctx.web_api.get_json(f"{table_path(name)}/Attributes{cast}", params=params)

    return _listed(await on_table(ctx, table, read))


async def typed_column(ctx: Context, table: str, column: str, select: list[str] | None = None,
                       expand: list[str] | None = None, attribute_type: str | None = None) -> dict[str, Any]:
    """A column's definition cast to its own type, so type-specific properties are included."""

    async def read(name: str) -> dict[str, Any]:
        kind = attribute_type
        if kind is None:
            base = await ctx.web_api.get_json(column_path(name, column), params={"$select": "LogicalName,AttributeType"})
            kind = type_of(base)
        params = _query(select or [], expand)
        return await ctx.web_api.get_json(column_path(name, column, kind), params=params)

    return _clean(await on_table(ctx, table, read))


DEFINITION_OUTPUT = {
    "type": "object",
    "required": ["LogicalName"],
    "properties": {"LogicalName": {"type": "string", "description": "The logical name; the other properties follow Dataverse's metadata."}},
}
LIST_OUTPUT: dict[str, Any] = {
    "type": "object",
    "required": ["value", "count"],
    "properties": {
        "value": {"type": "array", "items": {"type": "object"}, "description": "The definitions, as Dataverse describes them."},
        "count": {"type": "integer", "description": "How many definitions value holds."},
    },
}
TABLE_EXAMPLE = {
    "MetadataId": "70816501-edb9-4740-a16c-6a5efbc05d84", "LogicalName": "account", "SchemaName": "Account",
    "EntitySetName": "accounts", "PrimaryIdAttribute": "accountid", "PrimaryNameAttribute": "name",
    "ObjectTypeCode": 1, "IsCustomEntity": False,
    "DisplayName": {"LocalizedLabels": [{"Label": "Account", "LanguageCode": 1033}],
                    "UserLocalizedLabel": {"Label": "Account", "LanguageCode": 1033}},
}
COLUMN_EXAMPLE = {
    "@odata.type": "#Microsoft.Dynamics.CRM.StringAttributeMetadata", "MetadataId": "024a2ab6-9dd5-4c45-a4ef-6b6e1e0e3a1d",
    "LogicalName": "emailaddress1", "SchemaName": "EMailAddress1", "AttributeType": "String", "MaxLength": 100,
    "IsValidForCreate": True, "IsValidForRead": True, "IsValidForUpdate": True,
    "RequiredLevel": {"Value": "None", "CanBeChanged": True, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
}
WRITE_OUTPUT = {
    "type": "object",
    "required": ["attributeId", "logicalName", "entityUrl"],
    "properties": {
        "attributeId": {"type": ["string", "null"], "description": "MetadataId of the column."},
        "logicalName": {"type": "string", "description": "The column's logical name."},
        "entityUrl": {"type": ["string", "null"], "description": "OData-EntityId of the column definition."},
    },
}
WRITE_EXAMPLE = {
    "attributeId": "f11bef16-287c-e511-80d2-00155d2a68d2", "logicalName": "new_code",
    "entityUrl": "https://org.crm.dynamics.com/api/data/v9.2/EntityDefinitions(LogicalName='account')/Attributes(f11bef16-287c-e511-80d2-00155d2a68d2)",
}


# -- tables --------------------------------------------------------------------------------------


class ListEntityTypes(Action):
    """List the entity sets (tables and metadata sets) the Web API's service document offers."""

    key = "dynamics365.list_entity_types"
    label = "List Entity Types"
    group = "Metadata"

    class Inputs(InputModel):
        max_page_size: int = InputField(
            5000, title="Page size", description="Entity sets per page (1-5000).", ge=1, le=5000,
        )
        next_link: str | None = InputField(
            None, title="Next page", description="The nextLink of a previous call, to read the page after it.",
            examples=["https://contoso.crm.dynamics.com/api/data/v9.2/#skip=5000"],
        )
        fetch_all: bool = InputField(False, title="Fetch all", description="Follow every page and return them all.")

    output_schema = {
        "type": "object",
        "required": ["value", "nextLink", "count"],
        "properties": {
            "value": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "url"],
                    "properties": {
                        "name": {"type": "string", "description": "The entity set name (accounts)."},
                        "kind": {"type": "string", "description": "EntitySet, Singleton or FunctionImport."},
                        "url": {"type": "string", "description": "Its URL relative to the Web API."},
                    },
                },
                "description": "The entity sets of this page.",
            },
            "nextLink": {"type": ["string", "null"], "description": "Give this as Next page to read on; null on the last page."},
            "count": {"type": "integer", "description": "How many entity sets value holds."},
        },
    }
    example = {"value": [{"name": "accounts", "kind": "EntitySet", "url": "accounts"}], "nextLink": None, "count": 1}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        # Dataverse answers the service document in one piece; pages beyond the server's are cut
        # here and resumed from a "#skip=N" fragment (never sent to the server).
        url, _, fragment = (inputs.next_link or ctx.web_api.api_url + "/").partition("#")
        if inputs.next_link:
            ctx.web_api.checked_url(url, "/nextLink")  # on this Web API, and a valid URL
        start = int(fragment.removeprefix("skip=")) if fragment.startswith("skip=") and fragment[5:].isdigit() else 0
        size = inputs.max_page_size
        rows: list[dict[str, Any]] = []
        server_next = None
        async for page in ctx.web_api.pages(url, page_size=size):
            rows += [{"name": r.get("name"), "kind": r.get("kind", "EntitySet"), "url": r.get("url")} for r in page.rows]
            server_next = page.next_link
            if not inputs.fetch_all:
                break
        if inputs.fetch_all:
            rows, next_link = rows[start:], None
        elif start + size < len(rows):
            rows, next_link = rows[start : start + size], f"{url}#skip={start + size}"
        else:
            rows, next_link = rows[start : start + size], server_next
        return {"value": rows, "nextLink": next_link, "count": len(rows)}


class ListEntities(Action):
    """List table definitions (EntityDefinitions), with or without custom and child tables."""

    key = "dynamics365.list_entities"
    label = "List Entities"
    group = "Metadata"

    class Inputs(InputModel):
        include_custom: bool = InputField(True, title="Include custom tables", description="Include tables made by customizers.")
        include_only_top_level: bool = InputField(
            False, title="Top-level tables only", description="Leave out child tables and N:N intersect tables.",
        )
        include_details: bool = InputField(
            False, title="Include details", description="Return every table property, not just names and keys.",
        )

    output_schema = LIST_OUTPUT
    example = {"value": [TABLE_EXAMPLE], "count": 1}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        params = _query([] if inputs.include_details else TABLE_SUMMARY,
                        filter_expression=_table_filter(inputs.include_custom, inputs.include_only_top_level))
        return _listed(await ctx.web_api.get_json("EntityDefinitions", params=params))


class GetEntitiesMetadata(Action):
    """Read the definitions of several tables at once, each with its columns."""

    key = "dynamics365.get_entities_metadata"
    label = "Get Entities Metadata"
    group = "Metadata"

    class Inputs(InputModel):
        tables: list[str] = InputField(
            [], title="Tables",
            description="The tables, by logical name (account) or entity set name (accounts); empty means every table.",
            examples=[["account", "contact"]], widget="list", data_source=TABLE_DEFINITIONS,
            schema={"items": {"type": "string", "pattern": NAME_PATTERN}},
        )
        include_custom: bool = InputField(True, title="Include custom tables", description="Include tables made by customizers.")
        include_only_top_level: bool = InputField(
            False, title="Top-level tables only", description="Leave out child tables and N:N intersect tables.",
        )
        include_attributes: bool = InputField(True, title="Include columns", description="Return each table's columns.")
        label_filter: list[str] = InputField(
            [], title="Tables by name or label",
            description=("Only tables whose logical name, entity set name, schema name or display label (Account, "
                         "Sales Order) is one of these, matched case-insensitively. Empty: no such filter. "
                         "Prismatic's Entity Type Filter."),
            examples=[["Account", "sales order"]], widget="list",
            schema={"items": {"type": "string", "minLength": 1}},
        )
        default_selected: list[str] = InputField(
            [], title="Default Selected Entity Types",
            description=("Tables (names or labels, case-insensitive) marked selected: true in the output, for a "
                         "picker that starts with them ticked; every other table is selected: false."),
            examples=[["account", "Contact"]], widget="list", data_source=TABLE_DEFINITIONS,
            schema={"items": {"type": "string", "minLength": 1}},
        )

        @field_validator("tables")
        @classmethod
        def _names(cls, names: list[str]) -> list[str]:
            for index, name in enumerate(names):
                if not NAME.match(name):
                    raise InputValidationError([FieldError(f"/tables/{index}", f"'{name}' is not a table name")])
            return names

    output_schema = {**LIST_OUTPUT, "properties": {
        **LIST_OUTPUT["properties"],
        "value": {"type": "array", "description": (
            "The definitions, as Dataverse describes them, each with selected: whether Default Selected Entity "
            "Types names it."), "items": {"type": "object", "required": ["selected"],
                                          "properties": {"selected": {"type": "boolean", "description": (
                                              "Whether Default Selected Entity Types names this table.")}}}},
    }}
    example = {"value": [{**TABLE_EXAMPLE, "Attributes": [COLUMN_EXAMPLE], "selected": True}], "count": 1}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        expand = None
        if inputs.include_attributes:
            expand = [f"Attributes($select={','.join(COLUMN_SUMMARY)})"]
        metadata = metadata_for(ctx.web_api)
        names = [(await metadata.table(name, pointer=f"/tables/{index}")).logical_name or name
                 for index, name in enumerate(inputs.tables)]
        where = _table_filter(inputs.include_custom, inputs.include_only_top_level, names)
        found = _listed(await ctx.web_api.get_json("EntityDefinitions", params=_query(TABLE_SUMMARY, expand, where)))
        wanted = {name.strip().lower() for name in inputs.label_filter}
        selected = {name.strip().lower() for name in inputs.default_selected}
        tables = [{**table, "selected": bool(_names_of(table) & selected)} for table in found["value"]
                  if not wanted or _names_of(table) & wanted]
        return {"value": tables, "count": len(tables)}


def _names_of(table: dict[str, Any]) -> set[str]:
    """Every name a designer may know a table by, lower-cased: logical, entity set, schema, labels."""
    names = {str(table.get(key) or "").lower() for key in ("LogicalName", "EntitySetName", "SchemaName")}
    for key in ("DisplayName", "DisplayCollectionName"):
        label = table.get(key) or {}
        names |= {str(item.get("Label") or "").lower() for item in label.get("LocalizedLabels") or []}
        names.add(label_text(label).lower())
    return names - {""}


class GetEntityMetadata(Action):
    """Read one table's definition by its logical name, entity set name or MetadataId."""

    key = "dynamics365.get_entity_metadata"
    label = "Get Entity Metadata"
    group = "Metadata"

    class Inputs(InputModel):
        table: str = table_field()
        field_names: list[str] = field_names_field()
        expand_property_names: list[Literal[ENTITY_NAVIGATIONS]] = InputField(  # type: ignore[valid-type]
            [], title="Expand", description="Related definitions to include: Attributes, Keys or relationships.",
            examples=[["Attributes", "Keys"]], widget="list",
            enum_labels={"Attributes": "Columns", "Keys": "Alternate keys", "OneToManyRelationships": "One-to-many relationships",
                         "ManyToOneRelationships": "Many-to-one relationships",
                         "ManyToManyRelationships": "Many-to-many relationships"},
        )

    output_schema = DEFINITION_OUTPUT
    example = TABLE_EXAMPLE

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        select = _with_logical_name(inputs.field_names)
        params = _query(select, list(inputs.expand_property_names))

        async def read(name: str) -> dict[str, Any]:
            return await ctx.web_api.get_json(table_path(name), params=params)

        return _clean(await on_table(ctx, inputs.table, read))


# -- columns ------------------------------------------------------------------------------------


class ListAttributes(Action):
    """List a table's columns with their types and what each can be used for."""

    key = "dynamics365.list_attributes"
    label = "List Attributes"
    group = "Metadata"

    class Inputs(InputModel):
        table: str = table_field()
        attribute_type: OptionalAttributeType = attribute_type_field(
            "Only columns of this type (Money, String, Picklist...). Empty: every column."
        )
        include_details: bool = InputField(
            False, title="Include details", description="Return every column property, not just names, types and use.",
        )

    output_schema = LIST_OUTPUT
    example = {"value": [COLUMN_EXAMPLE], "count": 1}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        params = _query([] if inputs.include_details else COLUMN_SUMMARY)
        return await _table_columns(ctx, inputs.table, params, inputs.attribute_type)


class QueryAttributes(Action):
    """Query a table's columns: of one type, with a filter, chosen properties and expanded option sets."""

    key = "dynamics365.query_attributes"
    label = "Query Attributes"
    group = "Metadata"

    class Inputs(InputModel):
        model_config = ConfigDict(json_schema_extra=rules(forbidden(
            "needs attributeType: only a typed column has OptionSet and similar properties", ["expandPropertyNames"],
            {"required": ["expandPropertyNames"], "properties": {"expandPropertyNames": {"type": "array", "minItems": 1}}},
            {"not": {"required": ["attributeType"], "properties": {"attributeType": {"type": "string", "minLength": 1}}}},
        )))

        table: str = table_field()
        attribute_type: OptionalAttributeType = attribute_type_field(
            "Only columns of this type, with the type's own properties (MaxLength, OptionSet...)."
        )
        field_names: list[str] = field_names_field()
        filter_expression: str | None = InputField(
            None, title="Filter", description="An OData $filter over column properties.",
            examples=["IsCustomAttribute eq true", "RequiredLevel/Value eq Microsoft.Dynamics.CRM.AttributeRequiredLevel'ApplicationRequired'"],
            widget="code", language="odata",
        )
        expand_property_names: list[str] = InputField(
            [], title="Expand", description="Navigation properties to include, e.g. OptionSet (needs a column type).",
            examples=[["OptionSet"]], widget="list",
        )

        @field_validator("expand_property_names")
        @classmethod
        def _expand_needs_type(cls, names: list[str], info: Any) -> list[str]:
            if names and not info.data.get("attribute_type"):
                raise ValueError("needs attributeType: only a typed column has OptionSet and similar properties")
            return names

    output_schema = LIST_OUTPUT
    example = {"value": [COLUMN_EXAMPLE], "count": 1}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        params = _query(inputs.field_names, inputs.expand_property_names, inputs.filter_expression)
        return await _table_columns(ctx, inputs.table, params, inputs.attribute_type)


class GetAttribute(Action):
    """Read one column's full definition, cast to its own type (so MaxLength, OptionSet... are included)."""

    key = "dynamics365.get_attribute"
    label = "Get Attribute"
    group = "Metadata"

    class Inputs(InputModel):
        table: str = table_field()
        attribute: str = column_field()
        attribute_type: OptionalAttributeType = attribute_type_field(
            "The column's type; found automatically when empty (one more request)."
        )
        field_names: list[str] = field_names_field()
        expand_property_names: list[str] = InputField(
            [], title="Expand", description="Navigation properties to include, e.g. OptionSet for a choice column.",
            examples=[["OptionSet"]], widget="list",
        )

    output_schema = DEFINITION_OUTPUT
    example = COLUMN_EXAMPLE

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        select = _with_logical_name(inputs.field_names)
        return await typed_column(ctx, inputs.table, inputs.attribute, select,
                                  list(inputs.expand_property_names), inputs.attribute_type)


def _definition(body: dict[str, Any], language: int) -> dict[str, Any]:
    """The column body as Dataverse wants it: a typed @odata.type, Labels for plain-text labels."""
    body = copy.deepcopy(body)
    if "@odata.type" not in body and body.get("AttributeType"):
        body["@odata.type"] = f"{NAMESPACE}{body['AttributeType']}AttributeMetadata"
    for name in ("DisplayName", "Description"):
        if isinstance(body.get(name), str):
            body[name] = as_label(body[name], language)
    if isinstance(body.get("RequiredLevel"), str):
        body["RequiredLevel"] = {"Value": body["RequiredLevel"]}
    return body


def _check_body(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    if creating and "@odata.type" not in body and not body.get("AttributeType"):
        raise ValueError(
            "needs \"@odata.type\" (e.g. Microsoft.Dynamics.CRM.StringAttributeMetadata) or \"AttributeType\" (String)"
        )
    if creating and not isinstance(body.get("SchemaName"), str):
        raise ValueError("needs \"SchemaName\" with the customization prefix, e.g. \"new_Code\"")
    return body


def _written(response: httpx.Response, fallback_name: str) -> dict[str, Any]:
    url = response.headers.get("OData-EntityId")
    match = re.search(r"Attributes\(([^()]+)\)\s*$", url or "")
    attribute_id = match.group(1) if match and is_guid(match.group(1)) else None
    return {"attributeId": attribute_id, "logicalName": fallback_name.lower(), "entityUrl": url}


class CreateAttribute(Action):
    """Add a column to a table from its definition (labels may be plain text)."""

    key = "dynamics365.create_attribute"
    label = "Create Attribute"
    group = "Metadata"

    class Inputs(InputModel):
        model_config = ConfigDict(json_schema_extra=rules(
            forbidden('needs "@odata.type" (e.g. Microsoft.Dynamics.CRM.StringAttributeMetadata) or "AttributeType" (String)',
                      ["attributeBody"], {"required": ["attributeBody"], "properties": {"attributeBody": {
                          "type": "object", "not": {"required": ["@odata.type"], "properties": {"@odata.type": {}}},
                          "properties": {"AttributeType": {"enum": [None, "", 0, False, [], {}]}}}}}),
            forbidden('needs "SchemaName" with the customization prefix, e.g. "new_Code"',
                      ["attributeBody"], {"required": ["attributeBody"], "properties": {"attributeBody": {
                          "type": "object", "not": {"required": ["SchemaName"], "properties": {"SchemaName": {"type": "string"}}}}}}),
        ))

        table: str = table_field()
        attribute_body: dict[str, Any] = body_field(
            "The column's AttributeMetadata as JSON: @odata.type (or AttributeType), SchemaName, DisplayName "
            "(a Label or plain text), RequiredLevel and the type's own properties (MaxLength, Precision...)."
        )
        solution_unique_name: str | None = solution_field()
        language_code: int = language_field()

        @field_validator("attribute_body")
        @classmethod
        def _body(cls, body: dict[str, Any]) -> dict[str, Any]:
            return _check_body(body, creating=True)

    output_schema = WRITE_OUTPUT
    example = WRITE_EXAMPLE

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        body = _definition(inputs.attribute_body, inputs.language_code)
        headers = {"MSCRM.SolutionUniqueName": inputs.solution_unique_name} if inputs.solution_unique_name else None

        async def create(name: str) -> httpx.Response:
            return await ctx.web_api.request("POST", f"{table_path(name)}/Attributes", json=body, headers=headers)

        response = await on_table(ctx, inputs.table, create)
        return _written(response, body["SchemaName"])


class UpdateAttribute(Action):
    """Change a column's definition; by default merged into the current one, so unsent properties keep their values."""

    key = "dynamics365.update_attribute"
    label = "Update Attribute"
    group = "Metadata"

    class Inputs(InputModel):
        table: str = table_field()
        attribute: str = column_field()
        attribute_body: dict[str, Any] = body_field(
            "The properties to change, e.g. {\"DisplayName\": \"Code\", \"MaxLength\": 80}. Dataverse replaces the "
            "whole definition (PUT); with Merge with current, the rest is read first and kept."
        )
        merge_with_current: bool = InputField(
            True, title="Merge with current",
            description="Read the current definition and change only the properties given (otherwise omitted ones reset).",
        )
        merge_labels: bool = InputField(
            True, title="Merge labels", description="Keep labels in other languages (MSCRM.MergeLabels).",
        )
        solution_unique_name: str | None = solution_field()
        language_code: int = language_field()

    output_schema = WRITE_OUTPUT
    example = WRITE_EXAMPLE

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        change = _definition(inputs.attribute_body, inputs.language_code)
        headers = {"MSCRM.MergeLabels": "true" if inputs.merge_labels else "false"}
        if inputs.solution_unique_name:
            headers["MSCRM.SolutionUniqueName"] = inputs.solution_unique_name

        async def update(name: str) -> httpx.Response:
            body = change
            if inputs.merge_with_current:
                current = await typed_column(ctx, name, inputs.attribute)
                body = {**current, **change}
            return await ctx.web_api.request("PUT", column_path(name, inputs.attribute), json=body, headers=headers)

        response = await on_table(ctx, inputs.table, update)
        return _written(response, inputs.attribute if not is_guid(inputs.attribute) else "")


# -- choices ------------------------------------------------------------------------------------


def _options(option_set: dict[str, Any], language: int | None) -> list[dict[str, Any]]:
    if "TrueOption" in option_set or "FalseOption" in option_set:
        raw = [option_set.get("FalseOption"), option_set.get("TrueOption")]
    else:
        raw = option_set.get("Options") or []
    options = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        option = {"value": item.get("Value"), "label": label_text(item.get("Label"), language)}
        description = label_text(item.get("Description"), language)
        if description:
            option["description"] = description
        if item.get("State") is not None:
            option["state"] = item["State"]
        options.append(option)
    return options


async def choice_options(ctx: Context, table: str, column: str, language: int | None = None) -> dict[str, Any]:
    """The options of a choice column (choice, choices, status, status reason, yes/no) as value + label."""

    async def read(name: str) -> dict[str, Any]:
        base = await ctx.web_api.get_json(column_path(name, column), params={"$select": "LogicalName,AttributeType"})
        kind = type_of(base)
        if kind not in CHOICE_TYPES:
            raise InputValidationError([FieldError(
                "/column", f"'{column}' is a {kind or base.get('AttributeType') or 'non-choice'} column, not a choice column",
            )])
        typed = await ctx.web_api.get_json(column_path(name, column, kind),
                                          params={"$select": "LogicalName", "$expand": "OptionSet"})
        option_set = typed.get("OptionSet") or {}
        return {
            "table": name,
            "column": typed.get("LogicalName", column),
            "type": kind,
            "optionSetName": option_set.get("Name"),
            "isGlobal": bool(option_set.get("IsGlobal")),
            "options": _options(option_set, language),
        }

    return await on_table(ctx, table, read)


class GetChoiceOptions(Action):
    """List the options of a choice column (choice, choices, status, yes/no): each value with its label."""

    key = "dynamics365.get_choice_options"
    label = "Get Choice Options"
    group = "Metadata"

    class Inputs(InputModel):
        table: str = table_field()
        column: str = column_field(title="Choice column", types=CHOICE_TYPES, examples=["industrycode"],
                                   description="The choice column: its logical name (industrycode) or MetadataId.")
        language_code: int | None = InputField(
            None, title="Label language", description="Labels in this language (1033 = English); empty: the user's.",
            examples=[1033], ge=1, group=ADVANCED, advanced=True,
        )

    output_schema = {
        "type": "object",
        "required": ["table", "column", "type", "options"],
        "properties": {
            "table": {"type": "string", "description": "The table's logical name."},
            "column": {"type": "string", "description": "The column's logical name."},
            "type": {"enum": list(CHOICE_TYPES), "description": "The kind of choice column."},
            "optionSetName": {"type": ["string", "null"], "description": "The option set's name (a global one is shared)."},
            "isGlobal": {"type": "boolean", "description": "Whether the options come from a global choice."},
            "options": {
                "description": "Every option, in Dataverse's order.",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["value", "label"],
                    "properties": {
                        "value": {"type": "integer", "description": "The number Dataverse stores."},
                        "label": {"type": "string", "description": "The text users see."},
                        "description": {"type": "string", "description": "The option's description, when it has one."},
                        "state": {"type": "integer", "description": "For status reasons: the status it belongs to."},
                    },
                },
            },
        },
    }
    example = {
        "table": "account", "column": "industrycode", "type": "Picklist", "optionSetName": "account_industrycode",
        "isGlobal": False, "options": [{"value": 1, "label": "Accounting"}, {"value": 2, "label": "Agriculture"}],
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        return await choice_options(ctx, inputs.table, inputs.column, inputs.language_code)
