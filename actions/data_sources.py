"""Data sources: the dropdowns of generated forms (tables, columns, choices, relationships, rows).

Each returns ``[{"label", "value"}]`` read live through the connection. A ``table`` input takes
either an entity set name (``accounts``, what record actions hold) or a logical name
(``account``, what metadata actions hold), so one dropdown can feed the other.

A form wires a fixed value into a data source input as ``=value`` in ``x-data-source-inputs``
(``{"table": "=leads"}``); the ``table`` inputs accept and ignore that leading ``=``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from d365_components import Context, DataSource, InputField, InputModel
from d365_components.actions.metadata import choice_options, label_text, on_table, table_path
from d365_components.connections.odata import is_guid, quote
from d365_components.conventions import (
    CHOICE_OPTIONS,
    COLUMNS,
    NAME_OR_GUID_PATTERN,
    RECORDS,
    RELATIONSHIPS,
    TABLE_DEFINITIONS,
    TABLES,
)
from d365_components.errors import FieldError, InputValidationError

LOOKUP_TYPES = {"Lookup", "Customer", "Owner"}
RECORD_LIMIT = 50


def table_input(description: str = (
    "The table to list from: its entity set name (accounts) or logical name (account)."
)) -> Any:
    return InputField(title="Table", description=description, examples=["accounts"], pattern=NAME_OR_GUID_PATTERN.replace("^", "^=?", 1))


class _TableInputs(InputModel):
    """Inputs of a data source that lists something of one table."""

    table: str = table_input()

    @field_validator("table")
    @classmethod
    def _literal(cls, value: str) -> str:
        return value.removeprefix("=")


def search_input(description: str) -> Any:
    return InputField(None, title="Search", description=description, examples=["Contoso"])


def _choice(label: str, value: Any, description: str | None = None) -> dict[str, Any]:
    choice = {"label": label, "value": value}
    if description:
        choice["description"] = description
    return choice


def _named(display: str, name: str) -> str:
    return f"{display} ({name})" if display and display != name else name


async def _table_choices(ctx: Context, search: str | None, value_of: str) -> list[dict[str, Any]]:
    body = await ctx.web_api.get_json(
        "EntityDefinitions", params={"$select": "LogicalName,EntitySetName,DisplayName,IsIntersect"}
    )
    choices = []
    needle = (search or "").lower()
    for item in body.get("value", []):
        if not item.get(value_of) or item.get("IsIntersect"):
            continue
        label = _named(label_text(item.get("DisplayName")), item["LogicalName"])
        if needle and needle not in label.lower() and needle not in str(item.get("EntitySetName", "")).lower():
            continue
        choices.append(_choice(label, item[value_of]))
    return sorted(choices, key=lambda c: c["label"].lower())


async def table_info(ctx: Context, table: str) -> dict[str, Any]:
    """LogicalName, EntitySetName, PrimaryIdAttribute and PrimaryNameAttribute of ``table``."""
    select = "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute"
    if is_guid(table):
        return await ctx.web_api.get_json(table_path(table), params={"$select": select})
    body = await ctx.web_api.get_json("EntityDefinitions", params={
        "$select": select,
        "$filter": f"EntitySetName eq {quote(table)} or LogicalName eq {quote(table.lower())}",
    })
    found = body.get("value") or []
    if not found:
        raise InputValidationError([FieldError("/table", f"no table has the name '{table}'")])
    first: dict[str, Any] = found[0]
    return first


class _TableChoices(DataSource):
    """Tables to pick, searched by name; ``value_of`` says which name a choice's value is."""

    value_of = ""

    class Inputs(InputModel):
        search: str | None = search_input("Only tables whose name contains this text.")

    async def fetch(self, ctx: Context, inputs: Inputs) -> list[dict[str, Any]]:
        return await _table_choices(ctx, inputs.search, self.value_of)


class Tables(_TableChoices):
    """Tables to pick for record actions: label "Display Name (logicalname)", value the entity set name."""

    key = TABLES
    label = "Tables"
    value_of = "EntitySetName"


class TableDefinitions(_TableChoices):
    """Tables to pick for metadata actions: label "Display Name (logicalname)", value the logical name."""

    key = TABLE_DEFINITIONS
    label = "Table Definitions"
    value_of = "LogicalName"


