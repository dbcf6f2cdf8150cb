"""$filter tuples compiled to parameterized SQL against the schema. Columns become quoted identifiers from the schema and every value from the URL a `?` parameter, so no user text is ever spliced into SQL. Lookup paths (`primarycontactid/fullname`) become scalar subqueries, `any`/`all` EXISTS over the related table (or the intersect table for N:N), and the `Microsoft.Dynamics.CRM.*` query functions date ranges, IN lists and the like."""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from d365_components.emulator.protocol.errors import bad_request, not_supported, unknown_property
from d365_components.emulator.query import complexity
from d365_components.emulator.query.fetchxml_plan import balanced
from d365_components.emulator.query.filter_grammar import FilterNode, parse_filter
from d365_components.emulator.query.filter_values import (
    OP_NAMES,
    SQL_OPS,
    coerce,
    iso_datetime,
    like_pattern,
    sql_number,
)
from d365_components.emulator.storage.schema import Column, Schema, Table
from d365_components.emulator.storage.store import q

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

    def __init__(self, schema: Schema, user: QueryUser | None = None, now: datetime | None = None) -> None:
        self.schema = schema
        self.user = user
        self.now = now or datetime.now(UTC).replace(microsecond=0)
        self.params: list[Any] = []
        self._aliases = 0

    def new_alias(self, prefix: str = "t") -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def compile(self, node: FilterNode, scope: Scope, vars: dict[str, Scope] | None = None) -> str:
        vars = vars or {}
        kind = node[0]
        if kind in ("or", "and"):      # a chain grouped a few at a time: nesting each pair overflows SQLite's parser
            return balanced([self.compile(n, scope, vars) for n in _chain(node)], f" {kind.upper()} ")
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

    def _param(self, value: Any) -> str:
        self.params.append(sql_number(value))
        return "?"

    def _compare(self, op: str, left: FilterNode, right: FilterNode, scope: Scope, vars: dict[str, Scope]) -> str:
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

    def _func(self, name: str, args: list[FilterNode], scope: Scope, vars: dict[str, Scope]) -> str:
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

    def _lambda(self, node: FilterNode, scope: Scope, vars: dict[str, Scope]) -> str:
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

    def _crm(self, name: str, args: dict[str, FilterNode], scope: Scope, vars: dict[str, Scope]) -> str:
        prop = args.get("PropertyName")
        if prop is None or prop[1] not in ("string", "enum"):
            raise bad_request(f"The function '{name}' requires a PropertyName parameter.")
        expr, col = self.resolve(prop[2].split("/"), scope, vars)
        value = args.get("PropertyValue")
        values = args.get("PropertyValues")
        handler = getattr(self, "_crm_" + name, None)
        if handler is not None:
            sql: str = handler(expr, col, value, values)
            return sql
        try:
            date_range = self.date_range(name, value)
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

    def _values(self, col: Column, values: FilterNode | None) -> list[Any]:
        if values is None or values[1] != "array":
            raise bad_request("The PropertyValues parameter must be an array of values.")
        out = []
        for v in values[2]:
            kind = "string" if isinstance(v, str) else "number" if isinstance(v, (int, float)) else "bool"
            out.append(coerce(col, kind, v))
        return out

    def _crm_In(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        vals = self._values(col, values)
        if not vals:
            return "0"
        return f"({expr} IN ({', '.join(self._param(v) for v in vals)}))"

    def _crm_NotIn(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        vals = self._values(col, values)
        if not vals:
            return "1"
        return f"({expr} NOT IN ({', '.join(self._param(v) for v in vals)}) OR {expr} IS NULL)"

    def _crm_Between(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        vals = self._values(col, values)
        if len(vals) != 2:
            raise bad_request("Between requires exactly two PropertyValues.")
        return f"({expr} BETWEEN {self._param(vals[0])} AND {self._param(vals[1])})"

    def _crm_NotBetween(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        vals = self._values(col, values)
        if len(vals) != 2:
            raise bad_request("NotBetween requires exactly two PropertyValues.")
        return f"({expr} NOT BETWEEN {self._param(vals[0])} AND {self._param(vals[1])} OR {expr} IS NULL)"

    def _user(self) -> QueryUser:
        if self.user is None:
            raise bad_request("EqualUserId needs a calling user.")
        return self.user

    def _crm_EqualUserId(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return f"({expr} = {self._param(self._user().user_id)})"

    def _crm_NotEqualUserId(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return f"({expr} <> {self._param(self._user().user_id)} OR {expr} IS NULL)"

    def _crm_EqualBusinessId(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return f"({expr} = {self._param(self._user().business_unit_id)})"

    def _crm_NotEqualBusinessId(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return f"({expr} <> {self._param(self._user().business_unit_id)} OR {expr} IS NULL)"

    def _contain_values(self, expr: str, col: Column, values: FilterNode | None, negate: bool) -> str:
        vals = self._values(Column("x", "String"), values)
        checks = " OR ".join(f"(',' || {expr} || ',') LIKE {self._param(f'%,{v},%')}" for v in vals) or "0"
        return f"(NOT COALESCE(({checks}), 0))" if negate else f"({checks})"

    def _crm_ContainValues(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return self._contain_values(expr, col, values, False)

    def _crm_DoesNotContainValues(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return self._contain_values(expr, col, values, True)

    def _like(self, expr: str, value: FilterNode, pattern: str, negate: bool = False) -> str:
        if value is None or value[1] != "string":
            raise bad_request("The PropertyValue parameter must be a string.")
        cond = f"{expr} LIKE {self._param(pattern.format(like_pattern(value[2])))} ESCAPE '\\'"
        return f"(NOT COALESCE({cond}, 0))" if negate else f"({cond})"

    def _crm_Like(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return self._like(expr, value, "{}")

    def _crm_NotLike(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return self._like(expr, value, "{}", True)

    def _crm_Contains(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return self._like(expr, value, "%{}%")

    def _crm_DoesNotContain(self, expr: str, col: Column, value: FilterNode, values: FilterNode | None) -> str:
        return self._like(expr, value, "%{}%", True)

    def date_range(self, name: str, value: FilterNode | None) -> tuple[datetime | None, datetime | None] | None:
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


def _chain(node: FilterNode) -> list[FilterNode]:
    """The operands of a chain of one operator (`a or b or c`), left to right, found without recursion."""
    operands: list[FilterNode] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if item[0] == node[0]:
            stack += [item[2], item[1]]
        else:
            operands.append(item)
    return operands


def _add_months(t: datetime, k: int) -> datetime:
    total = t.year * 12 + (t.month - 1) + k
    y, m = divmod(total, 12)
    return t.replace(year=y, month=m + 1, day=min(t.day, monthrange(y, m + 1)[1]))


def _fmt(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compile_filter(schema: Schema, table: Table, text: str, *, alias: str = "t0", user: QueryUser | None = None,
                   params: list[Any] | None = None) -> tuple[str, list[Any]]:
    """$filter text (aliases already substituted) -> (SQL condition on `alias`, parameters)."""
    complexity.check_filter(text)
    compiler = FilterCompiler(schema, user)
    if params is not None:
        compiler.params = params
    try:
        sql = compiler.compile(parse_filter(text), Scope(table, alias))
    except RecursionError:
        raise complexity.too_deep() from None
    return sql, compiler.params
