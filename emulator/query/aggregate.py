"""`$apply` on entity sets (reference §3.7): `filter(...)`, `groupby((...),aggregate(...))`,
`aggregate(col with sum|average|min|max|countdistinct as alias, $count as alias)`.

One SQL query per request: transformations become WHERE, GROUP BY and aggregate expressions over
the table (lookup paths such as `primarycontactid/fullname` become scalar subqueries and answer
as `<table>_<column>`, e.g. `contact_fullname`). Like Dataverse, at most 50,000 rows are
aggregated; more is 0x8004E023.
"""

from __future__ import annotations

import re
from typing import Any

from d365_components.emulator.protocol.annotations import FORMATTED
from d365_components.emulator.protocol.errors import DataverseError, bad_request, not_supported
from d365_components.emulator.protocol.literals import split_top
from d365_components.emulator.query.filter_compiler import FilterCompiler, QueryUser, Scope
from d365_components.emulator.query.filter_grammar import parse_filter, substitute_aliases
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Column, Table

ROW_LIMIT = 50_000
FUNCTIONS = {"sum": "SUM", "average": "AVG", "min": "MIN", "max": "MAX", "countdistinct": "COUNT(DISTINCT {})"}
_AGGREGATE = re.compile(r"^(?:(\$count)|([\w/]+)\s+with\s+(\w+))\s+as\s+(\w+)$")


def apply(ctx: Ctx, table: Table) -> Reply:
    for name in ctx.query:
        if name in ("$select", "$expand", "$orderby", "$top", "$skiptoken", "$count"):
            raise not_supported(f"The query option {name} cannot be combined with $apply.")
        if name.startswith("$") and name not in ("$apply", "$filter"):
            raise not_supported(f"The query parameter {name} is not supported")
    aliases = {k: v for k, v in ctx.query.items() if k.startswith("@")}
    compiler = FilterCompiler(ctx.schema, QueryUser(ctx.user_id, ctx.business_unit_id))
    scope = Scope(table, "t0")
    where: list[str] = []
    if ctx.query.get("$filter"):
        where.append(compiler.compile(parse_filter(substitute_aliases(ctx.query["$filter"], aliases)), scope))
    groups: list[tuple[str, str, Column]] = []          # (sql, json name, column)
    aggregates: list[tuple[str, str, Column | None]] = []
    steps = split_top(ctx.query["$apply"], "/")
    for step in steps:
        m = re.fullmatch(r"(\w+)\((.*)\)", step.strip(), re.S)
        if m is None:
            raise bad_request(f"Syntax error in $apply '{ctx.query['$apply']}'.")
        kind, body = m.groups()
        if kind == "filter":
            if groups or aggregates:
                raise not_supported("filter() after groupby() or aggregate() is not supported.")
            where.append(compiler.compile(parse_filter(substitute_aliases(body, aliases)), scope))
        elif kind == "groupby":
            parts = split_top(body)
            if not parts or not (parts[0].startswith("(") and parts[0].endswith(")")):
                raise bad_request("groupby() needs a parenthesized list of properties.")
            for path in split_top(parts[0][1:-1]):
                groups.append(_group(compiler, scope, path))
            for extra in parts[1:]:
                am = re.fullmatch(r"aggregate\((.*)\)", extra, re.S)
                if am is None:
                    raise bad_request(f"Unexpected '{extra}' inside groupby().")
                aggregates.extend(_aggregates(compiler, scope, am.group(1)))
        elif kind == "aggregate":
            aggregates.extend(_aggregates(compiler, scope, body))
        else:
            raise not_supported(f"The $apply transformation '{kind}' is not supported.")
    if not groups and not aggregates:
        raise bad_request("$apply needs groupby() or aggregate().")
    where_sql = " AND ".join(where)
    params = compiler.params
    if ctx.store.count(table.logical_name, where_sql, params, cap=ROW_LIMIT + 1) > ROW_LIMIT:
        raise DataverseError(400, "0x8004E023", "AggregateQueryRecordLimit exceeded. Cannot perform this operation.")
    select = [f"{sql} AS g{i}" for i, (sql, _, _) in enumerate(groups)]
    select += [f"{sql} AS a{i}" for i, (sql, _, _) in enumerate(aggregates)]
    group_by = ", ".join(sql for sql, _, _ in groups)
    sql = f'SELECT {", ".join(select)} FROM "{table.logical_name}" AS t0'
    if where_sql:
        sql += f" WHERE {where_sql}"
    if group_by:
        sql += f" GROUP BY {group_by} ORDER BY {group_by}"
    rows = ctx.store.execute(sql, params)
    annotate = ctx.wants(FORMATTED)
    value = []
    for row in rows:
        item = {}
        for i, (_, name, col) in enumerate(groups):
            v = _typed(col, row[f"g{i}"])
            if annotate and v is not None and col.option_set is not None:
                item[f"{name}@{FORMATTED}"] = col.option_set.label(int(v))
            item[name] = v
        for i, (_, name, agg_col) in enumerate(aggregates):
            v = row[f"a{i}"]
            v = _typed(agg_col, v) if agg_col is not None and v is not None and agg_col.type not in ("Integer", "BigInt") else v
            if annotate and v is not None:
                item[f"{name}@{FORMATTED}"] = f"{v:,}" if isinstance(v, int) else f"{v:,.2f}"
            item[name] = v
        value.append(item)
    headers = {"Preference-Applied": ",".join(dict.fromkeys(ctx.applied))} if ctx.applied else {}
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}", "value": value}, headers)


def _group(compiler: FilterCompiler, scope: Scope, path: str) -> tuple[str, str, Column]:
    names = path.strip().split("/")
    sql, col = compiler.resolve(names, scope, {})
    if col.type == "DateTime":
        raise not_supported("groupby on a datetime column is not supported; use FetchXML dategrouping.")
    if len(names) > 1:
        return sql, f"{col.table}_{col.name}", col
    return sql, col.json_name, col


def _aggregates(compiler: FilterCompiler, scope: Scope, body: str) -> list[tuple[str, str, Column | None]]:
    out: list[tuple[str, str, Column | None]] = []
    for item in split_top(body):
        m = _AGGREGATE.fullmatch(item.strip())
        if m is None:
            raise bad_request(f"Syntax error in aggregate expression '{item}'.")
        count, path, function, alias = m.groups()
        if count:
            out.append(("COUNT(*)", alias, None))
            continue
        if function not in FUNCTIONS:
            raise not_supported(f"The aggregate function '{function}' is not supported.")
        sql, col = compiler.resolve(path.split("/"), scope, {})
        template = FUNCTIONS[function]
        expr = template.format(sql) if "{}" in template else f"{template}({sql})"
        out.append((expr, alias, col if function != "countdistinct" else None))
    return out


def _typed(col: Column, v: Any) -> Any:
    if v is None:
        return None
    if col.type == "Boolean":
        return bool(v)
    if col.type in ("Money", "Decimal", "Double"):
        return float(v)
    return v
