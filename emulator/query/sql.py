"""`?sql=` on an entity set: the SQL subset Dataverse accepts, parsed and compiled to parameterized SQLite.

The subset (research/microsoft_sdk_catalogue.md §2): `SELECT [DISTINCT] [TOP n] col [AS alias], ...`
(or `*`), `FROM table [alias]` (also `FROM a, b`), `[INNER] JOIN` / `LEFT [OUTER] JOIN ... ON x = y`
(a lookup joined by its logical name), `WHERE` with `= != <> > < >= <= [NOT] LIKE [NOT] IN
IS [NOT] NULL [NOT] BETWEEN AND OR NOT ( )`, `GROUP BY`, `COUNT(*) COUNT([DISTINCT] c) SUM AVG MIN MAX`,
`ORDER BY c [ASC|DESC]`, `OFFSET n ROWS [FETCH NEXT m ROWS ONLY]`. Everything else (writes, `;`,
UNION, HAVING, WITH, subqueries, RIGHT/FULL/CROSS JOIN, CASE, other functions) is refused with a
400 before any SQL runs. A hand-written recursive-descent parser: every name is checked against the
schema (tables by logical name, storage tables and columns are named the same), every literal is a
bound parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    QUERY_NOT_SUPPORTED,
    DataverseError,
    bad_request,
)
from d365_components.emulator.storage.schema import Column, Schema, Table
from d365_components.emulator.storage.store import q

MAX_TOP = 5000
GUID_TYPES = frozenset({"Uniqueidentifier", "Lookup", "Customer", "Owner"})
AGGREGATES = frozenset({"COUNT", "SUM", "AVG", "MIN", "MAX"})
REFUSED = frozenset({
    "INSERT", "UPDATE", "DELETE", "MERGE", "DROP", "CREATE", "ALTER", "TRUNCATE", "EXEC", "EXECUTE", "GRANT",
    "UNION", "EXCEPT", "INTERSECT", "HAVING", "WITH", "CASE", "RIGHT", "FULL", "CROSS", "APPLY", "OVER", "INTO",
    "PIVOT", "UNPIVOT", "DECLARE",
})
KEYWORDS = frozenset({
    "SELECT", "DISTINCT", "TOP", "AS", "FROM", "JOIN", "INNER", "LEFT", "OUTER", "ON", "WHERE", "AND", "OR", "NOT",
    "LIKE", "IN", "IS", "NULL", "BETWEEN", "GROUP", "BY", "ORDER", "ASC", "DESC", "OFFSET", "ROWS", "ROW", "FETCH",
    "NEXT", "FIRST", "ONLY",
}) | REFUSED
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>N?'(?:[^']|'')*')
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*|\[[^\]]+\])
  | (?P<op><>|!=|>=|<=|=|<|>)
  | (?P<punct>[(),.*;])
  | (?P<comment>--|/\*)
""", re.X)


def syntax_error(message: str) -> DataverseError:
    return bad_request(f"Invalid SQL query: {message}", INVALID_ARGUMENT)


def unsupported(what: str) -> DataverseError:
    return bad_request(f"The SQL query is not supported: {what} is not supported.", QUERY_NOT_SUPPORTED)


