"""Forms generated from a table's schema: one JSON Schema (draft 2020-12) per table and operation.

A designer who picks a table should get a form for its row, not a free key/value list. The schema
is built from metadata (reference §7): the columns valid for the operation (IsValidForCreate /
IsValidForUpdate), titles from DisplayName, descriptions, required level (ApplicationRequired is
required on create), text length, number ranges, choices as enums with their labels
(`x-enum-labels`), multi-select choices as arrays of them, lookups as `{table, id}` objects whose
`table` lists the allowed targets (several for customer, owner and regarding lookups), date-only
and date-time formats. A row that validates can be passed as Dynamic values to Create Entity or
Update Entity. On update every optional column also takes null, which clears it.

The metadata behind a form is read once per connection and table and kept for ten minutes;
`refresh` reads it again (after a customizer added a column).

Two ways in: the data source `dynamics365.table_form` (for form renderers, which call data
sources) returns the schema as the value of a one-element choice list, so it keeps the
`[{label, value}]` shape every data source has; the action `dynamics365.get_table_form` returns it
as `schema` for flows and runtimes.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any, Literal

from d365_components import Action, Context, DataSource, InputField, InputModel
from d365_components.actions._lookups import metadata_for
from d365_components.actions.metadata import NS, label_text, on_table, table_field, table_path
from d365_components.conventions import GUID_PATTERN

__all__ = ["GetTableForm", "TableForm", "build_form", "table_form"]

MAX_AGE = 600.0
DRAFT = "https://json-schema.org/draft/2020-12/schema"
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
#: cast -> type-specific properties read for it (and whether its options are expanded)
TYPED_READS: dict[str, tuple[str, bool]] = {
    "String": ("MaxLength,FormatName", False),
    "Memo": ("MaxLength", False),
    "Integer": ("MinValue,MaxValue", False),
    "BigInt": ("MinValue,MaxValue", False),
    "Decimal": ("MinValue,MaxValue,Precision", False),
    "Double": ("MinValue,MaxValue,Precision", False),
    "Money": ("MinValue,MaxValue,Precision", False),
    "DateTime": ("Format", False),
    "Lookup": ("Targets", False),
    "Picklist": ("", True),
    "MultiSelectPicklist": ("", True),
    "State": ("", True),
    "Status": ("", True),
    "Boolean": ("", True),
}
BASE_SELECT = ("LogicalName,AttributeType,AttributeOf,DisplayName,Description,RequiredLevel,"
               "IsValidForCreate,IsValidForUpdate,IsPrimaryId,IsPrimaryName")
STRING_FORMATS = {"Email": "email", "Url": "uri"}


# -- reading metadata (cached per connection) ----------------------------------------------------


_cache: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, dict[str, Any]]]] = weakref.WeakKeyDictionary()


async def table_metadata(ctx: Context, table: str, *, refresh: bool = False) -> tuple[dict[str, Any], bool]:
    """(the table's definition with typed `Attributes`, whether it came from the cache)."""
    cached = _cache.setdefault(ctx.web_api, {})
    hit = cached.get(table.lower())
    if hit is not None and not refresh and time.monotonic() - hit[0] < MAX_AGE:
        return hit[1], True

    async def read(name: str) -> dict[str, Any]:
        entity = await ctx.web_api.get_json(table_path(name), params={
            "$select": "LogicalName,EntitySetName,DisplayName,Description,PrimaryIdAttribute,PrimaryNameAttribute",
            "$expand": f"Attributes($select={BASE_SELECT})",
        })
        typed = await asyncio.gather(*(_typed(ctx, name, cast, select, options)
                                       for cast, (select, options) in TYPED_READS.items()))
        details = {a["LogicalName"]: a for batch in typed for a in batch}
        entity["Attributes"] = [{**a, **details.get(a["LogicalName"], {})} for a in entity.get("Attributes", [])]
        return entity

    entity = await on_table(ctx, table, read)
    for key in {table.lower(), entity["LogicalName"], entity.get("EntitySetName", "").lower()} - {""}:
        cached[key] = (time.monotonic(), entity)
    return entity, False


async def _typed(ctx: Context, table: str, cast: str, select: str, options: bool) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"$select": "LogicalName" + ("," + select if select else "")}
    if options:
        params["$expand"] = "OptionSet"
    body = await ctx.web_api.get_json(f"{table_path(table)}/Attributes/{NS}{cast}AttributeMetadata", params=params)
    columns: list[dict[str, Any]] = body.get("value", [])
    return columns


