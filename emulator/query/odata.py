"""OData query options -> parameterized SQL: $filter, $orderby, $select, $expand, keyset paging.

$filter is parsed by a small LALR grammar (lark) into tuples, then compiled against the schema:
columns become quoted identifiers from the schema, every value from the URL becomes a `?`
parameter, so no user text is ever spliced into SQL. Lookup paths (`primarycontactid/fullname`)
become scalar subqueries, `any`/`all` become EXISTS over the related table (or the intersect table
for N:N), and the `Microsoft.Dynamics.CRM.*` query functions become date ranges, IN lists and
the like.

Paging is keyset-based: rows are ordered by the $orderby columns then the primary key, and the
opaque `$skiptoken` carries the last row's sort values, so each page is one indexed range scan.
"""

from __future__ import annotations

import base64
import json
import math
import re
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from lark import Lark, Transformer, v_args
from lark.exceptions import LarkError, VisitError

from d365_components.emulator.protocol.errors import bad_request, not_supported, unknown_property
from d365_components.emulator.protocol.literals import split_top
from d365_components.emulator.storage.schema import Column, Schema, Table
from d365_components.emulator.storage.store import q

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
class _ToTuples(Transformer):
    def or_(self, a, b):
        return ("or", a, b)

    def and_(self, a, b):
        return ("and", a, b)

    def not_(self, a):
        return ("not", a)

    def compare(self, left, op, right):
        return ("cmp", str(op.children[0]), left, right)

    def func(self, name, *args):
        return ("func", str(name), [a for a in args if a is not None])

    def crm(self, name, *named):
        return ("crm", str(name).rsplit(".", 1)[1], dict(n for n in named if n is not None))

    def named(self, name, value):
        return (str(name), value)

    def array(self, *items):
        return ("lit", "array", [i[2] for i in items if i is not None])

    def lambda_(self, path, var=None, expr=None):
        *names, op = str(path).split("/")
        return ("lambda", names, op, str(var) if var is not None else None, expr)

    def path(self, *names):
        return ("path", [str(n) for n in names])

    def string(self, tok):
        return ("lit", "string", tok[1:-1].replace("''", "'"))

    def dqstring(self, tok):
        return ("lit", "string", json.loads(tok))

    def guid(self, tok):
        return ("lit", "guid", tok.lower())

    def datetime(self, tok):
        return ("lit", "datetime", str(tok))

    def number(self, tok):
        body = tok.rstrip("mMdDlLfF")
        return ("lit", "number", float(body) if any(c in body for c in ".eE") else int(body))

    def enum(self, tok):
        return ("lit", "enum", tok[tok.index("'") + 1:-1].replace("''", "'"))

    def true(self):
        return ("lit", "bool", True)

    def false(self):
        return ("lit", "bool", False)

    def null(self):
        return ("lit", "null", None)


_parser = Lark(GRAMMAR, parser="lalr", maybe_placeholders=True)
_to_tuples = _ToTuples()


@lru_cache(maxsize=512)
def parse_filter(text: str):
    """$filter text -> tuple tree; 400 with the position on a syntax error."""
    try:
        return _to_tuples.transform(_parser.parse(text))
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


# ---- values ---------------------------------------------------------------------------------

EDM_OF_KIND = {"string": "Edm.String", "guid": "Edm.Guid", "datetime": "Edm.DateTimeOffset",
               "number": "Edm.Int32", "bool": "Edm.Boolean", "enum": "Edm.String", "array": "Collection"}
OP_NAMES = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
            "lt": "LessThan", "le": "LessThanOrEqual"}
SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def iso_datetime(text: str) -> str:
    """Any ISO date/datetime -> the stored form `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).strftime("%Y-%m-%dT00:00:00Z")
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'.") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError:       # 9999-12-31T23:59:59-05:00 is past the last representable instant
        raise bad_request(f"The date-time '{text}' is outside the supported range.") from None


def coerce(col: Column, kind: str, value, op: str = "eq"):
    """A filter literal -> the stored value for `col`, or 400 naming both types."""
    t = col.type
    if kind == "null":
        return None
    ok = value
    if t in ("String", "Memo", "EntityName", "MultiSelectPicklist"):
        ok = value if kind in ("string", "enum") else _mismatch(col, kind, op)
    elif t in ("Uniqueidentifier", "Lookup", "Customer", "Owner"):
        if kind in ("guid", "string") and re.fullmatch(r"[0-9a-fA-F-]{36}", str(value)):
            ok = str(value).lower()
        else:
            _mismatch(col, kind, op)
    elif t == "DateTime":
        ok = iso_datetime(str(value)) if kind in ("datetime", "string") else _mismatch(col, kind, op)
    elif t == "Boolean":
        ok = int(value) if kind == "bool" else _mismatch(col, kind, op)
    elif t in ("Integer", "BigInt", "Picklist", "State", "Status"):
        if kind == "number" and _is_whole(value):
            ok = int(value)
        elif kind == "string" and re.fullmatch(r"-?\d+", str(value)):
            ok = int(value)
        else:
            _mismatch(col, kind, op)
        bits = 63 if t == "BigInt" else 31
        if not -(1 << bits) <= ok < (1 << bits):
            # Wording UNCONFIRMED; Dataverse answers an out-of-range literal with a 400, not a 500.
            raise bad_request(f"The value '{value}' is out of range for the property '{col.name}' "
                              f"of type '{col.edm_type}'.")
    elif t in ("Decimal", "Double", "Money"):
        if kind == "number":
            ok = _sql_number(value)
        elif kind == "string":
            try:
                ok = float(value)
            except ValueError:
                _mismatch(col, kind, op)
        else:
            _mismatch(col, kind, op)
    return ok


def _is_whole(value) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and value.is_integer())


def _sql_number(value):
    """Ints beyond SQLite's 64-bit INTEGER bind as REAL (SQLite raises OverflowError otherwise)."""
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 63):
        return float(value)
    return value


_LIKE_PART = re.compile(r"\[(\[|[^\]]*)\]|\\|[^\[\\]+|\[")


def like_pattern(text: str) -> str:
    """A SQL Server LIKE pattern -> the same pattern for SQLite `LIKE ? ESCAPE '\\'`.

    Dataverse runs contains/startswith/endswith as SQL Server LIKE, where `[%]`, `[_]` and `[[]`
    stand for the character itself (that's how clients escape user text); `%` and `_` outside
    brackets stay wildcards. SQLite has no brackets, so bracketed characters become escaped
    literals. Character ranges (`[a-c]`) have no SQLite LIKE equivalent: a 400 saying so, not a wrong answer."""
    out = []
    for m in _LIKE_PART.finditer(text):
        part = m.group(0)
        if m.group(1) is not None:
            if len(m.group(1)) != 1:
                raise not_supported(f"The character class '{part}' in a LIKE pattern is not supported by the emulator.")
            part = m.group(1)
            out.append("\\" + part if part in "%_\\" else part)
        elif part == "\\":
            out.append("\\\\")
        else:
            out.append(part)
    return "".join(out)


def _mismatch(col: Column, kind: str, op: str):
    raise bad_request("A binary operator with incompatible types was detected. Found operand types "
                      f"'{col.edm_type}' and '{EDM_OF_KIND.get(kind, kind)}' for operator kind '{OP_NAMES.get(op, op)}'.")


# ---- $filter compiler -------------------------------------------------------------------------

@dataclass
class Scope:
    table: Table
    alias: str


@dataclass
class QueryUser:
    """Who is asking: EqualUserId and friends compare against these."""

    user_id: str
    business_unit_id: str


