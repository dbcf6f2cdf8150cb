"""Query Entities: OData queries with a page cursor in and out, and a row limit for fetch-all.

One page per run by default, with ``nextPageId`` (the ``@odata.nextLink``) to continue in the
next step; ``fetchAll`` follows every link but stops at ``maxRows`` (default 50,000) and says so
with ``truncated``, so a flow never pulls a whole table into memory by accident.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator, model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    FORMATTED,
    entity_type_field,
    expand_field,
    field_names_field,
    formatted_values_field,
    impersonate_field,
    impersonation_headers,
)
from d365_components.actions._lookups import metadata_for
from d365_components.actions.filters import FilterCondition, conditions_field, filter_from_inputs
from d365_components.connections.paging import MAX_PAGE_SIZE
from d365_components.conventions import COLUMNS, NAME, NAME_PATTERN
from d365_components.errors import FieldError, InputValidationError

__all__ = ["QueryEntities"]

_COLUMN = NAME  # whole strings only (a trailing newline is refused)
_ORDER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*(\s+(asc|desc))?\Z", re.IGNORECASE)
#: the same rule as a JSON Schema pattern (no flags there): blanks around, and blank entries, are ignored
_ORDER_PATTERN = r"^\s*(?:[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*(?:\s+(?:[Aa][Ss][Cc]|[Dd][Ee][Ss][Cc]))?)?\s*$"


def _bad_names(values: list[str], pattern: re.Pattern[str], what: str, field: str) -> list[FieldError]:
    """Each name that is not ``what``, reported at its own position in the list."""
    return [
        FieldError(f"/{field}/{index}", f"'{value.strip()}' is not {what}")
        for index, value in enumerate(values)
        if value.strip() and not pattern.match(value.strip())
    ]


class QueryCondition(FilterCondition):
    """A filter condition whose column is picked from the queried table's columns."""

    column: str = InputField(
        title="Column", description="The column's logical name (lookups as _name_value).", examples=["name"],
        pattern=NAME_PATTERN, data_source=COLUMNS, data_source_inputs={"table": "entityType", "purpose": "=read"},
    )