# -- building the schema -------------------------------------------------------------------------


def build_form(entity: dict[str, Any], operation: str, entity_sets: dict[str, str] | None = None,
               language: int | None = None) -> dict[str, Any]:
    """The JSON Schema of a row of `entity` (a table definition with typed Attributes) for `operation`.

    `entity_sets` maps logical names to entity set names, for lookup targets (logical names are
    used where it has no entry).
    """
    entity_sets = entity_sets or {}
    flag = "IsValidForCreate" if operation == "create" else "IsValidForUpdate"
    properties: dict[str, Any] = {}
    required: list[str] = []
    for column in entity.get("Attributes", []):
        if not column.get(flag) or column.get("AttributeOf"):
            continue
        prop = _column_schema(column, entity_sets, language)
        if prop is None:
            continue
        name = column["LogicalName"]
        level = (column.get("RequiredLevel") or {}).get("Value")
        is_required = operation == "create" and level == "ApplicationRequired"
        if operation == "update" and level not in ("ApplicationRequired", "SystemRequired"):
            _allow_null(prop)
        if is_required:
            required.append(name)
        prop["x-required-level"] = level or "None"
        properties[name] = prop
    primary, primary_id = entity.get("PrimaryNameAttribute"), entity.get("PrimaryIdAttribute")
    order = sorted(properties, key=lambda n: (n != primary, n not in required, n == primary_id,
                                              properties[n]["title"].lower(), n))
    for index, name in enumerate(order):
        properties[name]["x-order"] = index
    display = label_text(entity.get("DisplayName"), language) or entity["LogicalName"]
    schema = {
        "$schema": DRAFT,
        "title": f"{display} ({operation})",
        "description": (label_text(entity.get("Description"), language) or
                        f"Columns of the {display} row to {operation}; lookups are {{table, id}} objects."),
        "type": "object",
        "properties": {name: properties[name] for name in order},
        "additionalProperties": False,
        "x-table": entity["LogicalName"],
        "x-entity-set": entity.get("EntitySetName"),
        "x-operation": operation,
    }
    if required:
        schema["required"] = sorted(required, key=order.index)
    if operation == "update":
        schema["minProperties"] = 1
    return schema


def _column_schema(column: dict[str, Any], entity_sets: dict[str, str], language: int | None) -> dict[str, Any] | None:
    kind = column.get("AttributeType")
    name = column["LogicalName"]
    title = label_text(column.get("DisplayName"), language) or name
    prop: dict[str, Any]
    if kind == "String":
        prop = {"type": "string"}
        fmt = STRING_FORMATS.get(((column.get("FormatName") or {}).get("Value")) or "")
        if fmt:
            prop["format"] = fmt
    elif kind == "Memo":
        prop = {"type": "string", "x-widget": "textarea"}
    elif kind in ("Integer", "BigInt"):
        prop = {"type": "integer"}
    elif kind in ("Decimal", "Double", "Money"):
        prop = {"type": "number"}
        if column.get("Precision") is not None:
            prop["x-precision"] = column["Precision"]
    elif kind == "Boolean":
        options = column.get("OptionSet") or {}
        prop = {"type": "boolean", "enum": [True, False],
                "x-enum-labels": [_option_label(options.get("TrueOption"), "Yes", language),
                                  _option_label(options.get("FalseOption"), "No", language)]}
    elif kind in ("Picklist", "State", "Status"):
        prop = {"type": "integer", **_enum(column, language)}
    elif kind == "MultiSelectPicklist":
        prop = {"type": "array", "items": {"type": "integer", **_enum(column, language)}, "uniqueItems": True,
                "x-dataverse-format": "comma-separated"}
    elif kind == "DateTime":
        prop = {"type": "string", "format": "date" if column.get("Format") == "DateOnly" else "date-time"}
    elif kind == "Uniqueidentifier":
        prop = {"type": "string", "pattern": GUID_PATTERN}
    elif kind in LOOKUP_TYPES:
        lookup = _lookup(column, entity_sets)
        if lookup is None:
            return None
        prop = lookup
    else:                       # files, images, virtual, party lists...: not set through a row
        return None
    if kind in ("String", "Memo") and column.get("MaxLength"):
        prop["maxLength"] = column["MaxLength"]
    if kind in ("Integer", "BigInt", "Decimal", "Double", "Money"):
        if column.get("MinValue") is not None:
            prop["minimum"] = column["MinValue"]
        if column.get("MaxValue") is not None:
            prop["maximum"] = column["MaxValue"]
    description = label_text(column.get("Description"), language) or _describe(title, name, kind, prop)
    return {"title": title, "description": description, **prop, "x-logical-name": name, "x-dataverse-type": kind}


