"""A QueryExpression as the Web API carries it (BulkDelete's `QuerySet`) compiled to a parameterized WHERE.

`{"@odata.type": "Microsoft.Dynamics.CRM.QueryExpression", "EntityName": "account", "Criteria":
{"FilterOperator": "And", "Conditions": [{"AttributeName": "accountid", "Operator": "In", "Values":
[{"Value": "<guid>", "Type": "System.Guid"}]}], "Filters": [...]}}`. Only the root entity's criteria
are modelled; LinkEntities, an unknown operator or column answer 400, never a broader delete.
"""

from __future__ import annotations

from typing import Any

from d365_components.emulator.protocol.errors import INVALID_ARGUMENT, QUERY_NOT_SUPPORTED, bad_request
from d365_components.emulator.storage.schema import Schema, Table
from d365_components.emulator.storage.store import q

COMPARISONS = {"Equal": "=", "NotEqual": "!=", "GreaterThan": ">", "LessThan": "<", "GreaterEqual": ">=",
               "LessEqual": "<="}
GUID_TYPES = frozenset({"Uniqueidentifier", "Lookup", "Customer", "Owner"})


def compile_query(schema: Schema, query: Any) -> tuple[Table, str, list[Any]]:
    """-> (table, WHERE sql over alias t0 ('' for every row), params)."""
    if not isinstance(query, dict):
        raise bad_request("A QueryExpression object was expected.", INVALID_ARGUMENT)
    name = query.get("EntityName")
    table = schema.tables.get(name) if isinstance(name, str) else None
    if table is None:
        raise bad_request(f"The entity with a name = '{name}' was not found in the MetadataCache.", INVALID_ARGUMENT)
    if query.get("LinkEntities"):
        raise bad_request("LinkEntities in a BulkDelete query are not supported by the emulator.", QUERY_NOT_SUPPORTED)
    params: list[Any] = []
    criteria = query.get("Criteria")
    where = _filter(table, criteria, params) if criteria else ""
    return table, where, params


def _filter(table: Table, f: Any, params: list[Any]) -> str:
    if not isinstance(f, dict):
        raise bad_request("A FilterExpression object was expected.", INVALID_ARGUMENT)
    op = f.get("FilterOperator", "And")
    if op not in ("And", "Or"):
        raise bad_request(f"'{op}' is not a valid LogicalOperator.", INVALID_ARGUMENT)
    parts = [_condition(table, c, params) for c in f.get("Conditions") or []]
    parts += [p for p in (_filter(table, sub, params) for sub in f.get("Filters") or []) if p]
    return "(" + f" {op.upper()} ".join(parts) + ")" if parts else ""


def _values(condition: dict[str, Any], guid: bool) -> list[Any]:
    out = []
    for item in condition.get("Values") or []:
        value = item.get("Value") if isinstance(item, dict) else item
        out.append(value.lower() if guid and isinstance(value, str) else value)
    return out


def _condition(table: Table, c: Any, params: list[Any]) -> str:
    if not isinstance(c, dict):
        raise bad_request("A ConditionExpression object was expected.", INVALID_ARGUMENT)
    name = c.get("AttributeName")
    col = table.columns.get(name) if isinstance(name, str) else None
    if col is None:
        raise bad_request(f"'{table.logical_name}' entity doesn't contain attribute with Name = '{name}'.",
                          INVALID_ARGUMENT)
    expr = f"t0.{q(col.name)}"
    op = c.get("Operator")
    values = _values(c, col.type in GUID_TYPES)
    if op in ("Null", "NotNull"):
        return f"{expr} IS {'NOT ' if op == 'NotNull' else ''}NULL"
    if op in COMPARISONS or op in ("Like", "NotLike", "BeginsWith", "EndsWith", "Contains"):
        if len(values) != 1:
            raise bad_request(f"The ConditionOperator.{op} requires 1 value, not {len(values)}.", INVALID_ARGUMENT)
        value = values[0]
        if op in COMPARISONS:
            params.append(value)
            return f"{expr} {COMPARISONS[op]} ?"
        pattern = {"BeginsWith": f"{value}%", "EndsWith": f"%{value}", "Contains": f"%{value}%"}.get(op, value)
        params.append(pattern)
        return f"{expr} {'NOT ' if op == 'NotLike' else ''}LIKE ?"
    if op in ("In", "NotIn"):
        if not values:
            raise bad_request(f"The ConditionOperator.{op} requires at least 1 value.", INVALID_ARGUMENT)
        params.extend(values)
        return f"{expr} {'NOT ' if op == 'NotIn' else ''}IN ({', '.join('?' * len(values))})"
    if op == "Between":
        if len(values) != 2:
            raise bad_request("The ConditionOperator.Between requires 2 values.", INVALID_ARGUMENT)
        params.extend(values)
        return f"{expr} BETWEEN ? AND ?"
    raise bad_request(f"The condition operator '{op}' is not supported by the emulator.", QUERY_NOT_SUPPORTED)
