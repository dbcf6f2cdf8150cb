"""A parsed FetchXML query -> one parameterized SQLite query over the store's tables.

`plan(schema, fetch, user)` checks every entity and attribute name against the schema and
returns a `Plan`: the FROM clause with one JOIN per `<link-entity>` (outer joins keep their own
filters in the ON clause, as Dataverse does; an N:N intersect entity such as `teammembership` is
linkable too), filtering links (`any`, `not any`, `all`, `not all`, `exists`, `in`, as children
of an entity or of a filter) as EXISTS subqueries, the WHERE clause, the output columns with the JSON names they answer to (`name`, `_x_value`,
`alias.attr`, an aggregate's alias) and the ORDER BY keys. Identifiers come only from the schema
and every value from the request is a `?` parameter.

Sort keys always end with the root's primary key (and the primary key of every joined table that
can repeat a root row), so the order is total. `Plan.keyset` says whether those keys identify a
root row on their own (orders on root columns only, every join many-to-one): then the paging
cookie can carry the last row's keys and the next page is a range scan instead of an OFFSET.

Error codes: 0x80041103 (QueryBuilderNoAttribute) and its message are Dataverse's; 0x80041102
for an unknown entity and the wording of the other messages are best guesses (UNCONFIRMED).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from d365_components.emulator.protocol.errors import DataverseError, bad_request
from d365_components.emulator.query.fetchxml_parse import Attribute, Condition, Entity, Fetch, Filter, invalid
from d365_components.emulator.query.fetchxml_plan import (
    Output,
    Plan,
    Scope,
    SortKey,
    balanced,
    sql_datetime,
    sql_text,
    typed,
)
from d365_components.emulator.query.filter_compiler import FilterCompiler, QueryUser
from d365_components.emulator.query.filter_values import like_pattern
from d365_components.emulator.storage.schema import Column, ManyToMany, Schema, Table
from d365_components.emulator.storage.store import q

NO_ATTRIBUTE = "0x80041103"
NO_ENTITY = "0x80041102"
AGGREGATE_LIMIT = 50_000
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})
OPTION_LABEL = "d365_option_label"   # SQL function (table, column, value) -> label; see option_labels()

COMPARE = {"eq": "=", "ne": "<>", "neq": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
DATE_FUNCTIONS = {
    "today": "Today", "yesterday": "Yesterday", "tomorrow": "Tomorrow", "last-seven-days": "Last7Days",
    "next-seven-days": "Next7Days", "this-week": "ThisWeek", "last-week": "LastWeek", "next-week": "NextWeek",
    "this-month": "ThisMonth", "last-month": "LastMonth", "next-month": "NextMonth", "this-year": "ThisYear",
    "last-year": "LastYear", "next-year": "NextYear", "on": "On", "on-or-after": "OnOrAfter",
    "on-or-before": "OnOrBefore",
}
_X_FUNCTION = re.compile(r"(last|next|olderthan)-x-(minutes|hours|days|weeks|months|years)")
DATE_GROUPS = {
    "year": "CAST(strftime('%Y', {e}) AS INTEGER)",
    "quarter": "((CAST(strftime('%m', {e}) AS INTEGER) + 2) / 3)",
    "month": "CAST(strftime('%m', {e}) AS INTEGER)",
    "week": "(CAST(strftime('%W', {e}) AS INTEGER) + 1)",
    "day": "CAST(strftime('%d', {e}) AS INTEGER)",
}


def no_attribute(table: str, name: str) -> DataverseError:
    return bad_request(f"'{table}' entity doesn't contain attribute with Name = '{name}' and NameMapping = 'Logical'.",
                       NO_ATTRIBUTE)


class Planner:
    def __init__(self, schema: Schema, fetch: Fetch, user: QueryUser | None, now: datetime | None = None) -> None:
        self.schema = schema
        self.fetch = fetch
        self.dates = FilterCompiler(schema, user, now)
        self.user = user
        self.scopes: list[Scope] = []
        self.by_alias: dict[str, Scope] = {}
        self.joins: list[str] = []
        self.join_params: list[Any] = []
        self.where: list[str] = []
        self.where_params: list[Any] = []
        self.outputs: list[Output] = []
        self.companions: list[str] = []   # "<expr> AS <label>": target tables of multi-target lookups
        self._names: dict[str, int] = {}
        self._joined = 0

    # ---- names -------------------------------------------------------------------------------

    def table(self, name: str) -> Table:
        table = self.schema.tables.get(name) or self._intersect(name)
        if table is None:
            raise bad_request(f"The entity with a name = '{name}' with namemapping = 'Logical' was not found "
                              "in the MetadataCache.", NO_ENTITY)
        return table

    def _intersect(self, name: str) -> Table | None:
        """An N:N relationship's intersect entity (`teammembership`), linkable like a table: its two
        id columns, and SQLite's rowid standing in for a primary key."""
        for rel in self.schema.relationships.values():
            if isinstance(rel, ManyToMany) and rel.intersect == name:
                table = Table(name, name, "rowid", "rowid", 0)
                table.add(Column("rowid", "BigInt", is_primary_id=True))
                for end in (rel.entity1, rel.entity2):
                    pk = self.schema.tables[end].primary_id
                    table.add(Column(pk, "Uniqueidentifier"))
                return table
        return None

    def column(self, scope: Scope, name: str) -> Column:
        col = scope.table.columns.get(name)
        if col is None:
            raise no_attribute(scope.table.logical_name, name)
        return col

    def scope_for(self, entityname: str | None, default: Scope) -> Scope:
        if entityname is None:
            return default
        scope = self.by_alias.get(entityname)
        if scope is None:
            raise invalid(f"No link-entity with the alias or name '{entityname}' is defined in this query.")
        return scope

    # ---- building --------------------------------------------------------------------------

    def build(self) -> Plan:
        entity = self.fetch.entity
        root = Scope(entity, self.table(entity.name), "t0", None)
        self.scopes.append(root)
        self._links(root)
        for f in entity.filters:
            self.where.append(self.filter_sql(f, root, self.where_params))
        if self.fetch.aggregate:
            return self._aggregate_plan(root)
        return self._row_plan(root)

    def _links(self, parent: Scope) -> None:
        for link in parent.entity.links:
            if link.link_type in ("inner", "outer"):
                self._join(link, parent)
            else:
                self.where.append(self.exists_sql(link, parent, self.where_params))

    def _link_scope(self, link: Entity, parent: Scope, prefix: str | None) -> tuple[Scope, str]:
        """The scope of a link-entity and the SQL condition tying it to its parent."""
        table = self.table(link.name)
        if link.from_ is None or link.to is None:
            raise invalid(f"The link-entity '{link.name}' needs both a 'from' and a 'to' attribute.")
        self._joined += 1
        scope = Scope(link, table, f"l{self._joined}", prefix,
                      to_one=parent.to_one and link.from_ == table.primary_id)
        from_col = self.column(scope, link.from_)
        to_col = self.column(parent, link.to)
        return scope, f"{scope.sql}.{q(from_col.name)} = {parent.sql}.{q(to_col.name)}"

    def _join(self, link: Entity, parent: Scope) -> None:
        prefix = link.alias or self._generated_alias(link.name)
        if prefix in self.by_alias:
            raise invalid(f"The alias '{prefix}' is used by more than one link-entity.")
        scope, on = self._link_scope(link, parent, prefix)
        self.scopes.append(scope)
        self.by_alias[prefix] = scope
        params: list[Any] = []
        conds = [on] + [self.filter_sql(f, scope, params) for f in link.filters]
        join = "LEFT JOIN" if link.link_type == "outer" else "JOIN"
        self.joins.append(f"{join} {q(scope.table.logical_name)} AS {scope.sql} ON {' AND '.join(conds)}")
        self.join_params.extend(params)
        self._links(scope)

    def exists_sql(self, link: Entity, parent: Scope, params: list[Any]) -> str:
        """A filtering link-entity (any, not any, all, not all, exists, in) as an EXISTS test.
        `all` keeps parents whose related rows all match, including parents with none."""
        if link.link_type in ("inner", "outer"):
            raise invalid(f"A link-entity inside a filter needs link-type any, not any, all or not all, "
                          f"not '{link.link_type}' ('{link.name}').")
        if link.attributes or link.all_attributes or link.links or link.orders:
            raise invalid(f"A link-entity of link-type '{link.link_type}' ('{link.name}') can only hold filters.")
        scope, on = self._link_scope(link, parent, None)
        match = " AND ".join(self.filter_sql(f, scope, params) for f in link.filters) or "1"
        related = f"SELECT 1 FROM {q(scope.table.logical_name)} AS {scope.sql} WHERE {on}"
        if link.link_type in ("all", "not all"):
            failing = f"EXISTS ({related} AND NOT COALESCE({match}, 0))"
            return f"NOT {failing}" if link.link_type == "all" else failing
        exists = f"EXISTS ({related} AND {match})"
        return f"NOT {exists}" if link.link_type == "not any" else exists

    def _generated_alias(self, name: str) -> str:
        """Dataverse names an alias-less link-entity itself; `<table><n>` (pattern UNCONFIRMED)."""
        n = self._names[name] = self._names.get(name, 0) + 1
        return f"{name}{n}"

    # ---- rows --------------------------------------------------------------------------------

    def _add(self, scope: Scope, col: Column, key: str, expr: str, **kw: Any) -> Output:
        out = Output(f"c{len(self.outputs)}", key, col, scope.table, expr, scope=scope, **kw)
        self.outputs.append(out)
        if col.type_column and out.kind == "column":
            out.type_label = out.label + "t"
            self.companions.append(f"{scope.sql}.{q(col.type_column)} AS {out.type_label}")
        return out

    def _row_plan(self, root: Scope) -> Plan:
        for scope in self.scopes:
            self._select(scope)
        distinct = self.fetch.distinct
        keys = self._row_keys(root, distinct)
        select = [f"{o.expr} AS {o.label}" for o in self.outputs] + self.companions
        if not distinct:
            has_version = "versionnumber" in root.table.columns
            select.append(f"t0.{q('versionnumber')} AS _version" if has_version else "NULL AS _version")
            select += [f"{k.expr} AS {k.label}" for k in keys]
        keyset = not distinct and all(s.to_one for s in self.scopes) and all(k.root for k in keys)
        columns = [o.key for o in self.outputs if o.table is root.table and "." not in o.key]
        return Plan(root.table, self._from(root), self.join_params, self._where(), self.where_params,
                    ", ".join(select), self.outputs, keys, keyset, False, distinct=distinct, columns=columns)

    def _select(self, scope: Scope) -> None:
        entity, table = scope.entity, scope.table
        root = scope.prefix is None
        if entity.all_attributes:
            attrs = [Attribute(c) for c in table.columns]
        else:
            attrs = list(entity.attributes)
            names = {a.name for a in attrs}
            money = any(table.columns.get(a.name) is not None and table.columns[a.name].type == "Money" for a in attrs)
            if root and money and "transactioncurrencyid" in table.columns and "transactioncurrencyid" not in names:
                attrs.append(Attribute("transactioncurrencyid"))     # Dataverse adds the currency to money
            if root and (not self.fetch.distinct or not attrs) and table.primary_id not in names:
                attrs.append(Attribute(table.primary_id))
        seen = set()
        for attr in attrs:
            if attr.aggregate or attr.groupby:
                raise invalid(f"The attribute '{attr.name}' uses '{'aggregate' if attr.aggregate else 'groupby'}', "
                              "which needs aggregate=\"true\" on the fetch element.")
            col = self.column(scope, attr.name)
            key = attr.alias or (col.json_name if root else f"{scope.prefix}.{col.name}")
            if key not in seen:
                seen.add(key)
                self._add(scope, col, key, f"{scope.sql}.{q(col.name)}",
                          attribute_name=col.name if (attr.alias or not root) else None)

    def _row_keys(self, root: Scope, distinct: bool) -> list[SortKey]:
        keys: list[SortKey] = []

        def key(expr: str, desc: bool, col: Column, on_root: bool) -> None:
            keys.append(SortKey(expr, desc, f"k{len(keys)}", col.name, col, on_root))

        for scope in self.scopes:
            for order in scope.entity.orders:
                if order.alias is not None:
                    out = self._output(order.alias)
                    assert out.scope is not None, "an aliased output has its scope"
                    target, col = out.scope, out.column
                else:
                    target = self.scope_for(order.entityname, scope)
                    assert order.attribute is not None, "an order without an alias names an attribute"
                    col = self.column(target, order.attribute)
                expr, sort_col = self.sort_expr(target, col)
                key(expr, order.descending, sort_col, target is root)
        if distinct:
            for out in self.outputs:
                key(out.expr, False, out.column, out.scope is root)
            return keys
        for scope in self.scopes:
            if scope is root or not scope.to_one:
                key(f"{scope.sql}.{q(scope.table.primary_id)}", False, scope.table.columns[scope.table.primary_id],
                    scope is root)
        return keys

    def sort_expr(self, scope: Scope, col: Column) -> tuple[str, Column]:
        """What Dataverse sorts a column by: a choice by its label, a lookup by the related row's
        primary name (both unless `useraworderby="true"`), anything else by its value."""
        e = f"{scope.sql}.{q(col.name)}"
        if self.fetch.raw_order:
            return e, col
        if col.type in CHOICE_TYPES and col.option_set is not None:
            table, name = sql_text(scope.table.logical_name), sql_text(col.name)
            return f"{OPTION_LABEL}({table}, {name}, {e})", Column(col.name, "String")
        if col.is_lookup:
            names = []
            for target in col.targets:
                t = self.schema.tables.get(target)
                if t is not None:
                    names.append(f"(SELECT n.{q(t.primary_name)} FROM {q(t.logical_name)} AS n "
                                 f"WHERE n.{q(t.primary_id)} = {e})")
            if names:
                return (names[0] if len(names) == 1 else f"COALESCE({', '.join(names)})"), Column(col.name, "String")
        return e, col

    def _output(self, alias: str) -> Output:
        out = next((o for o in self.outputs if o.key == alias), None)
        if out is None:
            raise invalid(f"The order alias '{alias}' does not name an attribute of the query.")
        return out

    # ---- aggregates --------------------------------------------------------------------------

    def _aggregate_plan(self, root: Scope) -> Plan:
        for scope in self.scopes:
            if scope.entity.all_attributes:
                raise invalid("'all-attributes' can't be used in an aggregate query.")
            for attr in scope.entity.attributes:
                self._aggregate_attribute(scope, attr)
        if not self.outputs:
            raise invalid("An aggregate query needs at least one attribute with 'aggregate' or 'groupby'.")
        keys: list[SortKey] = []
        for scope in self.scopes:
            for order in scope.entity.orders:
                if order.alias is None:
                    raise invalid("An aggregate query must order by an attribute's alias (<order alias=\"...\"/>), "
                                  f"not by the attribute '{order.attribute}'.")
                out = self._output(order.alias)
                keys.append(SortKey(out.label, order.descending, out.label, out.key, None))
        groups = [o.label for o in self.outputs if o.kind != "aggregate"]
        groups += [c.rsplit(" AS ", 1)[1] for c in self.companions]
        keys += [SortKey(g, False, g, g, None) for g in groups if all(k.label != g for k in keys)]
        select = [f"{o.expr} AS {o.label}" for o in self.outputs] + self.companions
        return Plan(root.table, self._from(root), self.join_params, self._where(), self.where_params,
                    ", ".join(select), self.outputs, keys, False, True, group_sql=", ".join(groups),
                    columns=[o.key for o in self.outputs])

    def _aggregate_attribute(self, scope: Scope, attr: Attribute) -> None:
        col = self.column(scope, attr.name)
        if not attr.alias:
            raise invalid(f"The attribute '{attr.name}' needs an alias in an aggregate query.")
        if any(o.key == attr.alias for o in self.outputs):
            raise invalid(f"The alias '{attr.alias}' is used by more than one attribute.")
        expr = f"{scope.sql}.{q(col.name)}"
        if attr.groupby:
            if not attr.dategrouping:
                self._add(scope, col, attr.alias, expr)
                return
            if col.type != "DateTime":
                raise invalid(f"dategrouping needs a date and time attribute; '{attr.name}' is {col.type}.")
            if attr.dategrouping.startswith("fiscal"):
                raise bad_request(f"The dategrouping '{attr.dategrouping}' is not supported by the emulator.",
                                  "0x80060888")
            self._add(scope, Column(attr.alias, "Integer"), attr.alias,
                      DATE_GROUPS[attr.dategrouping].format(e=expr), kind="dategroup")
            return
        if attr.aggregate is None:
            raise invalid("An attribute can not be requested when an aggregate operation has been specified and "
                          f"it is neither groupby nor aggregate ('{attr.name}').")
        fn = attr.aggregate
        if fn == "count":
            sql, out_col = "COUNT(*)", Column(attr.alias, "Integer")
        elif fn == "countcolumn":
            sql = f"COUNT({'DISTINCT ' if attr.distinct else ''}{expr})"
            out_col = Column(attr.alias, "Integer")
        else:
            numeric = col.type in ("Integer", "BigInt", "Money", "Decimal", "Double")
            if fn in ("sum", "avg") and not numeric:
                raise invalid(f"The aggregate '{fn}' needs a number attribute; '{attr.name}' is {col.type}.")
            if fn in ("min", "max") and not (numeric or col.type == "DateTime"):
                raise invalid(f"The aggregate '{fn}' needs a number or date attribute; '{attr.name}' is {col.type}.")
            sql = f"{fn.upper()}({expr})"
            out_col = col if fn != "avg" or col.type == "Money" else Column(attr.alias, "Decimal")
        self._add(scope, out_col, attr.alias, sql, kind="aggregate")

    # ---- clauses -------------------------------------------------------------------------------

    def _from(self, root: Scope) -> str:
        return " ".join([f"{q(root.table.logical_name)} AS t0", *self.joins])

    def _where(self) -> str:
        return " AND ".join(self.where)

    def filter_sql(self, f: Filter, scope: Scope, params: list[Any]) -> str:
        parts = []
        for item in f.items:
            if isinstance(item, Filter):
                if item.items:
                    parts.append(self.filter_sql(item, scope, params))
            elif isinstance(item, Entity):
                parts.append(self.exists_sql(item, scope, params))
            else:
                parts.append(self.condition_sql(item, scope, params))
        return balanced(parts, f" {f.type.upper()} ") if parts else "1"

    def condition_sql(self, c: Condition, scope: Scope, params: list[Any]) -> str:
        target = self.scope_for(c.entityname, scope)
        col = self.column(target, c.attribute)
        e = f"{target.sql}.{q(col.name)}"
        op = c.operator
        where = f"{target.table.logical_name}.{col.name}"

        def one() -> str:
            values = ([c.value] if c.value is not None else []) + c.values
            if len(values) != 1:
                raise invalid(f"Condition for attribute '{where}': the operator '{op}' expects exactly one value.")
            return values[0]

        def many(n: int | None = None) -> list[Any]:
            values = c.values or ([c.value] if c.value is not None else [])
            if not values or (n is not None and len(values) != n):
                need = f"exactly {n}" if n else "at least one"
                raise invalid(f"Condition for attribute '{where}': the operator '{op}' expects {need} value(s).")
            return [typed(col, v, where) for v in values]

        def param(value: Any) -> str:
            params.append(value)
            return "?"

        if c.valueof is not None:
            if op not in COMPARE:
                raise invalid(f"Condition for attribute '{where}': 'valueof' works with eq, ne, lt, le, gt, ge only.")
            other_scope, other_name = target, c.valueof
            if "." in other_name:
                alias, other_name = other_name.split(".", 1)
                other_scope = self.scope_for(alias, target)
            other = self.column(other_scope, other_name)
            return f"({e} {COMPARE[op]} {other_scope.sql}.{q(other.name)})"
        if op in COMPARE:
            return f"({e} {COMPARE[op]} {param(typed(col, one(), where))})"
        if op == "null":
            return f"({e} IS NULL)"
        if op == "not-null":
            return f"({e} IS NOT NULL)"
        if op in ("like", "not-like"):
            return f"({e} {'NOT ' if op == 'not-like' else ''}LIKE {param(like_pattern(one()))} ESCAPE '\\')"
        patterns = {"begins-with": "{}%", "not-begin-with": "{}%", "ends-with": "%{}", "not-end-with": "%{}"}
        if op in patterns:
            escaped = re.sub(r"([\\%_])", r"\\\1", one())
            neg = "NOT " if op.startswith("not") else ""
            return f"({e} {neg}LIKE {param(patterns[op].format(escaped))} ESCAPE '\\')"
        if op in ("in", "not-in"):
            marks = ", ".join(param(v) for v in many())
            return f"({e} {'NOT ' if op == 'not-in' else ''}IN ({marks}))"
        if op in ("between", "not-between"):
            lo, hi = many(2)
            return f"({e} {'NOT ' if op == 'not-between' else ''}BETWEEN {param(lo)} AND {param(hi)})"
        if op in ("eq-userid", "ne-userid", "eq-businessid", "ne-businessid"):
            if self.user is None:
                raise invalid(f"The operator '{op}' needs a calling user.")
            value = self.user.user_id if "userid" in op else self.user.business_unit_id
            return f"({e} {'=' if op.startswith('eq') else '<>'} {param(value)})"
        if op in ("contain-values", "not-contain-values"):
            codes = [typed(Column(col.name, "Integer"), v, where) for v in (c.values or [c.value or ""])]
            checks = " OR ".join(f"(',' || {e} || ',') LIKE {param(f'%,{v},%')}" for v in codes)
            return f"(NOT COALESCE(({checks}), 0))" if op.startswith("not") else f"({checks})"
        return self._date_condition(c, col, e, where, one, param)

    def _date_condition(self, c: Condition, col: Column, e: str, where: str, one: Callable[[], str], param: Callable[[Any], str]) -> str:
        op = c.operator
        m = _X_FUNCTION.fullmatch(op.replace("older-than", "olderthan"))
        if op in DATE_FUNCTIONS:
            name = DATE_FUNCTIONS[op]
            value = ("lit", "string", typed(col, one(), where)) if name.startswith("On") else None
        elif m is not None:
            text = one()
            if not re.fullmatch(r"\d+", text.strip()):
                raise invalid(f"Condition for attribute '{where}': the operator '{op}' expects a whole number, "
                              f"not '{text}'.")
            prefix = {"last": "Last", "next": "Next", "olderthan": "OlderThan"}[m.group(1)]
            name, value = f"{prefix}X{m.group(2).capitalize()}", ("lit", "number", int(text))
        else:
            raise invalid(f"The condition operator '{op}' (attribute '{where}') is not valid or not supported "
                          "by the emulator.")
        if col.type != "DateTime":
            raise invalid(f"Condition for attribute '{where}': the operator '{op}' needs a date and time attribute.")
        try:
            date_range = self.dates.date_range(name, value)
            assert date_range is not None, "every FetchXML date operator names a known range"
            lo, hi = date_range
        except (OverflowError, ValueError):
            raise invalid(f"Condition for attribute '{where}': the value '{c.value}' is out of range for "
                          f"the operator '{op}'.") from None
        parts = []
        if lo is not None:
            parts.append(f"{e} >= {param(sql_datetime(lo))}")
        if hi is not None:
            parts.append(f"{e} < {param(sql_datetime(hi))}")
        return "(" + " AND ".join(parts) + ")"




def plan(schema: Schema, fetch: Fetch, user: QueryUser | None = None, now: datetime | None = None) -> Plan:
    """Check `fetch` against the schema and compile it to SQL."""
    return Planner(schema, fetch, user, now).build()
