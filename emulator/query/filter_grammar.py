"""The OData $filter grammar: a small LALR grammar (lark) parsing $filter text into tuples, and parameter-alias substitution."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import LarkError, VisitError

from d365_components.emulator.protocol.errors import bad_request, not_supported

# a parsed $filter: ('cmp', op, left, right), ('lit', kind, value), ('path', [names]), ...
FilterNode = tuple[Any, ...]

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr | or_expr "or" and_expr -> or_
?and_expr: not_expr | and_expr "and" not_expr -> and_
?not_expr: "not" not_expr -> not_
         | atom
?atom: "(" or_expr ")"
     | value op value -> compare
     | NAME "(" [value ("," value)*] ")" -> func
     | CRMFUNC "(" [named ("," named)*] ")" -> crm
     | LAMBDA_PATH "(" [NAME ":" or_expr] ")" -> lambda_
!op: "eq" | "ne" | "gt" | "ge" | "lt" | "le"
named: NAME "=" (literal | array)
array: "[" [literal ("," literal)*] "]"
?value: literal | path
path: NAME ("/" NAME)*
literal: STRING -> string
       | DQSTRING -> dqstring
       | GUID -> guid
       | DATETIME -> datetime
       | NUMBER -> number
       | ENUM -> enum
       | "true" -> true
       | "false" -> false
       | "null" -> null
LAMBDA_PATH.5: /[A-Za-z_]\w*(\/[A-Za-z_]\w*)*\/(any|all)(?=\s*\()/
CRMFUNC.3: /Microsoft\.Dynamics\.CRM\.[A-Za-z]+/
ENUM.4: /[A-Za-z_][\w.]*'(?:[^']|'')*'/
GUID.3: /[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/
DATETIME.3: /\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?/
NUMBER.2: /-?\d+(\.\d+)?([eE][+-]?\d+)?[mMdDlLfF]?/
STRING: /'(?:[^']|'')*'/
DQSTRING: /"(?:[^"\\]|\\.)*"/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
%ignore /\s+/
"""


@v_args(inline=True)
class _ToTuples(Transformer_NonRecursive[Token, FilterNode]):  # long `or` chains are deep trees
    def or_(self, a: FilterNode, b: FilterNode) -> FilterNode:
        return ("or", a, b)

    def and_(self, a: FilterNode, b: FilterNode) -> FilterNode:
        return ("and", a, b)

    def not_(self, a: FilterNode) -> FilterNode:
        return ("not", a)

    def compare(self, left: FilterNode, op: Tree[Token], right: FilterNode) -> FilterNode:
        return ("cmp", str(op.children[0]), left, right)

    def func(self, name: Token, *args: FilterNode) -> FilterNode:
        return ("func", str(name), [a for a in args if a is not None])

    def crm(self, name: Token, *named: FilterNode) -> FilterNode:
        return ("crm", str(name).rsplit(".", 1)[1], dict(n for n in named if n is not None))

    def named(self, name: Token, value: FilterNode) -> tuple[str, FilterNode]:
        return (str(name), value)

    def array(self, *items: FilterNode) -> FilterNode:
        return ("lit", "array", [i[2] for i in items if i is not None])

    def lambda_(self, path: FilterNode, var: Token | None = None, expr: FilterNode | None = None) -> FilterNode:
        *names, op = str(path).split("/")
        return ("lambda", names, op, str(var) if var is not None else None, expr)

    def path(self, *names: Token) -> FilterNode:
        return ("path", [str(n) for n in names])

    def string(self, tok: Token) -> FilterNode:
        return ("lit", "string", tok[1:-1].replace("''", "'"))

    def dqstring(self, tok: Token) -> FilterNode:
        return ("lit", "string", json.loads(tok))

    def guid(self, tok: Token) -> FilterNode:
        return ("lit", "guid", tok.lower())

    def datetime(self, tok: Token) -> FilterNode:
        return ("lit", "datetime", str(tok))

    def number(self, tok: Token) -> FilterNode:
        body = tok.rstrip("mMdDlLfF")
        return ("lit", "number", float(body) if any(c in body for c in ".eE") else int(body))

    def enum(self, tok: Token) -> FilterNode:
        return ("lit", "enum", tok[tok.index("'") + 1:-1].replace("''", "'"))

    def true(self) -> FilterNode:
        return ("lit", "bool", True)

    def false(self) -> FilterNode:
        return ("lit", "bool", False)

    def null(self) -> FilterNode:
        return ("lit", "null", None)


_parser = Lark(GRAMMAR, parser="lalr", maybe_placeholders=True)
_to_tuples = _ToTuples()


@lru_cache(maxsize=512)
def parse_filter(text: str) -> FilterNode:
    """$filter text -> tuple tree; 400 with the position on a syntax error."""
    try:
        node: FilterNode = _to_tuples.transform(_parser.parse(text))
        return node
    except VisitError as exc:
        raise bad_request(f"Syntax error in $filter '{text}'.") from exc.orig_exc
    except LarkError as exc:
        unsupported = re.search(r"\b(tolower|toupper|length|substring|indexof|trim|concat|year|month|day|hour|round)\s*\(", text)
        if unsupported:
            raise not_supported(f"The '{unsupported.group(1)}' function is not supported.") from None
        if "'" in text and text.count("'") % 2:
            raise bad_request(f"There is an unterminated literal at position {text.rfind(chr(39))} in '{text}'.") from None
        pos = getattr(exc, "column", None) or getattr(exc, "pos_in_stream", None)
        where = f" at position {pos}" if pos is not None else ""
        raise bad_request(f"Syntax error{where} in '{text}'.") from None


_ALIAS = re.compile(r"'(?:[^']|'')*'|@\w+")


def substitute_aliases(text: str, aliases: dict[str, str]) -> str:
    """Replace parameter aliases (@p1) outside string literals by their values; unknown -> null."""
    if "@" not in text:
        return text
    return _ALIAS.sub(lambda m: m.group(0) if m.group(0)[0] == "'" else aliases.get(m.group(0), "null"), text)
