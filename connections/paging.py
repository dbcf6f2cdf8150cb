"""Pages of rows, one at a time: OData server-driven paging and FetchXML paging cookies.

OData: send ``Prefer: odata.maxpagesize=N`` and follow ``@odata.nextLink`` verbatim (same Prefer)
until there is none. FetchXML: set ``page``/``count``/``paging-cookie`` on ``<fetch>``; the cookie
comes back URL-encoded twice inside the ``fetchxmlpagingcookie`` annotation (reference §4.3).
Only the current page is held, so memory stays flat however many rows a table has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from d365_components.connections.input_errors import RequestInputError

__all__ = ["MAX_FETCHXML_CHARS", "MAX_FETCHXML_DEPTH", "MAX_PAGE_SIZE", "Page", "parse_fetchxml", "fetch_page", "fetch_with_paging", "odata_page", "paging_cookie_of", "prefer_page_size"]

MAX_PAGE_SIZE = 5000
#: Dataverse takes a FetchXML query in a URL of at most 64 KB (inside $batch): longer never runs
MAX_FETCHXML_CHARS = 65_536
#: nesting deeper than any real query (filters in filters, links in links); bounds the work of
#: every recursive walk over the tree, here and in the server
MAX_FETCHXML_DEPTH = 100
PAGING_COOKIE = "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"
MORE_RECORDS = "@Microsoft.Dynamics.CRM.morerecords"
_COOKIE_ATTR = re.compile(r'pagingcookie="([^"]*)"')


@dataclass
class Page:
    """One page: its rows, the link to the next (None on the last), and the collection's count."""

    rows: list[dict[str, Any]]
    next_link: str | None
    count: int | None
    raw: dict[str, Any] = field(repr=False)
    #: FetchXML paging only: the cookie for the next page, whether more rows exist, this page's number.
    paging_cookie: str | None = None
    more_records: bool | None = None
    page_number: int | None = None


def prefer_page_size(page_size: int | None) -> list[str]:
    if page_size is None:
        return []
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise RequestInputError(f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}, not {page_size!r}")
    return [f"odata.maxpagesize={page_size}"]


def odata_page(body: dict[str, Any]) -> Page:
    count = body.get("@odata.count", body.get("@Microsoft.Dynamics.CRM.totalrecordcount"))
    return Page(
        rows=body.get("value", []),
        next_link=body.get("@odata.nextLink"),
        count=count if isinstance(count, int) else None,
        raw=body,
    )


def paging_cookie_of(annotation: str | None) -> str | None:
    """The inner paging cookie (``<cookie page="1">…</cookie>``) from the response annotation."""
    if not annotation:
        return None
    match = _COOKIE_ATTR.search(annotation)
    if not match:
        return None
    return unquote(unquote(match.group(1)))


def parse_fetchxml(fetchxml: str) -> ElementTree.Element:
    """The parsed query: well-formed, no DTD (internal or external) nor entities, within the size
    and depth limits; :class:`RequestInputError` saying what is wrong otherwise."""
    if len(fetchxml) > MAX_FETCHXML_CHARS:
        raise RequestInputError(f"FetchXML is {len(fetchxml):,} characters; Dataverse takes at most "
                                f"{MAX_FETCHXML_CHARS:,} (split the query, or use fewer conditions)")
    try:
        root: ElementTree.Element = SafeElementTree.fromstring(
            fetchxml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except ElementTree.ParseError as exc:
        raise RequestInputError(f"FetchXML is not well-formed XML ({exc})") from None
    except DefusedXmlException:
        raise RequestInputError("FetchXML must not contain a DTD (<!DOCTYPE>), entity declarations "
                                "or external references") from None
    depth = _depth(root)
    if depth > MAX_FETCHXML_DEPTH:
        raise RequestInputError(f"FetchXML nests {depth} elements deep; at most {MAX_FETCHXML_DEPTH} levels are accepted")
    return root


def _depth(root: ElementTree.Element) -> int:
    """Nesting depth, walked without recursion (a hostile document may be 50,000 levels deep)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        element, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_FETCHXML_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in element)
    return deepest


def fetch_with_paging(fetchxml: str, *, page: int, count: int | None, cookie: str | None) -> str:
    """``fetchxml`` with ``page``, ``count`` and ``paging-cookie`` set on its ``<fetch>`` root.

    ElementTree escapes the cookie as an attribute value, which is the XML-escaping §4.3 asks for.
    """
    root = parse_fetchxml(fetchxml)
    if root.tag != "fetch":
        raise RequestInputError(f"fetchxml must have <fetch> as its root element, not <{root.tag}>")
    if root.get("top"):
        if page > 1 or count is not None or cookie:
            raise RequestInputError("fetchxml: 'top' cannot be combined with paging; remove top or the page size")
        return fetchxml
    root.set("page", str(page))
    if count is not None:
        if not 1 <= count <= MAX_PAGE_SIZE:
            raise RequestInputError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, not {count}")
        root.set("count", str(count))
    if cookie:
        root.set("paging-cookie", cookie)
    elif "paging-cookie" in root.attrib:
        del root.attrib["paging-cookie"]
    return ElementTree.tostring(root, encoding="unicode")


def fetch_page(body: dict[str, Any], page_number: int) -> Page:
    more = body.get(MORE_RECORDS)
    return Page(
        rows=body.get("value", []),
        next_link=None,
        count=body.get("@odata.count") if isinstance(body.get("@odata.count"), int) else None,
        raw=body,
        paging_cookie=paging_cookie_of(body.get(PAGING_COOKIE)),
        more_records=bool(more) if more is not None else False,
        page_number=page_number,
    )