def _describe(title: str, name: str, kind: str, prop: dict[str, Any]) -> str:
    what = {"String": "text", "Memo": "multi-line text", "Integer": "whole number", "BigInt": "whole number",
            "Decimal": "decimal number", "Double": "floating point number", "Money": "currency amount",
            "Boolean": "yes/no", "Picklist": "choice", "State": "status", "Status": "status reason",
            "MultiSelectPicklist": "choices (a list)", "DateTime": "date" if prop.get("format") == "date" else "date and time",
            "Uniqueidentifier": "GUID"}.get(kind, "lookup: {table, id}")
    limits = []
    if "maxLength" in prop:
        limits.append(f"at most {prop['maxLength']} characters")
    if "minimum" in prop and "maximum" in prop:
        limits.append(f"from {_number(prop['minimum'])} to {_number(prop['maximum'])}")
    if prop.get("type") == "object":
        limits.append("table: " + " or ".join(prop["properties"]["table"]["enum"]))
    return f"{title} ({name}): {what}" + (f", {', '.join(limits)}" if limits else "") + "."


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def _option_label(option: Any, fallback: str, language: int | None) -> str:
    return label_text((option or {}).get("Label"), language) or fallback


def _enum(column: dict[str, Any], language: int | None) -> dict[str, Any]:
    options = (column.get("OptionSet") or {}).get("Options") or []
    values = [o["Value"] for o in options if o.get("Value") is not None]
    labels = [label_text(o.get("Label"), language) or str(o["Value"]) for o in options if o.get("Value") is not None]
    return {"enum": values, "x-enum-labels": labels} if values else {}


def _lookup(column: dict[str, Any], entity_sets: dict[str, str]) -> dict[str, Any] | None:
    targets = column.get("Targets") or []
    if not targets:
        return None
    tables = [entity_sets.get(t, t) for t in targets]
    labels = list(targets)
    table: dict[str, Any] = {"type": "string", "title": "Table", "description": "The related row's table.",
                             "enum": tables, "x-enum-labels": labels}
    if len(tables) == 1:
        table["default"] = tables[0]
    return {
        "type": "object",
        "properties": {
            "table": table,
            "id": {"type": "string", "title": "Row ID", "description": "The related row's GUID.",
                   "pattern": GUID_PATTERN},
        },
        "required": ["table", "id"],
        "additionalProperties": False,
        "x-lookup-targets": list(targets),
    }


def _allow_null(prop: dict[str, Any]) -> None:
    """On update, null clears an optional column."""
    kind = prop["type"]
    prop["type"] = [kind, "null"]
    if "enum" in prop:
        prop["enum"] = [*prop["enum"], None]
        prop["x-enum-labels"] = [*prop["x-enum-labels"], ""]


# -- the data source and the action ---------------------------------------------------------------