class FilterCompiler:
    """Compiles a parsed $filter for one root table into (sql, params)."""

    def __init__(self, schema: Schema, user: QueryUser | None = None, now: datetime | None = None):
        self.schema = schema
        self.user = user
        self.now = now or datetime.now(UTC).replace(microsecond=0)
        self.params: list = []
        self._aliases = 0

    def new_alias(self, prefix="t") -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def compile(self, node, scope: Scope, vars: dict[str, Scope] | None = None) -> str:
        vars = vars or {}
        kind = node[0]
        if kind == "or":
            return f"({self.compile(node[1], scope, vars)} OR {self.compile(node[2], scope, vars)})"
        if kind == "and":
            return f"({self.compile(node[1], scope, vars)} AND {self.compile(node[2], scope, vars)})"
        if kind == "not":
            if node[1][0] == "crm":
                raise bad_request("Not operator along with the Custom Named Condition operators is not allowed")
            return f"(NOT COALESCE({self.compile(node[1], scope, vars)}, 0))"
        if kind == "cmp":
            return self._compare(node[1], node[2], node[3], scope, vars)
        if kind == "func":
            return self._func(node[1], node[2], scope, vars)
        if kind == "crm":
            return self._crm(node[1], node[2], scope, vars)
        if kind == "lambda":
            return self._lambda(node, scope, vars)
        raise bad_request("The $filter expression must evaluate to a boolean.")

    # paths

    def resolve(self, names: list[str], scope: Scope, vars: dict[str, Scope]) -> tuple[str, Column]:
        """A property path -> (SQL expression, the column it ends at)."""
        if names[0] in vars:
            scope, names = vars[names[0]], names[1:]
            if not names:
                raise bad_request("A range variable must be followed by a property.")
        table = scope.table
        if len(names) == 1:
            col = table.column_for_json(names[0])
            if col is None:
                raise unknown_property(names[0], table.logical_name)
            return f"{scope.alias}.{q(col.name)}", col
        nav = table.single_navs.get(names[0])
        if nav is None:
            if names[0] in table.collection_navs:
                raise bad_request(f"The parent value for a property access of a property '{names[1]}' is not a single value. "
                                  "Property access can only be applied to a single value.")
            raise unknown_property(names[0], table.logical_name)
        target = self.schema.tables[nav.targets[0]]
        inner = Scope(target, self.new_alias())
        expr, col = self.resolve(names[1:], inner, {})
        return (f"(SELECT {expr} FROM {q(target.logical_name)} AS {inner.alias} "
                f"WHERE {inner.alias}.{q(target.primary_id)} = {scope.alias}.{q(nav.column)})"), col

    def _param(self, value) -> str:
        self.params.append(_sql_number(value))
        return "?"

    def _compare(self, op, left, right, scope, vars) -> str:
        if left[0] == "lit" and right[0] == "path":
            left, right, op = right, left, {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        if left[0] == "path" and right[0] == "path":
            a, ca = self.resolve(left[1], scope, vars)
            b, cb = self.resolve(right[1], scope, vars)
            if ca.edm_type != cb.edm_type:
                raise bad_request("A binary operator with incompatible types was detected. Found operand types "
                                  f"'{ca.edm_type}' and '{cb.edm_type}' for operator kind '{OP_NAMES[op]}'.")
            return f"({a} {SQL_OPS[op]} {b})"
        if left[0] == "lit":
            if left[1] == "null" or right[1] == "null":
                same = (left[1] == right[1])
                return "1" if (same and op in ("eq", "ge", "le")) or (not same and op == "ne") else "0"
            return f"({self._param(left[2])} {SQL_OPS[op]} {self._param(right[2])})"
        expr, col = self.resolve(left[1], scope, vars)
        value = coerce(col, right[1], right[2], op)
        if value is None:
            if op == "eq":
                return f"({expr} IS NULL)"
            if op == "ne":
                return f"({expr} IS NOT NULL)"
            return "0"
        if op == "ne":
            return f"({expr} <> {self._param(value)} OR {expr} IS NULL)"
        return f"({expr} {SQL_OPS[op]} {self._param(value)})"

    def _func(self, name, args, scope, vars) -> str:
        patterns = {"contains": "%{}%", "startswith": "{}%", "endswith": "%{}"}
        if name not in patterns:
            if name in ("tolower", "toupper", "length", "substring", "indexof", "trim", "concat", "year", "month", "day"):
                raise not_supported(f"The '{name}' function is not supported.")
            raise bad_request(f"An unknown function with name '{name}' was found. This may also be a function import "
                              "or a key lookup on a navigation property, which is not allowed.")
        if len(args) != 2 or args[0][0] != "path" or args[1][0] != "lit" or args[1][1] != "string":
            raise bad_request(f"No function signature for the function with name '{name}' matches the specified arguments.")
        expr, col = self.resolve(args[0][1], scope, vars)
        if col.edm_type != "Edm.String":
            raise bad_request(f"No function signature for the function with name '{name}' matches the specified arguments. "
                              f"The function signatures considered are: {name}(Edm.String Nullable=true, Edm.String Nullable=true).")
        return f"({expr} LIKE {self._param(patterns[name].format(like_pattern(args[1][2])))} ESCAPE '\\')"

    def _lambda(self, node, scope, vars) -> str:
        _, names, op, var, expr = node
        if names[0] in vars:
            scope, names = vars[names[0]], names[1:]
        if len(names) != 1:
            raise not_supported("A collection nested under a lookup path is not supported in a lambda expression.")
        nav = scope.table.collection_navs.get(names[0])
        if nav is None:
            if scope.table.column_for_json(names[0]) or names[0] in scope.table.single_navs:
                raise bad_request(f"The '{op}' lambda can only be applied to a collection-valued navigation property.")
            raise unknown_property(names[0], scope.table.logical_name)
        target = self.schema.tables[nav.target]
        inner = Scope(target, self.new_alias())
        if nav.many_to_many:
            link = self.new_alias("i")
            source = (f"{q(nav.intersect)} AS {link} JOIN {q(target.logical_name)} AS {inner.alias} "
                      f"ON {inner.alias}.{q(target.primary_id)} = {link}.{q(nav.target_id)}")
            where = f"{link}.{q(nav.own_id)} = {scope.alias}.{q(scope.table.primary_id)}"
        else:
            source = f"{q(target.logical_name)} AS {inner.alias}"
            where = f"{inner.alias}.{q(nav.column)} = {scope.alias}.{q(scope.table.primary_id)}"
        if expr is None:
            if op == "all":
                raise bad_request("The 'all' lambda requires a predicate.")
            return f"EXISTS (SELECT 1 FROM {source} WHERE {where})"
        cond = self.compile(expr, scope, {**vars, var: inner})
        if op == "any":
            return f"EXISTS (SELECT 1 FROM {source} WHERE {where} AND {cond})"
        return f"NOT EXISTS (SELECT 1 FROM {source} WHERE {where} AND NOT COALESCE({cond}, 0))"

    # Microsoft.Dynamics.CRM query functions

    def _crm(self, name, args, scope, vars) -> str:
        prop = args.get("PropertyName")
        if prop is None or prop[1] not in ("string", "enum"):
            raise bad_request(f"The function '{name}' requires a PropertyName parameter.")
        expr, col = self.resolve(prop[2].split("/"), scope, vars)
        value = args.get("PropertyValue")
        values = args.get("PropertyValues")
        handler = getattr(self, "_crm_" + name, None)
        if handler is not None:
            return handler(expr, col, value, values)
        try:
            date_range = self._date_function(name, value)
        except (OverflowError, ValueError):     # NextXYears(99999): past year 9999 or before year 1
            raise bad_request(f"The PropertyValue of '{name}' gives a date outside the supported range.") from None
        if date_range is not None:
            lo, hi = date_range
            parts = []
            if lo is not None:
                parts.append(f"{expr} >= {self._param(_fmt(lo))}")
            if hi is not None:
                parts.append(f"{expr} < {self._param(_fmt(hi))}")
            return "(" + " AND ".join(parts) + ")"
        if name in KNOWN_UNSUPPORTED:
            raise not_supported(f"The query function 'Microsoft.Dynamics.CRM.{name}' is not supported by the emulator.")
        raise bad_request(f"An unknown function with name 'Microsoft.Dynamics.CRM.{name}' was found.")

    def _values(self, col, values) -> list:
        if values is None or values[1] != "array":
            raise bad_request("The PropertyValues parameter must be an array of values.")
        out = []
        for v in values[2]:
            kind = "string" if isinstance(v, str) else "number" if isinstance(v, (int, float)) else "bool"
            out.append(coerce(col, kind, v))
        return out

    def _crm_In(self, expr, col, value, values):
        vals = self._values(col, values)
        if not vals:
            return "0"
        return f"({expr} IN ({', '.join(self._param(v) for v in vals)}))"

    def _crm_NotIn(self, expr, col, value, values):
        vals = self._values(col, values)
        if not vals:
            return "1"
        return f"({expr} NOT IN ({', '.join(self._param(v) for v in vals)}) OR {expr} IS NULL)"

    def _crm_Between(self, expr, col, value, values):
        vals = self._values(col, values)
        if len(vals) != 2:
            raise bad_request("Between requires exactly two PropertyValues.")
        return f"({expr} BETWEEN {self._param(vals[0])} AND {self._param(vals[1])})"

    def _crm_NotBetween(self, expr, col, value, values):
        vals = self._values(col, values)
        if len(vals) != 2:
            raise bad_request("NotBetween requires exactly two PropertyValues.")
        return f"({expr} NOT BETWEEN {self._param(vals[0])} AND {self._param(vals[1])} OR {expr} IS NULL)"

    def _user(self):
        if self.user is None:
            raise bad_request("EqualUserId needs a calling user.")
        return self.user

    def _crm_EqualUserId(self, expr, col, value, values):
        return f"({expr} = {self._param(self._user().user_id)})"

    def _crm_NotEqualUserId(self, expr, col, value, values):
        return f"({expr} <> {self._param(self._user().user_id)} OR {expr} IS NULL)"

    def _crm_EqualBusinessId(self, expr, col, value, values):
        return f"({expr} = {self._param(self._user().business_unit_id)})"

    def _crm_NotEqualBusinessId(self, expr, col, value, values):
        return f"({expr} <> {self._param(self._user().business_unit_id)} OR {expr} IS NULL)"

    def _contain_values(self, expr, col, values, negate):
        vals = self._values(Column("x", "String"), values)
        checks = " OR ".join(f"(',' || {expr} || ',') LIKE {self._param(f'%,{v},%')}" for v in vals) or "0"
        return f"(NOT COALESCE(({checks}), 0))" if negate else f"({checks})"

    def _crm_ContainValues(self, expr, col, value, values):
        return self._contain_values(expr, col, values, False)

    def _crm_DoesNotContainValues(self, expr, col, value, values):
        return self._contain_values(expr, col, values, True)

    def _like(self, expr, value, pattern, negate=False):
        if value is None or value[1] != "string":
            raise bad_request("The PropertyValue parameter must be a string.")
        cond = f"{expr} LIKE {self._param(pattern.format(like_pattern(value[2])))} ESCAPE '\\'"
        return f"(NOT COALESCE({cond}, 0))" if negate else f"({cond})"

    def _crm_Like(self, expr, col, value, values):
        return self._like(expr, value, "{}")

    def _crm_NotLike(self, expr, col, value, values):
        return self._like(expr, value, "{}", True)

    def _crm_Contains(self, expr, col, value, values):
        return self._like(expr, value, "%{}%")

    def _crm_DoesNotContain(self, expr, col, value, values):
        return self._like(expr, value, "%{}%", True)

    def _date_function(self, name, value):
        now = self.now
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        day = timedelta(days=1)
        n = None
        if value is not None:
            if value[1] == "number" or (value[1] == "string" and str(value[2]).lstrip("-").isdigit()):
                n = int(value[2])
        fixed = {
            "Today": (today, today + day), "Yesterday": (today - day, today), "Tomorrow": (today + day, today + 2 * day),
            "Last7Days": (now - 7 * day, now), "Next7Days": (now, now + 7 * day),
        }
        if name in fixed:
            return fixed[name]
        week = today - timedelta(days=(today.weekday() + 1) % 7)      # weeks start on Sunday
        month = today.replace(day=1)
        year = today.replace(month=1, day=1)
        periods = {
            "ThisWeek": (week, week + 7 * day), "LastWeek": (week - 7 * day, week), "NextWeek": (week + 7 * day, week + 14 * day),
            "ThisMonth": (month, _add_months(month, 1)), "LastMonth": (_add_months(month, -1), month),
            "NextMonth": (_add_months(month, 1), _add_months(month, 2)),
            "ThisYear": (year, _add_months(year, 12)), "LastYear": (_add_months(year, -12), year),
            "NextYear": (_add_months(year, 12), _add_months(year, 24)),
        }
        if name in periods:
            return periods[name]
        if name in ("On", "OnOrAfter", "OnOrBefore"):
            if value is None or value[1] not in ("datetime", "string"):
                raise bad_request(f"The function '{name}' requires a date PropertyValue.")
            d = datetime.fromisoformat(iso_datetime(str(value[2]))[:10]).replace(tzinfo=UTC)
            return {"On": (d, d + day), "OnOrAfter": (d, None), "OnOrBefore": (None, d + day)}[name]
        m = re.fullmatch(r"(Last|Next|OlderThan)X(Minutes|Hours|Days|Weeks|Months|Years)", name)
        if m is None:
            return None
        if n is None:
            raise bad_request(f"The function '{name}' requires an integer PropertyValue.")
        unit = m.group(2)

        def shift(t: datetime, k: int) -> datetime:
            if unit == "Months":
                return _add_months(t, k)
            if unit == "Years":
                return _add_months(t, 12 * k)
            return t + timedelta(**{unit.lower(): k})

        if m.group(1) == "OlderThan":
            return (None, shift(now, -n))
        if m.group(1) == "Last":
            start = shift(now, -n)
            if unit not in ("Minutes", "Hours"):
                start = start.replace(hour=0, minute=0, second=0)
            return (start, now + timedelta(seconds=1))
        end = shift(now, n)
        if unit not in ("Minutes", "Hours"):
            end = end.replace(hour=0, minute=0, second=0) + day
        return (now, end)


KNOWN_UNSUPPORTED = frozenset({
    "Above", "AboveOrEqual", "Under", "UnderOrEqual", "NotUnder", "EqualUserOrUserHierarchy",
    "EqualUserOrUserHierarchyAndTeams", "EqualUserOrUserTeams", "EqualUserTeams", "EqualUserLanguage",
    "InFiscalPeriod", "InFiscalPeriodAndYear", "InFiscalYear", "InOrAfterFiscalPeriodAndYear",
    "InOrBeforeFiscalPeriodAndYear", "LastFiscalPeriod", "LastFiscalYear", "LastXFiscalPeriods",
    "LastXFiscalYears", "NextFiscalPeriod", "NextFiscalYear", "NextXFiscalPeriods", "NextXFiscalYears",
    "ThisFiscalPeriod", "ThisFiscalYear"})


def _add_months(t: datetime, k: int) -> datetime:
    total = t.year * 12 + (t.month - 1) + k
    y, m = divmod(total, 12)
    return t.replace(year=y, month=m + 1, day=min(t.day, monthrange(y, m + 1)[1]))


def _fmt(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compile_filter(schema: Schema, table: Table, text: str, *, alias: str = "t0", user: QueryUser | None = None,
                   params: list | None = None) -> tuple[str, list]:
    """$filter text (aliases already substituted) -> (SQL condition on `alias`, parameters)."""
    compiler = FilterCompiler(schema, user)
    if params is not None:
        compiler.params = params
    sql = compiler.compile(parse_filter(text), Scope(table, alias))
    return sql, compiler.params


# ---- $select, $orderby, $expand -----------------------------------------------------------

def parse_select(table: Table, text: str | None) -> list[Column] | None:
    """$select -> columns (None = all). Lookup columns may be named by logical name or `_x_value`."""
    if text is None or text.strip() in ("", "*"):
        return None
    cols = []
    for name in text.split(","):
        name = name.strip()
        col = table.column_for_json(name)
        if col is None:
            raise unknown_property(name, table.logical_name)
        if col not in cols:
            cols.append(col)
    return cols


def parse_orderby(table: Table, text: str | None) -> list[tuple[Column, bool]]:
    """$orderby -> [(column, descending)]."""
    if not text:
        return []
    out = []
    for item in split_top(text):
        parts = item.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise bad_request(f"Syntax error at position {len(parts[0])} in '{text}'.")
        if "/" in parts[0]:
            raise not_supported("Ordering by a related table's column is not supported by the emulator.")
        col = table.column_for_json(parts[0])
        if col is None:
            raise unknown_property(parts[0], table.logical_name)
        out.append((col, len(parts) == 2 and parts[1] == "desc"))
    return out


@dataclass
class Expand:
    nav: str
    ref: bool = False
    select: str | None = None
    filter: str | None = None
    orderby: str | None = None
    top: int | None = None
    expand: list[Expand] = field(default_factory=list)


EXPAND_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$expand"}


def parse_expand(text: str | None) -> list[Expand]:
    if not text:
        return []
    items = []
    for part in split_top(text):
        m = re.fullmatch(r"([A-Za-z_]\w*)(/\$ref)?\s*(?:\((.*)\))?", part, re.S)
        if m is None:
            raise bad_request(f"Syntax error in $expand '{text}'.")
        item = Expand(m.group(1), ref=bool(m.group(2)))
        for opt in split_top(m.group(3) or "", ";"):
            key, _, value = opt.partition("=")
            key = key.strip()
            if key not in EXPAND_OPTIONS:
                raise bad_request(f"The query option '{key}' is not supported inside $expand.",
                                  "0x80060888" if key.startswith("$") else "0x0")
            if key == "$select":
                item.select = value
            elif key == "$filter":
                item.filter = value
            elif key == "$orderby":
                item.orderby = value
            elif key == "$top":
                item.top = parse_top(value)
            else:
                item.expand = parse_expand(value)
        items.append(item)
    return items


def parse_top(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise bad_request(f"Invalid value '{text}' for $top query option found. The $top query option requires "
                          "a non-negative integer value.")
    return int(text)


# ---- keyset paging ------------------------------------------------------------------------

def encode_token(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, width: int) -> list:
    try:
        values = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        raise bad_request("The $skiptoken value is not valid.") from None
    if not isinstance(values, list) or len(values) != width or not all(map(_sql_scalar, values)):
        raise bad_request("The $skiptoken value is not valid.")
    return values


def _sql_scalar(value) -> bool:
    """A value SQLite can bind: tokens are opaque, but a hand-made one must not become a 500."""
    if isinstance(value, int):
        return -(1 << 63) <= value < (1 << 63)
    return value is None or isinstance(value, (str, float))


def keyset_after(keys: list[tuple[str, bool]], last: list, params: list) -> str:
    """SQL condition: rows strictly after `last` in ORDER BY keys (NULLs first ascending).

    All-ascending keys with no NULL in `last` become a row-value comparison `(a, id) > (?, ?)`,
    which SQLite answers with an index seek; the OR-expansion (any other shape) scans the index."""
    if not any(desc for _, desc in keys) and None not in last:
        params.extend(last)
        return f"(({', '.join(expr for expr, _ in keys)}) > ({', '.join('?' * len(keys))}))"
    clauses = []
    for i, (expr, desc) in enumerate(keys):
        value = last[i]
        if value is None:
            after = None if desc else f"{expr} IS NOT NULL"
        else:
            after = f"({expr} < ? OR {expr} IS NULL)" if desc else f"{expr} > ?"
        if after is None:
            continue
        eqs = [f"{keys[j][0]} IS ?" for j in range(i)]
        clause_params = [last[j] for j in range(i)] + ([value] if value is not None else [])
        clauses.append("(" + " AND ".join(eqs + [after]) + ")")
        params.extend(clause_params)
    return "(" + " OR ".join(clauses) + ")" if clauses else "0"
