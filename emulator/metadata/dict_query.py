"""$select, $expand and $filter over metadata dicts: the query grammar, evaluated in Python."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from d365_components.emulator.protocol.errors import (
    bad_request,
    not_supported,
)
from d365_components.emulator.query.filter_grammar import FilterNode, parse_filter
from d365_components.emulator.query.query_options import Expand, parse_expand
from d365_components.emulator.request.context import Ctx, Reply

# a metadata object's navigation property -> its related objects (None: not a navigation property)
Expander = Callable[[dict[str, Any], str], list[dict[str, Any]] | dict[str, Any] | None]



def collection_reply(ctx: Ctx, items: list[dict[str, Any]], context: str, type_name: str, expander: Expander | None = None) -> Reply:
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


def single_reply(ctx: Ctx, item: dict[str, Any], context: str, type_name: str, expander: Expander | None = None) -> Reply:
    for opt in ctx.query:
        if opt.startswith("$") and opt not in ("$select", "$expand"):
            raise bad_request(f"The query parameter {opt} is not supported", "0x80060888")
    select = _select(ctx.query.get("$select"), [item], type_name)
    expands = parse_expand(ctx.query.get("$expand"))
    body = {"@odata.context": context + (f"({','.join(select)})" if select else "") + "/$entity"}
    body.update(_shape(item, select, expands, expander, type_name))
    return Reply.json(200, body)


def _select(text: str | None, items: list[dict[str, Any]], type_name: str) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = set().union(*(i.keys() for i in items)) if items else set(names)
    for n in names:
        if n not in known:
            raise bad_request(f"Could not find a property named '{n}' on type 'Microsoft.Dynamics.CRM.{type_name}'.")
    return names


def _shape(item: dict[str, Any], select: list[str] | None, expands: list[Expand], expander: Expander | None, type_name: str) -> dict[str, Any]:
    if select is None:
        out = dict(item)
    else:
        out = {k: v for k, v in item.items() if k in select or k in ("MetadataId", "@odata.type")}
    for e in expands:
        related: Any = expander(item, e.nav) if expander else None
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


def evaluate(node: FilterNode, item: dict[str, Any], type_name: str) -> bool:
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
            return bool(_norm(a) == _norm(b))
        if op == "ne":
            return bool(_norm(a) != _norm(b))
        if a is None or b is None:
            return False
        try:
            return bool({"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op])
        except TypeError:
            raise bad_request("A binary operator with incompatible types was detected.") from None
    if kind == "func" and node[1] in ("contains", "startswith", "endswith") and len(node[2]) == 2:
        a, b = _operand(node[2][0], item, type_name), _operand(node[2][1], item, type_name)
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        a, b = a.lower(), b.lower()
        return {"contains": b in a, "startswith": a.startswith(b), "endswith": a.endswith(b)}[node[1]]
    raise not_supported("Only comparisons, and/or/not and contains/startswith/endswith are supported in metadata queries.")


def _operand(node: FilterNode, item: dict[str, Any], type_name: str) -> Any:
    if node[0] == "lit":
        return node[2]
    value = item
    for name in node[1]:
        if not isinstance(value, dict) or name not in value:
            raise bad_request(f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'.")
        value = value[name]
    return value


def _norm(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v