@dataclass
class Token:
    kind: str          # string, number, name, keyword, op, punct, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise syntax_error(f"unexpected character '{text[pos]}' at position {pos}.")
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "comment":
            raise unsupported("a comment")
        if kind == "punct" and value == ";":
            raise unsupported("';' (one statement only)")
        if kind == "name" and not value.startswith("[") and value.upper() in KEYWORDS:
            kind, value = "keyword", value.upper()
        if kind != "ws":
            tokens.append(Token(kind, value, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---- the parsed statement -----------------------------------------------------------------

@dataclass
class ColumnRef:
    qualifier: str | None
    name: str


@dataclass
class Aggregate:
    function: str
    arg: ColumnRef | None      # None for COUNT(*)
    distinct: bool = False


@dataclass
class Item:
    value: ColumnRef | Aggregate | None       # None for `*`
    alias: str | None = None


@dataclass
class TableRef:
    name: str
    alias: str
    join: str = ""                            # "", "INNER", "LEFT"
    on: tuple[ColumnRef, ColumnRef] | None = None


@dataclass
class Condition:
    op: str                                   # AND, OR, NOT, CMP, LIKE, IN, NULL, BETWEEN
    parts: list[Any] = field(default_factory=list)
    negated: bool = False


@dataclass
class Statement:
    items: list[Item]
    tables: list[TableRef]
    distinct: bool = False
    top: int | None = None
    where: Condition | None = None
    group: list[ColumnRef] = field(default_factory=list)
    order: list[tuple[ColumnRef, bool]] = field(default_factory=list)
    offset: int | None = None
    fetch: int | None = None


class Parser:
    """Recursive descent over the token list; refuses what the subset lacks by name."""

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, *words: str) -> bool:
        return self.tok.kind in ("keyword", "punct", "op") and self.tok.text in words

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            self.fail(f"'{word}' expected")

    def fail(self, what: str) -> DataverseError:
        tok = self.tok
        if tok.kind == "keyword" and tok.text in REFUSED:
            raise unsupported(tok.text)
        if tok.kind == "keyword" and tok.text == "SELECT":
            raise unsupported("a subquery")
        found = tok.text or "end of query"
        raise syntax_error(f"{what} at position {tok.pos}, found '{found}'.")

    def name(self) -> str:
        tok = self.tok
        if tok.kind != "name":
            self.fail("a name")
        self.i += 1
        return tok.text.strip("[]").lower()

    def integer(self) -> int:
        tok = self.tok
        if tok.kind != "number" or "." in tok.text:
            self.fail("an integer")
        self.i += 1
        return int(tok.text)

    # statement
    def statement(self) -> Statement:
        if not self.accept("SELECT"):
            self.fail("SELECT")
        distinct = self.accept("DISTINCT")
        top = None
        if self.accept("TOP"):
            paren = self.accept("(")
            top = self.integer()
            if paren:
                self.expect(")")
            if top > MAX_TOP:
                raise syntax_error(f"TOP {top} is above the maximum of {MAX_TOP}.")
        items = [self.item()]
        while self.accept(","):
            items.append(self.item())
        self.expect("FROM")
        tables = [self.table_ref("")]
        while True:
            if self.accept(","):
                tables.append(self.table_ref(""))
            elif self.at("JOIN", "INNER"):
                self.accept("INNER")
                self.expect("JOIN")
                tables.append(self.joined("INNER"))
            elif self.accept("LEFT"):
                self.accept("OUTER")
                self.expect("JOIN")
                tables.append(self.joined("LEFT"))
            else:
                break
        st = Statement(items, tables, distinct, top)
        if self.accept("WHERE"):
            st.where = self.disjunction()
        if self.accept("GROUP"):
            self.expect("BY")
            st.group = [self.column_ref()]
            while self.accept(","):
                st.group.append(self.column_ref())
        if self.accept("ORDER"):
            self.expect("BY")
            st.order = [self.order_item()]
            while self.accept(","):
                st.order.append(self.order_item())
        if self.accept("OFFSET"):
            st.offset = self.integer()
            if not self.accept("ROWS"):
                self.expect("ROW")
            if self.accept("FETCH"):
                if not self.accept("NEXT"):
                    self.expect("FIRST")
                st.fetch = self.integer()
                if not self.accept("ROWS"):
                    self.expect("ROW")
                self.expect("ONLY")
        if self.tok.kind != "end":
            self.fail("end of query")
        return st

    def item(self) -> Item:
        if self.accept("*"):
            return Item(None)
        value: ColumnRef | Aggregate
        if self.tok.kind == "name" and self.tokens[self.i + 1].text == "(":
            value = self.aggregate()
        else:
            value = self.column_ref()
        alias = None
        if self.accept("AS"):
            alias = self.name()
        elif self.tok.kind == "name":
            alias = self.name()
        return Item(value, alias)

    def aggregate(self) -> Aggregate:
        function = self.take().text.upper()
        if function not in AGGREGATES:
            raise unsupported(f"the function {function}")
        self.expect("(")
        if function == "COUNT" and self.accept("*"):
            self.expect(")")
            return Aggregate(function, None)
        distinct = self.accept("DISTINCT")
        arg = self.column_ref()
        self.expect(")")
        return Aggregate(function, arg, distinct)

    def column_ref(self) -> ColumnRef:
        if self.tok.kind == "name" and self.tokens[self.i + 1].text == "(":
            raise unsupported(f"the function {self.tok.text.upper()}")
        if self.at("("):
            raise unsupported("a subquery or expression")
        first = self.name()
        if self.accept("."):
            return ColumnRef(first, self.name())
        return ColumnRef(None, first)

    def order_item(self) -> tuple[ColumnRef, bool]:
        ref = self.column_ref()
        if self.accept("DESC"):
            return ref, True
        self.accept("ASC")
        return ref, False

    def table_ref(self, join: str) -> TableRef:
        if self.at("("):
            raise unsupported("a subquery")
        name = self.name()
        alias = name
        if self.accept("AS"):
            alias = self.name()
        elif self.tok.kind == "name":
            alias = self.name()
        return TableRef(name, alias, join)

    def joined(self, join: str) -> TableRef:
        ref = self.table_ref(join)
        self.expect("ON")
        left = self.column_ref()
        if not self.accept("="):
            self.fail("'=' (joins are on equal columns)")
        ref.on = (left, self.column_ref())
        return ref

    # conditions
    def disjunction(self) -> Condition:
        parts = [self.conjunction()]
        while self.accept("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Condition("OR", parts)

    def conjunction(self) -> Condition:
        parts = [self.negation()]
        while self.accept("AND"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Condition("AND", parts)

    def negation(self) -> Condition:
        if self.accept("NOT"):
            return Condition("NOT", [self.negation()])
        if self.accept("("):
            if self.at("SELECT"):
                raise unsupported("a subquery")
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.predicate()

    def predicate(self) -> Condition:
        left = self.operand()
        if self.tok.kind == "op":
            op = self.take().text
            return Condition("CMP", [left, "!=" if op == "<>" else op, self.operand()])
        if self.accept("IS"):
            negated = self.accept("NOT")
            self.expect("NULL")
            return Condition("NULL", [left], negated)
        negated = self.accept("NOT")
        if self.accept("LIKE"):
            return Condition("LIKE", [left, self.literal()], negated)
        if self.accept("IN"):
            self.expect("(")
            if self.at("SELECT"):
                raise unsupported("a subquery")
            values = [self.literal()]
            while self.accept(","):
                values.append(self.literal())
            self.expect(")")
            return Condition("IN", [left, values], negated)
        if self.accept("BETWEEN"):
            low = self.literal()
            self.expect("AND")
            return Condition("BETWEEN", [left, low, self.literal()], negated)
        raise self.fail("a comparison")

    def operand(self) -> ColumnRef | Literal:
        if self.tok.kind in ("string", "number") or self.at("NULL"):
            return self.literal()
        return self.column_ref()

    def literal(self) -> Literal:
        tok = self.tok
        if tok.kind == "string":
            self.i += 1
            body = tok.text[2:-1] if tok.text.startswith("N") else tok.text[1:-1]
            return Literal(body.replace("''", "'"))
        if tok.kind == "number":
            self.i += 1
            return Literal(float(tok.text) if "." in tok.text else int(tok.text))
        if self.accept("NULL"):
            return Literal(None)
        raise self.fail("a literal value")


@dataclass
class Literal:
    value: Any


def parse(text: str) -> Statement:
    return Parser(text).statement()


# ---- compiling to SQLite ------------------------------------------------------------------

@dataclass
class Output:
    key: str                         # the JSON property name
    column: Column | None            # for typing values; None for aggregates other than MIN/MAX


@dataclass
class Compiled:
    root: Table
    select_sql: str
    from_sql: str
    where_sql: str
    params: list[Any]
    group_sql: str
    order_sql: str
    outputs: list[Output]
    distinct: bool
    top: int | None
    offset: int
    fetch: int | None
    aggregate: bool


def compile_sql(schema: Schema, text: str) -> Compiled:
    st = parse(text)
    return _Compiler(schema, st).compile()


class _Compiler:
    def __init__(self, schema: Schema, st: Statement):
        self.schema = schema
        self.st = st
        self.scopes: dict[str, tuple[str, Table]] = {}      # alias -> (sql alias, table)
        self.params: list[Any] = []

    def table(self, name: str) -> Table:
        table = self.schema.tables.get(name)
        if table is None:
            raise bad_request(f"Invalid table name '{name}'.", INVALID_ARGUMENT)
        return table

    def column(self, ref: ColumnRef) -> tuple[str, Column]:
        if ref.qualifier is not None:
            if ref.qualifier not in self.scopes:
                raise syntax_error(f"the table alias '{ref.qualifier}' is not defined.")
            found = [self.scopes[ref.qualifier]]
        else:
            found = [s for s in self.scopes.values() if s[1].column_for_json(ref.name) is not None]
            if len(found) > 1:
                raise syntax_error(f"the column name '{ref.name}' is ambiguous.")
            if not found:
                first = next(iter(self.scopes.values()))[1]
                raise bad_request(f"Invalid column name '{ref.name}' on table '{first.logical_name}'.", INVALID_ARGUMENT)
        sql_alias, table = found[0]
        col = table.column_for_json(ref.name)
        if col is None:
            raise bad_request(f"Invalid column name '{ref.name}' on table '{table.logical_name}'.", INVALID_ARGUMENT)
        return f"{sql_alias}.{q(col.name)}", col

    def compile(self) -> Compiled:
        st = self.st
        froms: list[str] = []
        for i, ref in enumerate(st.tables):
            table = self.table(ref.name)
            if ref.alias in self.scopes:
                raise syntax_error(f"the table alias '{ref.alias}' is used twice.")
            sql_alias = f"s{i}"
            self.scopes[ref.alias] = (sql_alias, table)
            if ref.on is None:
                froms.append(("," if froms else "") + f" {q(table.logical_name)} {sql_alias}")
            else:
                left, _ = self.column(ref.on[0])
                right, _ = self.column(ref.on[1])
                kind = "LEFT JOIN" if ref.join == "LEFT" else "JOIN"
                froms.append(f" {kind} {q(table.logical_name)} {sql_alias} ON {left} = {right}")
        root = self.scopes[st.tables[0].alias][1]
        outputs: list[Output] = []
        exprs: list[str] = []
        aggregate = any(isinstance(it.value, Aggregate) for it in st.items) or bool(st.group)
        for it in st.items:
            if it.value is None:
                if aggregate:
                    raise syntax_error("'*' cannot be selected with aggregates.")
                for sql_alias, table in self.scopes.values():
                    for col in table.columns.values():
                        if col.type in ("File", "Image") or col.name in {o.key for o in outputs}:
                            continue
                        exprs.append(f"{sql_alias}.{q(col.name)} AS {q(col.name)}")
                        outputs.append(Output(col.name, col))
                continue
            if isinstance(it.value, Aggregate):
                agg = it.value
                argument: Column | None = None
                if agg.arg is None:
                    expr = "COUNT(*)"
                else:
                    inner, argument = self.column(agg.arg)
                    expr = f"{agg.function}({'DISTINCT ' if agg.distinct else ''}{inner})"
                key = it.alias or (agg.function.lower() if agg.arg is None else f"{agg.function.lower()}_{agg.arg.name}")
                typed = argument if agg.function in ("MIN", "MAX") else None
            else:
                expr, col = self.column(it.value)
                key = it.alias or col.name
                typed = col
            if key in {o.key for o in outputs}:
                raise syntax_error(f"the column name '{key}' is selected twice; give one an alias.")
            exprs.append(f"{expr} AS {q(key)}")
            outputs.append(Output(key, typed))
        if aggregate:
            grouped = {self.column(g)[0] for g in st.group}
            for it in st.items:
                if isinstance(it.value, ColumnRef) and self.column(it.value)[0] not in grouped:
                    raise syntax_error(f"the column '{it.value.name}' is neither aggregated nor in GROUP BY.")
        where = self.condition(st.where) if st.where is not None else ""
        group_sql = ", ".join(self.column(g)[0] for g in st.group)
        order_parts = []
        keys = {o.key for o in outputs}
        for order_ref, desc in st.order:
            if order_ref.qualifier is None and order_ref.name in keys and not any(
                    s[1].column_for_json(order_ref.name) for s in self.scopes.values()):
                expr = q(order_ref.name)
            else:
                expr = self.column(order_ref)[0]
            order_parts.append(f"{expr}{' DESC' if desc else ''}")
        if not aggregate and not st.distinct:
            order_parts.append(f"s0.{q(root.primary_id)}")      # a stable order for paging
        order_sql = ", ".join(order_parts) or "1"
        if st.top is not None and st.offset is not None:
            raise syntax_error("TOP cannot be used with OFFSET.")
        return Compiled(root, ", ".join(exprs), "".join(froms).lstrip(", "), where, self.params, group_sql,
                        order_sql, outputs, st.distinct, st.top, st.offset or 0, st.fetch, aggregate)

    def condition(self, c: Condition) -> str:
        if c.op in ("AND", "OR"):
            return "(" + f" {c.op} ".join(self.condition(p) for p in c.parts) + ")"
        if c.op == "NOT":
            return f"(NOT {self.condition(c.parts[0])})"
        left = self.operand(c.parts[0])
        guid = self.is_guid(c.parts[0])
        neg = "NOT " if c.negated else ""
        if c.op == "NULL":
            return f"({left} IS {neg}NULL)"
        if c.op == "CMP":
            right = self.operand(c.parts[2], guid or self.is_guid(c.parts[2]))
            if "NULL" in (left, right):
                raise syntax_error("compare with NULL using IS NULL or IS NOT NULL.")
            return f"({left} {c.parts[1]} {right})"
        if c.op == "LIKE":
            return f"({left} {neg}LIKE {self.operand(c.parts[1])})"
        if c.op == "IN":
            return f"({left} {neg}IN ({', '.join(self.operand(v, guid) for v in c.parts[1])}))"
        low, high = self.operand(c.parts[1], guid), self.operand(c.parts[2], guid)
        return f"({left} {neg}BETWEEN {low} AND {high})"

    def is_guid(self, value: ColumnRef | Literal) -> bool:
        return isinstance(value, ColumnRef) and self.column(value)[1].type in GUID_TYPES

    def operand(self, value: ColumnRef | Literal, guid: bool = False) -> str:
        """A column, or a bound parameter (GUIDs are stored lower-case and compare case-insensitively)."""
        if isinstance(value, ColumnRef):
            return self.column(value)[0]
        if value.value is None:
            return "NULL"
        self.params.append(value.value.lower() if guid and isinstance(value.value, str) else value.value)
        return "?"
