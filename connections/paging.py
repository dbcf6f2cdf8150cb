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

from defusedxml import ElementTree as SafeElementTree

__all__ = ["MAX_PAGE_SIZE", "Page", "fetch_page", "fetch_with_paging", "odata_page", "paging_cookie_of", "prefer_page_size"]

MAX_PAGE_SIZE = 5000
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
        raise ValueError(f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}, not {page_size!r}")
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


def fetch_with_paging(fetchxml: str, *, page: int, count: int | None, cookie: str | None) -> str:
    """``fetchxml`` with ``page``, ``count`` and ``paging-cookie`` set on its ``<fetch>`` root.

    ElementTree escapes the cookie as an attribute value, which is the XML-escaping §4.3 asks for.
    """
    try:
        root = SafeElementTree.fromstring(fetchxml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"fetchxml is not well-formed XML: {exc}") from None
    if root.tag != "fetch":
        raise ValueError(f"fetchxml must have <fetch> as its root element, not <{root.tag}>")
    if root.get("top"):
        if page > 1 or count is not None or cookie:
            raise ValueError("fetchxml: 'top' cannot be combined with paging; remove top or the page size")
        return fetchxml
    root.set("page", str(page))
    if count is not None:
        if not 1 <= count <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, not {count}")
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