class _FormInputs(InputModel):
    table: str = table_field(description="The table whose row form to build: its logical name (account); "
                                         "an entity set name (accounts) also works.")
    operation: Literal["create", "update"] = InputField(
        "create", title="Operation",
        description="create: columns valid on create, required ones marked. update: columns valid on update, "
                    "all optional, null clears.",
        enum_labels={"create": "Create", "update": "Update"},
    )
    refresh: bool = InputField(
        False, title="Refresh schema",
        description="Read the table's metadata again instead of using the copy kept for this connection (10 minutes).",
    )
    language_code: int | None = InputField(
        None, title="Label language",
        description="Language code of the titles and labels (1033 = English); empty uses the connection user's language.",
        ge=1, group="Advanced", advanced=True,
    )


async def table_form(ctx: Context, inputs: _FormInputs) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(schema, table definition, from cache) for the inputs."""
    entity, cached = await table_metadata(ctx, inputs.table, refresh=inputs.refresh)
    tables = await metadata_for(ctx.web_api).tables() or []
    entity_sets = {t.logical_name: t.entity_set for t in tables if t.logical_name}
    return build_form(entity, inputs.operation, entity_sets, inputs.language_code), entity, cached


FORM_EXAMPLE = {
    "$schema": DRAFT,
    "title": "Account (create)",
    "description": "Columns of the Account row to create; lookups are {table, id} objects.",
    "type": "object",
    "properties": {
        "name": {"title": "Account Name", "description": "Account Name (name): text, at most 160 characters.",
                 "type": "string", "maxLength": 160, "x-logical-name": "name", "x-dataverse-type": "String",
                 "x-required-level": "ApplicationRequired", "x-order": 0},
        "accountcategorycode": {"title": "Category", "description": "Category (accountcategorycode): choice.",
                                "type": "integer", "enum": [1, 2], "x-enum-labels": ["Preferred Customer", "Standard"],
                                "x-logical-name": "accountcategorycode", "x-dataverse-type": "Picklist",
                                "x-required-level": "None", "x-order": 1},
    },
    "required": ["name"],
    "additionalProperties": False,
    "x-table": "account",
    "x-entity-set": "accounts",
    "x-operation": "create",
}


class TableForm(DataSource):
    """The JSON Schema of a table's row for create or update, as the value of one choice."""

    key = "dynamics365.table_form"
    label = "Table form"
    Inputs = _FormInputs
    output_schema = {
        "type": "array",
        "minItems": 1,
        "maxItems": 1,
        "items": {
            "type": "object",
            "required": ["label", "value"],
            "properties": {
                "label": {"type": "string", "description": "<table> <operation> form"},
                "value": {"type": "object", "description": "The form's JSON Schema (draft 2020-12)."},
                "description": {"type": "string"},
            },
        },
    }
    example = [{"label": "account create form", "value": FORM_EXAMPLE}]

    async def fetch(self, ctx: Context, inputs: _FormInputs) -> list[dict[str, Any]]:
        schema, entity, _ = await table_form(ctx, inputs)
        return [{"label": f"{entity['LogicalName']} {inputs.operation} form", "value": schema,
                 "description": schema["title"]}]


class GetTableForm(Action):
    """Build the JSON Schema of a table's row for create or update from its metadata, to render a form."""

    key = "dynamics365.get_table_form"
    label = "Get Table Form"
    group = "Metadata"
    Inputs = _FormInputs
    output_schema = {
        "type": "object",
        "required": ["table", "entitySet", "operation", "schema", "cached"],
        "properties": {
            "table": {"type": "string", "description": "The table's logical name."},
            "entitySet": {"type": ["string", "null"], "description": "The table's entity set name."},
            "operation": {"type": "string", "enum": ["create", "update"]},
            "schema": {"type": "object", "description": "JSON Schema (draft 2020-12) of the row."},
            "cached": {"type": "boolean", "description": "True when the metadata came from this connection's cache."},
        },
    }
    example = {"table": "account", "entitySet": "accounts", "operation": "create", "schema": FORM_EXAMPLE, "cached": False}

    async def perform(self, ctx: Context, inputs: _FormInputs) -> dict[str, Any]:
        schema, entity, cached = await table_form(ctx, inputs)
        return {"table": entity["LogicalName"], "entitySet": entity.get("EntitySetName"), "operation": inputs.operation,
                "schema": schema, "cached": cached}
