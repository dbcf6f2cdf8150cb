"""FetchXML text -> a small tree of dataclasses, with every malformed input refused as a 400.

The XML goes through defusedxml with DTDs forbidden: an entity declaration (the "billion laughs"
bomb), a DOCTYPE or an external reference never reaches the expat expansion code; each is refused
in Dataverse's error shape. Only the elements and attributes of the FetchXML schema that the
emulator understands are accepted; anything else is named in the error, as Dataverse's schema
validation does, so a typo never silently widens a query.

Names are not checked against the schema here (that is fetchxml_sql's job): this module knows XML,
not tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from d365_components.emulator.protocol.errors import INVALID_ARGUMENT, DataverseError, bad_request
from d365_components.emulator.query import complexity

MAX_PAGE = 5000
MAX_LINKS = 15          # Dataverse's limit of link-entity elements per query
MAX_DEPTH = 30          # nesting of filters and links: deeper trees are refused before recursion limits


@dataclass
class Attribute:
    name: str
    alias: str | None = None
    aggregate: str | None = None      # count, countcolumn, sum, avg, min, max
    groupby: bool = False
    dategrouping: str | None = None   # day, week, month, quarter, year
    distinct: bool = False


@dataclass
class Condition:
    attribute: str
    operator: str
    value: str | None = None
    values: list[str] = field(default_factory=list)
    entityname: str | None = None     # a link-entity alias, for conditions on joined columns
    valueof: str | None = None        # compare with another column instead of a value


@dataclass
class Filter:
    type: str = "and"
    items: list[Condition | Filter | Entity] = field(default_factory=list)   # Entity: a filtering link


@dataclass
class Order:
    attribute: str | None = None
    alias: str | None = None
    descending: bool = False
    entityname: str | None = None


@dataclass
class Entity:
    """`<entity>` or `<link-entity>`: the columns, filters, orders and joins of one table."""

    name: str
    alias: str | None = None
    link_type: str = "inner"          # link-entity only: inner, outer, any, not any, exists
    from_: str | None = None          # link-entity only: column of this table...
    to: str | None = None             # ...equal to this column of the parent
    attributes: list[Attribute] = field(default_factory=list)
    all_attributes: bool = False
    filters: list[Filter] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    links: list[Entity] = field(default_factory=list)


@dataclass
class Fetch:
    entity: Entity
    top: int | None = None
    count: int | None = None
    page: int = 1
    paging_cookie: str | None = None
    distinct: bool = False
    aggregate: bool = False
    aggregate_limit: int | None = None
    total_count: bool = False
    raw_order: bool = False           # useraworderby: sort choices and lookups by their raw values


# ---- the XML ------------------------------------------------------------------------------

def invalid(message: str) -> DataverseError:
    return bad_request(message, INVALID_ARGUMENT)


def parse_xml(text: str, what: str = "FetchXML") -> Element:
    """Well-formed, DTD-free XML -> its root element; anything else -> 400."""
    try:
        root: Element = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        return root
    except DefusedXmlException as exc:
        raise invalid(f"The {what} contains a DTD, an entity declaration or an external reference, "
                      f"which are not allowed ({type(exc).__name__}).") from None
    except ParseError as exc:
        raise invalid(f"The {what} is not well-formed XML: {exc}.") from None


def _children(el: Element, allowed: set[str]) -> list[Element]:
    for child in el:
        tag: object = child.tag          # comments and processing instructions have a function as tag
        if not isinstance(tag, str):
            continue
        if child.tag not in allowed:
            expected = ", ".join(f"'{a}'" for a in sorted(allowed)) or "none"
            raise invalid(f"The element '{el.tag}' has invalid child element '{child.tag}'. "
                          f"List of possible elements expected: {expected}.")
    return [c for c in el if isinstance(c.tag, str)]


def _check_attrs(el: Element, allowed: set[str]) -> None:
    for name in el.attrib:
        if name not in allowed:
            raise invalid(f"The '{name}' attribute is not declared on the element '{el.tag}'.")


def _bool(el: Element, name: str) -> bool:
    value = el.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise invalid(f"The '{name}' attribute of '{el.tag}' has an invalid value '{value}': expected true or false.")


INT32_MAX = 2**31 - 1


def _int(el: Element, name: str, low: int = 1) -> int | None:
    value = el.get(name)
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or not low <= n <= INT32_MAX:     # Dataverse reads these as Int32
        raise invalid(f"The '{name}' attribute of '{el.tag}' has an invalid value '{value}': "
                      f"expected a whole number from {low} to {INT32_MAX}.")
    return n


def _required(el: Element, name: str) -> str:
    value = el.get(name)
    if not value:
        raise invalid(f"The required attribute '{name}' is missing on the element '{el.tag}'.")
    return value


# ---- elements -----------------------------------------------------------------------------

FETCH_ATTRS = {"mapping", "version", "output-format", "top", "count", "page", "paging-cookie", "distinct",
               "aggregate", "aggregatelimit", "returntotalrecordcount", "no-lock", "latematerialize",
               "useraworderby", "options", "datasource"}
ENTITY_CHILDREN = {"attribute", "all-attributes", "no-attrs", "filter", "order", "link-entity"}
LINK_TYPES = {"inner", "outer", "any", "not any", "all", "not all", "exists", "in"}
AGGREGATES = {"count", "countcolumn", "sum", "avg", "min", "max"}
DATE_GROUPINGS = {"day", "week", "month", "quarter", "year", "fiscal-period", "fiscal-year"}


def parse_fetch(text: str) -> Fetch:
    """FetchXML text -> `Fetch`; malformed or unsafe XML -> 400 in Dataverse's error shape."""
    root = parse_xml(text)
    if root.tag != "fetch":
        raise invalid(f"The root element of a FetchXML query must be 'fetch', not '{root.tag}'.")
    _check_attrs(root, FETCH_ATTRS)
    entities = _children(root, {"entity", "order"})
    entities = [e for e in entities if e.tag == "entity"]
    if len(entities) != 1:
        raise invalid("The 'fetch' element must contain exactly one 'entity' element.")
    complexity.check_fetch(root)
    if len(root.findall(".//link-entity")) > MAX_LINKS:
        raise invalid("Number of link entities in query exceeded maximum limit.")
    fetch = Fetch(
        entity=_entity(entities[0], link=False),
        top=_int(root, "top"),
        count=_int(root, "count"),
        page=_int(root, "page") or 1,
        paging_cookie=root.get("paging-cookie") or None,
        distinct=_bool(root, "distinct"),
        aggregate=_bool(root, "aggregate"),
        aggregate_limit=_int(root, "aggregatelimit"),
        total_count=_bool(root, "returntotalrecordcount"),
        raw_order=_bool(root, "useraworderby"),
    )
    if fetch.top is not None and (fetch.count is not None or root.get("page") is not None or fetch.paging_cookie):
        raise invalid("The 'top' attribute can't be combined with the paging attributes 'count', 'page' "
                      "or 'paging-cookie'.")
    if fetch.top is not None and fetch.top > MAX_PAGE:
        raise invalid(f"The 'top' attribute value {fetch.top} is greater than the maximum of {MAX_PAGE}.")
    return fetch