class Columns(DataSource):
    """A table's columns valid for one use: read ($select names), create or update."""

    key = COLUMNS
    label = "Columns"

    class Inputs(_TableInputs):
        purpose: Literal["read", "create", "update"] = InputField(
            "read", title="Purpose",
            description="read: columns to select (lookups as _name_value); create / update: columns that can be written.",
            enum_labels={"read": "Read", "create": "Create", "update": "Update"},
        )
        types: str | None = InputField(
            None, title="Column types",
            description="Only columns of these types, comma-separated (Picklist,Status); all types when empty.",
            examples=["Picklist,MultiSelectPicklist,State,Status,Boolean"], pattern=r"^=?[A-Za-z, ]*$",
        )

    async def fetch(self, ctx: Context, inputs: Inputs) -> list[dict[str, Any]]:
        flag = {"read": "IsValidForRead", "create": "IsValidForCreate", "update": "IsValidForUpdate"}[inputs.purpose]
        select = ("LogicalName,DisplayName,AttributeType,AttributeTypeName,AttributeOf,"
                  "IsValidForRead,IsValidForCreate,IsValidForUpdate")
        wanted = {t.strip().lower() for t in (inputs.types or "").removeprefix("=").split(",") if t.strip()}

        async def read(name: str) -> dict[str, Any]:
            return await ctx.web_api.get_json(f"{table_path(name)}/Attributes", params={"$select": select})

        body = await on_table(ctx, inputs.table, read)
        choices = []
        for column in body.get("value", []):
            if not column.get(flag) or column.get("AttributeOf"):
                continue
            if wanted and _column_type(column).lower() not in wanted:
                continue
            name, kind = column["LogicalName"], column.get("AttributeType") or ""
            value = f"_{name}_value" if inputs.purpose == "read" and kind in LOOKUP_TYPES else name
            choices.append(_choice(_named(label_text(column.get("DisplayName")), name), value, kind))
        return sorted(choices, key=lambda c: c["label"].lower())


def _column_type(column: dict[str, Any]) -> str:
    """The column's type as the actions name it: MultiSelectPicklist, not Dataverse's Virtual."""
    type_name = (column.get("AttributeTypeName") or {}).get("Value") or ""
    return type_name.removesuffix("Type") or column.get("AttributeType") or ""


class ChoiceOptions(DataSource):
    """The options of a choice column: label the option's label, value its number."""

    key = CHOICE_OPTIONS
    label = "Choice Options"

    class Inputs(_TableInputs):
        column: str = InputField(title="Choice column", description="The choice column's logical name.",
                                 examples=["industrycode"], pattern=NAME_OR_GUID_PATTERN)

    async def fetch(self, ctx: Context, inputs: Inputs) -> list[dict[str, Any]]:
        found = await choice_options(ctx, inputs.table, inputs.column)
        return [_choice(o["label"] or str(o["value"]), o["value"]) for o in found["options"]]


class Relationships(DataSource):
    """A table's navigation properties (for $expand, binds and associate), labelled with the related table."""

    key = RELATIONSHIPS
    label = "Relationships"

    class Inputs(_TableInputs):
        pass

    async def fetch(self, ctx: Context, inputs: Inputs) -> list[dict[str, Any]]:
        expand = [
            "OneToManyRelationships($select=SchemaName,ReferencingEntity,ReferencedEntityNavigationPropertyName)",
            "ManyToOneRelationships($select=SchemaName,ReferencedEntity,ReferencingEntityNavigationPropertyName)",
            "ManyToManyRelationships($select=SchemaName,Entity1LogicalName,Entity2LogicalName,"
            "Entity1NavigationPropertyName,Entity2NavigationPropertyName)",
        ]

        async def read(name: str) -> dict[str, Any]:
            return await ctx.web_api.get_json(table_path(name), params={"$select": "LogicalName", "$expand": expand})

        body = await on_table(ctx, inputs.table, read)
        me = body.get("LogicalName")
        choices = []
        for r in body.get("OneToManyRelationships") or []:
            choices.append((r.get("ReferencedEntityNavigationPropertyName"), r.get("ReferencingEntity"), "1:N", r))
        for r in body.get("ManyToOneRelationships") or []:
            choices.append((r.get("ReferencingEntityNavigationPropertyName"), r.get("ReferencedEntity"), "N:1", r))
        for r in body.get("ManyToManyRelationships") or []:
            if r.get("Entity1LogicalName") == me:
                choices.append((r.get("Entity1NavigationPropertyName"), r.get("Entity2LogicalName"), "N:N", r))
            if r.get("Entity2LogicalName") == me:
                choices.append((r.get("Entity2NavigationPropertyName"), r.get("Entity1LogicalName"), "N:N", r))
        seen: set[str] = set()
        out = []
        for nav, related, kind, r in choices:
            if nav and nav not in seen:
                seen.add(nav)
                out.append(_choice(f"{nav} → {related} ({kind})", nav, r.get("SchemaName")))
        return sorted(out, key=lambda c: c["label"].lower())


class Records(DataSource):
    """Rows of a table to pick from, searched by primary name: label the name, value the row's GUID."""

    key = RECORDS
    label = "Records"

    class Inputs(_TableInputs):
        search: str | None = search_input(f"Only rows whose name contains this text (at most {RECORD_LIMIT} are listed).")

    async def fetch(self, ctx: Context, inputs: Inputs) -> list[dict[str, Any]]:
        info = await table_info(ctx, inputs.table)
        id_column, name_column = info.get("PrimaryIdAttribute"), info.get("PrimaryNameAttribute")
        params: dict[str, Any] = {"$select": [c for c in (id_column, name_column) if c], "$top": RECORD_LIMIT}
        if name_column:
            params["$orderby"] = name_column
            if inputs.search:
                params["$filter"] = f"contains({name_column},{quote(inputs.search)})"
        body = await ctx.web_api.get_json(info["EntitySetName"], params=params)
        return [
            _choice(str(row.get(name_column) or row.get(id_column)), row.get(id_column))
            for row in body.get("value", [])[:RECORD_LIMIT]
        ]