class QueryEntities(Action):
    """List rows of a table with OData $select, $filter, $orderby and $expand, a page at a time or all."""

    key = "dynamics365.query_entities"
    label = "Query Entities"
    group = "Queries"

    class Inputs(InputModel):
        entity_type: str = entity_type_field()
        field_names: list[str] = field_names_field(
            "Columns to return ($select); all when empty (slower).",
            schema={"items": {"type": "string", "pattern": r"^\s*(?:[A-Za-z_][A-Za-z0-9_]*)?\s*$"}},
        )
        filter_expression: str | None = InputField(
            None, title="Filter", description="An OData $filter, e.g. revenue gt 1000 and statecode eq 0. Text typed by users belongs in Filter conditions.",
            examples=["revenue gt 1000 and statecode eq 0"], widget="code", language="odata",
        )
        filter_conditions: list[QueryCondition] = conditions_field(
            default=[], title="Filter conditions",
            description="Conditions with safely quoted values, joined by and with Filter.",
        )
        order_by_field_names: list[str] = InputField(
            [], title="Order by", description='Columns to sort by ($orderby), each optionally followed by "desc": "name", "createdon desc".',
            examples=[["createdon desc", "name"]], widget="list", data_source=COLUMNS,
            data_source_inputs={"table": "entityType", "purpose": "=read"},
            schema={"items": {"type": "string", "pattern": _ORDER_PATTERN}},
        )
        expand_property_names: list[str] = expand_field()
        fetch_all: bool = InputField(False, title="Fetch all", description="Follow every page up to Max rows; otherwise return one page and a Next page ID.")
        records_per_page: int = InputField(
            100, title="Rows per page", description="Rows per page (odata.maxpagesize), 1 to 5,000.",
            ge=1, le=MAX_PAGE_SIZE, group="Paging",
        )
        next_page_id: str | None = InputField(
            None, title="Next page ID", description="The nextPageId of a previous run, to read the page after it (the query options travel inside it).",
            examples=["https://contoso.crm.dynamics.com/api/data/v9.2/accounts?$skiptoken=..."], group="Paging", min_length=1,
        )
        max_rows: int = InputField(
            50_000, title="Max rows", description="With Fetch all: stop after this many rows and set truncated (protects the flow from pulling a whole table). Make it a multiple of Records per page to get a Next page ID that continues exactly where it stopped. Memory is bounded by it: the output holds every row (about 0.5 KB per row of a few short columns); for bigger reads use the client's page iterator or the extract.",
            ge=1, le=10_000_000, group="Paging",
        )
        include_count: bool = InputField(False, title="Include count", description="Also return the number of matching rows ($count; Dataverse caps it at 5,000).")
        include_formatted_values: bool = formatted_values_field()
        impersonate_user_id: str | None = impersonate_field()

        @field_validator("field_names", "order_by_field_names")
        @classmethod
        def _without_blanks(cls, names: list[str]) -> list[str]:
            return [name.strip() for name in names if name.strip()]

        @model_validator(mode="after")
        def _names(self) -> QueryEntities.Inputs:
            bad = _bad_names(self.field_names, NAME, "a column name", "fieldNames") + _bad_names(
                self.order_by_field_names, _ORDER, 'a column optionally followed by "asc" or "desc"', "orderByFieldNames"
            )
            if bad:
                raise InputValidationError(bad)
            return self

    output_schema = {
        "type": "object",
        "required": ["value", "count", "nextPageId", "@odata.nextLink", "oDataNextLink", "truncated"],
        "properties": {
            "value": {"type": "array", "items": {"type": "object"}, "description": "The rows."},
            "count": {"type": ["integer", "null"], "description": "Matching rows (with Include count; at most 5,000)."},
            "nextPageId": {"type": ["string", "null"], "description": "Give this as Next page ID to read on; null on the last page."},
            "@odata.nextLink": {"type": ["string", "null"], "description": "Same as nextPageId (OData name)."},
            "oDataNextLink": {"type": ["string", "null"], "description": "Same as nextPageId (for flows built on other connectors)."},
            "truncated": {"type": "boolean", "description": "True when Fetch all stopped at Max rows with rows left."},
        },
    }
    example = {
        "value": [{"@odata.etag": 'W/"536530"', "accountid": "7eb682f1-ca75-e511-80d4-00155d2a68d1", "name": "Contoso"}],
        "count": 1,
        "nextPageId": None,
        "@odata.nextLink": None,
        "oDataNextLink": None,
        "truncated": False,
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        filters = [inputs.filter_expression.strip()] if inputs.filter_expression and inputs.filter_expression.strip() else []
        if inputs.filter_conditions:
            filters.append(filter_from_inputs(inputs.filter_conditions, "and", "/filterConditions"))
        if inputs.next_page_id:
            _check_link(ctx, inputs.next_page_id)
            path, params = inputs.next_page_id, None
        else:
            table = await metadata_for(ctx.web_api).table(inputs.entity_type)
            path = table.entity_set
            params = {
                "$select": inputs.field_names or None,
                "$filter": " and ".join(f"({f})" for f in filters) if len(filters) > 1 else "".join(filters),
                "$orderby": inputs.order_by_field_names or None,
                "$expand": inputs.expand_property_names or None,
                "$count": "true" if inputs.include_count else None,
            }
            params = {k: v for k, v in params.items() if v}
        rows: list[dict[str, Any]] = []
        count: int | None = None
        next_link: str | None = None
        truncated = False
        pages = ctx.web_api.pages(
            path, params=params, page_size=inputs.records_per_page,
            annotations=FORMATTED if inputs.include_formatted_values else None,
            headers=impersonation_headers(inputs.impersonate_user_id),
        )
        try:
            async for page in pages:
                if count is None:
                    count = page.count
                next_link = page.next_link
                room = inputs.max_rows - len(rows)
                if inputs.fetch_all and len(page.rows) > room:
                    rows += page.rows[:room]
                    truncated, next_link = True, None  # mid-page: no cursor could resume exactly here
                    break
                rows += page.rows
                ctx.report(len(rows), count)
                if not inputs.fetch_all:
                    break
                if next_link and len(rows) >= inputs.max_rows:
                    truncated = True
                    break
        finally:
            await pages.aclose()
        return {
            "value": rows,
            "count": count,
            "nextPageId": next_link,
            "@odata.nextLink": next_link,
            "oDataNextLink": next_link,
            "truncated": truncated,
        }


def _check_link(ctx: Context, link: str) -> None:
    try:
        url = ctx.web_api.url_for(link)
    except ValueError as exc:
        raise InputValidationError([FieldError("/nextPageId", str(exc))]) from None
    if not url.startswith(ctx.web_api.api_url):
        raise InputValidationError([FieldError("/nextPageId", "is not a next link of this connection's Web API")])