def _entity(el: Element, *, link: bool, depth: int = 0) -> Entity:
    if link:
        _check_attrs(el, {"name", "from", "to", "alias", "link-type", "visible", "intersect"})
    else:
        _check_attrs(el, {"name", "enableprefiltering", "prefilterparametername"})
    entity = Entity(_required(el, "name"), alias=el.get("alias") or None)
    if link:
        entity.from_ = el.get("from") or None
        entity.to = el.get("to") or None
        entity.link_type = el.get("link-type") or "inner"
        if entity.link_type not in LINK_TYPES:
            raise invalid(f"The link-type '{entity.link_type}' of link-entity '{entity.name}' is not valid; "
                          f"expected one of {', '.join(sorted(LINK_TYPES))}.")
    for child in _children(el, ENTITY_CHILDREN):
        tag = child.tag
        if tag == "attribute":
            entity.attributes.append(_attribute(child))
        elif tag == "all-attributes":
            entity.all_attributes = True
        elif tag == "filter":
            entity.filters.append(_filter(child, depth + 1))
        elif tag == "order":
            entity.orders.append(_order(child))
        elif tag == "link-entity":
            entity.links.append(_entity(child, link=True, depth=depth + 1))
    return entity


def _attribute(el: Element) -> Attribute:
    _check_attrs(el, {"name", "alias", "aggregate", "groupby", "dategrouping", "distinct", "usertimezone",
                      "build", "addedby", "rowaggregate"})
    attr = Attribute(_required(el, "name"), alias=el.get("alias") or None, aggregate=el.get("aggregate") or None,
                     groupby=_bool(el, "groupby"), dategrouping=el.get("dategrouping") or None,
                     distinct=_bool(el, "distinct"))
    if attr.aggregate is not None and attr.aggregate not in AGGREGATES:
        raise invalid(f"The aggregate '{attr.aggregate}' of attribute '{attr.name}' is not valid; "
                      f"expected one of {', '.join(sorted(AGGREGATES))}.")
    if attr.dategrouping is not None and attr.dategrouping not in DATE_GROUPINGS:
        raise invalid(f"The dategrouping '{attr.dategrouping}' of attribute '{attr.name}' is not valid; "
                      f"expected one of {', '.join(sorted(DATE_GROUPINGS))}.")
    return attr


def _filter(el: Element, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise invalid(f"Filters and link-entities are nested more than {MAX_DEPTH} levels deep.")
    _check_attrs(el, {"type", "isquickfindfields", "overridequickfindrecordlimitenabled",
                      "overridequickfindrecordlimitdisabled", "hint"})
    kind = (el.get("type") or "and").lower()
    if kind not in ("and", "or"):
        raise invalid(f"The filter type '{el.get('type')}' is not valid; expected 'and' or 'or'.")
    f = Filter(kind)
    for child in _children(el, {"condition", "filter", "link-entity"}):
        if child.tag == "condition":
            f.items.append(_condition(child))
        elif child.tag == "filter":
            f.items.append(_filter(child, depth + 1))
        else:
            f.items.append(_entity(child, link=True, depth=depth + 1))
    return f


def _condition(el: Element) -> Condition:
    _check_attrs(el, {"attribute", "operator", "value", "entityname", "valueof", "column", "uiname", "uitype",
                      "uihidden", "alias", "aggregate", "rowaggregate"})
    cond = Condition(_required(el, "attribute"), _required(el, "operator").lower(), value=el.get("value"),
                     entityname=el.get("entityname") or None, valueof=el.get("valueof") or None)
    for child in _children(el, {"value"}):
        cond.values.append(child.text or "")
    return cond


def _order(el: Element) -> Order:
    _check_attrs(el, {"attribute", "alias", "descending", "entityname"})
    order = Order(el.get("attribute") or None, el.get("alias") or None, _bool(el, "descending"),
                  el.get("entityname") or None)
    if (order.attribute is None) == (order.alias is None):
        raise invalid("An 'order' element needs exactly one of the attributes 'attribute' or 'alias'.")
    return order
