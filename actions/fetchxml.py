"""Run Fetch XML Query: FetchXML with paging cookies, fetch-all past 5,000 rows, and aggregates.

Fetch-all follows the paging cookie page after page (page numbers alone would skip or repeat rows
as data changes, and stop at 50,000), so every row comes back exactly once; ``maxRows`` bounds
it. Aggregate and ``top`` queries are a single request. The XML is checked locally first
(well-formed, no DTD or entities, at most 64 KB and 100 levels deep, a ``<fetch>`` root with an
``<entity name>``), so a typo is a
field error, not a round trip; the table is read from ``<entity name>`` when not given.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree import ElementTree

from pydantic import field_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    ADVANCED,
    entity_type_field,
    impersonate_field,
    impersonation_headers,
)
from d365_components.actions._lookups import metadata_for
from d365_components.connections.input_errors import RequestInputError
from d365_components.connections.paging import MAX_PAGE_SIZE, parse_fetchxml
from d365_components.conventions import NAME
from d365_components.errors import FieldError, InputValidationError

__all__ = ["RunFetchXmlQuery", "check_fetchxml"]

_COOKIE_PAGE = re.compile(r"""<cookie\b[^>]*\bpage\s*=\s*["'](\d+)["']""")


def check_fetchxml(text: str) -> ElementTree.Element:
    """The parsed ``<fetch>`` element; ValueError saying what is wrong otherwise (a DTD, internal
    or external, is refused; so are queries larger or deeper than Dataverse would run)."""
    try:
        root = parse_fetchxml(text)
    except RequestInputError as exc:
        raise ValueError(exc.reason.removeprefix("FetchXML ")) from None
    if root.tag != "fetch":
        raise ValueError(f"must have <fetch> as its root element, not <{root.tag}>")
    entities = root.findall("entity")
    if len(entities) != 1:
        raise ValueError("must contain exactly one <entity name='...'> inside <fetch>")
    name = entities[0].get("name") or ""
    if not NAME.fullmatch(name):
        raise ValueError("<entity> needs a name attribute with the table's logical name, e.g. <entity name='account'>")
    parsed: ElementTree.Element = root
    return parsed


class RunFetchXmlQuery(Action):
    """Run a FetchXML query: joins, aggregates, and every page of a large result exactly once."""

    key = "dynamics365.run_fetch_xml_query"
    label = "Run Fetch XML Query"
    group = "Queries"

    checks = {"/xmlQuery": "well-formed FetchXML: one <fetch> with one <entity name=...>"}

    class Inputs(InputModel):
        entity_type: str | None = entity_type_field(
            default=None,
            description=(
                "The table of the rows: its entity set name (accounts) or logical name (account); "
                "read from <entity name> when empty."
            ),
        )
        xml_query: str = InputField(
            title="Fetch XML",
            description="The FetchXML query, e.g. <fetch><entity name='account'><attribute name='name'/></entity></fetch>.",
            examples=["<fetch><entity name='account'><attribute name='name'/><order attribute='name'/></entity></fetch>"],
            widget="code", language="xml", min_length=1,
        )
        include_annotations: str | None = InputField(
            None, title="Include annotations",
            description="Annotations to return (Prefer odata.include-annotations): * for all, or e.g. OData.Community.Display.V1.FormattedValue.",
            examples=["*", "OData.Community.Display.V1.FormattedValue"], group=ADVANCED, advanced=True,
        )
        fetch_all: bool = InputField(False, title="Fetch all", description="Read every page (by paging cookie) up to Max rows; otherwise one page.")
        page_number: int | None = InputField(
            None, title="Page number", description="The page to read (1 = first). With Next page ID, the page after the cookie's page is read when empty.",
            examples=[2], ge=1, group="Paging",
        )
        next_page_id: str | None = InputField(
            None, title="Next page ID", description="The nextPageId (paging cookie) of a previous run, to read the page after it.",
            examples=['<cookie page="1"><accountid last="{7EB682F1-CA75-E511-80D4-00155D2A68D1}"/></cookie>'],
            group="Paging", min_length=1,
        )
        records_per_page: int | None = InputField(
            None, title="Rows per page", description="Rows per page, 1 to 5,000; when empty, the count in the FetchXML or 5,000.",
            examples=[500], ge=1, le=MAX_PAGE_SIZE, group="Paging",
        )
        max_rows: int = InputField(
            50_000, title="Max rows", description="With Fetch all: stop after this many rows and set truncated. Memory is bounded by it: the output holds every row (about 0.5 KB per row of a few short columns); for bigger reads use the client's page iterator or the extract.",
            ge=1, le=10_000_000, group="Paging",
        )
        impersonate_user_id: str | None = impersonate_field()

        @field_validator("xml_query")
        @classmethod
        def _well_formed(cls, value: str) -> str:
            check_fetchxml(value)
            return value

    output_schema = {
        "type": "object",
        "required": ["value", "moreRecords", "nextPageId", "pageNumber", "nextPageNumber", "truncated"],
        "properties": {
            "value": {"type": "array", "items": {"type": "object"}, "description": "The rows (null columns are omitted, as FetchXML does)."},
            "moreRecords": {"type": "boolean", "description": "True when rows remain after the returned ones."},
            "nextPageId": {"type": ["string", "null"], "description": "Paging cookie for Next page ID; null when there is nothing to resume."},
            "pageNumber": {"type": "integer", "description": "Number of the last page read."},
            "nextPageNumber": {"type": ["integer", "null"], "description": "Page number to read next (with nextPageId)."},
            "truncated": {"type": "boolean", "description": "True when Fetch all stopped at Max rows with rows left."},
        },
    }
    example = {
        "value": [{"@odata.etag": 'W/"506678"', "accountid": "89390c24-9c72-e511-80d4-00155d2a68d1", "name": "Fourth Coffee"}],
        "moreRecords": False,
        "nextPageId": None,
        "pageNumber": 1,
        "nextPageNumber": None,
        "truncated": False,
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        root = check_fetchxml(inputs.xml_query)
        single = root.get("aggregate", "").lower() == "true" or bool(root.get("top"))
        start = inputs.page_number or 1
        if inputs.next_page_id and inputs.page_number is None:
            match = _COOKIE_PAGE.search(inputs.next_page_id)
            if not match:
                raise InputValidationError([FieldError("/pageNumber", "is required with a Next page ID that does not say its page")])
            start = int(match.group(1)) + 1
        if single and (inputs.next_page_id or start > 1):
            raise InputValidationError([FieldError("/pageNumber", "aggregate and top queries have a single page")])
        entity = root.find("entity")  # exactly one, named: the inputs were checked
        entity_set = await _entity_set(ctx, inputs.entity_type, entity.get("name", "") if entity is not None else "")
        page_size = None if single else inputs.records_per_page
        rows: list[dict[str, Any]] = []
        more, cookie, number, truncated = False, None, start, False
        pages = ctx.web_api.fetchxml_pages(
            entity_set, inputs.xml_query, page_size=page_size, annotations=inputs.include_annotations or None,
            headers=impersonation_headers(inputs.impersonate_user_id), start_page=start, paging_cookie=inputs.next_page_id,
        )
        try:
            async for page in pages:
                number = page.page_number or number
                more, cookie = bool(page.more_records) and not single, page.paging_cookie
                room = inputs.max_rows - len(rows)
                if inputs.fetch_all and len(page.rows) > room:
                    rows += page.rows[:room]
                    truncated, more, cookie = True, True, None  # mid-page: no cookie resumes exactly here
                    break
                rows += page.rows
                ctx.report(len(rows), None)
                if single or not inputs.fetch_all or not more:
                    break
                if len(rows) >= inputs.max_rows:
                    truncated = True
                    break
        finally:
            await pages.aclose()
        resumable = more and cookie is not None
        return {
            "value": rows,
            "moreRecords": more,
            "nextPageId": cookie if resumable else None,
            "pageNumber": number,
            "nextPageNumber": number + 1 if (more and not truncated) or resumable else None,
            "truncated": truncated,
        }


async def _entity_set(ctx: Context, entity_type: str | None, entity_name: str) -> str:
    """The entity set to query: the given table (checked against ``<entity name>``) or the one
    ``<entity name>`` names."""
    metadata = metadata_for(ctx.web_api)
    named = await metadata.table(entity_name, pointer="/xmlQuery")
    if not entity_type:
        if named.logical_name is None:
            raise InputValidationError([FieldError("/entityType", "is required when metadata cannot be read")])
        return named.entity_set
    given = await metadata.table(entity_type)
    if given.logical_name is not None and given.logical_name != entity_name:
        raise InputValidationError(
            [FieldError("/entityType", f"is {given.logical_name}, but the FetchXML queries <entity name='{entity_name}'>")]
        )
    return given.entity_set
