"""OData ``$filter`` text built from values, so user data can never change a filter's meaning.

Flows often filter by what a user typed (``name eq '<input>'``). Pasting input into the text lets a
quote end the literal (``O'Brien``) or add conditions (``x' or name ne 'y``). :func:`build_filter`
writes every value through :func:`~d365_components.connections.odata.quote` (strings single-quoted
with ``''`` escaping; GUIDs, numbers, booleans and ISO dates bare), checks column names, and, for
``contains``/``startswith``/``endswith``, escapes the SQL wildcards Dataverse honours inside them
(``%``, ``_``, ``[``), so ``50%`` matches the text ``50%`` and nothing else.

    >>> build_filter([{"column": "name", "operator": "eq", "value": "O'Brien"},
    ...               {"column": "revenue", "operator": "gt", "value": 1000}])
    "name eq 'O''Brien' and revenue gt 1000"
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ConfigDict

from d365_components import Action, Context, InputField, InputModel
from d365_components.connections.odata import RawLiteral, is_guid, quote
from d365_components.conventions import NAME, NAME_PATTERN
from d365_components.errors import FieldError, InputValidationError

__all__ = ["OPERATORS", "BuildFilterExpression", "FilterCondition", "FilterError", "build_filter"]

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
FUNCTIONS = ("contains", "startswith", "endswith")
OPERATORS = (*COMPARISONS, *FUNCTIONS, "in", "null", "notnull")
TYPES = ("auto", "string", "number", "boolean", "guid", "date", "datetime")
OPERATOR_LABELS = {
    "eq": "equals", "ne": "does not equal", "gt": "greater than", "ge": "greater than or equal to",
    "lt": "less than", "le": "less than or equal to", "contains": "contains", "startswith": "starts with",
    "endswith": "ends with", "in": "is one of", "null": "is empty", "notnull": "is not empty",
}
TYPE_LABELS = {
    "auto": "Automatic", "string": "Text", "number": "Number", "boolean": "Yes/No", "guid": "GUID",
    "date": "Date", "datetime": "Date and time",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})$")
_WILDCARDS = re.compile(r"([%_\[])")


class FilterError(ValueError):
    """A condition that cannot be written; ``path`` locates it (``/0/value``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path
        self.reason = message


def build_filter(conditions: list[dict[str, Any]] | dict[str, Any], *, join: str = "and") -> str:
    """A ``$filter`` expression from conditions joined by ``join`` (``and``/``or``).

    A condition is ``{"column", "operator", "value", "type"?}`` with an operator from
    :data:`OPERATORS`; ``in`` takes a list; ``null``/``notnull`` take no value. ``type`` (default
    ``auto``) forces how a value is written, e.g. ``string`` for text that looks like a GUID or a
    date. A group ``{"conditions": [...], "join": "or"}`` nests. An empty list gives ``""``.

    Raises:
        FilterError: with the path of the first bad condition.
    """
    if isinstance(conditions, dict):
        conditions = [conditions]
    if not isinstance(conditions, list):
        raise FilterError("", "conditions must be a list of conditions")
    return _group(conditions, join, "")


def _group(conditions: list[Any], join: Any, path: str) -> str:
    if join not in ("and", "or"):
        raise FilterError(f"{path}/join" if path else "", f"join must be 'and' or 'or', not {join!r}")
    parts = []
    for index, condition in enumerate(conditions):
        where = f"{path}/{index}"
        if not isinstance(condition, dict):
            raise FilterError(where, "a condition must be an object with column, operator and value")
        if "conditions" in condition:
            extra = set(condition) - {"conditions", "join"}
            if extra:
                raise FilterError(where, f"a group has only conditions and join, not {sorted(extra)}")
            inner = condition["conditions"]
            if not isinstance(inner, list) or not inner:
                raise FilterError(f"{where}/conditions", "a group needs a non-empty list of conditions")
            parts.append(f"({_group(inner, condition.get('join', 'and'), f'{where}/conditions')})")
        else:
            parts.append(_condition(condition, where))
    return f" {join} ".join(parts)


def _condition(condition: dict[str, Any], where: str) -> str:
    extra = set(condition) - {"column", "operator", "value", "type"}
    if extra:
        raise FilterError(where, f"unknown keys {sorted(extra)} (a condition has column, operator, value, type)")
    column = condition.get("column")
    if not isinstance(column, str) or not NAME.match(column):
        raise FilterError(f"{where}/column", f"{column!r} is not a column name (letters, digits and _)")
    operator = condition.get("operator", "eq")
    if operator not in OPERATORS:
        raise FilterError(f"{where}/operator", f"{operator!r} is not one of {', '.join(OPERATORS)}")
    kind = condition.get("type", "auto") or "auto"
    if kind not in TYPES:
        raise FilterError(f"{where}/type", f"{kind!r} is not one of {', '.join(TYPES)}")
    value = condition.get("value")
    if operator in ("null", "notnull"):
        if value is not None:
            raise FilterError(f"{where}/value", f"'{operator}' takes no value")
        return f"{column} {'eq' if operator == 'null' else 'ne'} null"
    if operator == "in":
        if not isinstance(value, list) or not value:
            raise FilterError(f"{where}/value", "'in' needs a non-empty list of values")
        literals = [_literal(v, kind, f"{where}/value/{i}") for i, v in enumerate(value)]
        if len(literals) == 1:
            return f"{column} eq {literals[0]}"
        return "(" + " or ".join(f"{column} eq {lit}" for lit in literals) + ")"
    if operator in FUNCTIONS:
        if not isinstance(value, str) or not value:
            raise FilterError(f"{where}/value", f"'{operator}' needs non-empty text")
        literal = quote(_WILDCARDS.sub(r"[\1]", value))
        return f"{operator}({column},{literal})"
    if value is None:
        if operator in ("eq", "ne"):
            return f"{column} {operator} null"
        raise FilterError(f"{where}/value", f"'{operator}' needs a value")
    return f"{column} {operator} {_literal(value, kind, f'{where}/value')}"


def _literal(value: Any, kind: str, where: str) -> str:
    """One value as an OData literal, written as ``kind`` says (``auto``: by its shape)."""
    if isinstance(value, dict | list):
        raise FilterError(where, "a value must be text, a number, true/false or null")
    try:
        if kind == "string":
            return "'" + str(value).replace("'", "''") + "'"
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            if isinstance(value, str):
                value = int(value) if re.fullmatch(r"[+-]?\d+", value.strip()) else float(value)
            return quote(value)
        if kind == "boolean":
            if isinstance(value, bool):
                return quote(value)
            if str(value).lower() in ("true", "false"):
                return str(value).lower()
            raise ValueError
        if kind == "guid":
            if not is_guid(value):
                raise ValueError
            return quote(str(value))
        if kind in ("date", "datetime") or (kind == "auto" and isinstance(value, str)):
            return _temporal(value, kind)
        return quote(value)
    except (TypeError, ValueError):
        raise FilterError(where, f"{value!r} is not a {kind} value") from None


def _temporal(value: Any, kind: str) -> str:
    text = str(value)
    if kind in ("auto", "date") and _DATE.match(text):
        dt.date.fromisoformat(text)
        return RawLiteral(text)
    if kind in ("auto", "datetime") and _DATETIME.match(text):
        dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return RawLiteral(text)
    if kind != "auto":
        raise ValueError
    return quote(text)  # GUIDs bare, other text quoted


# -- the action -----------------------------------------------------------------------------------


class FilterCondition(InputModel):
    """One condition of a filter."""

    model_config = ConfigDict(title="Condition")

    column: str = InputField(title="Column", description="The column's logical name.", pattern=NAME_PATTERN, examples=["name"])
    operator: Literal[OPERATORS] = InputField(  # type: ignore[valid-type]
        "eq", title="Operator", description="eq ne gt ge lt le, contains startswith endswith, in (a list), null, notnull.",
        widget="dropdown", enum_labels=OPERATOR_LABELS,
    )
    value: Any = InputField(
        None, title="Value",
        description="The value to compare with: text, a number, true/false or a date (a list for in; none for null/notnull).",
        examples=["Contoso", 1000, ["A-1", "A-2"]], widget="any",
    )
    type: Literal[TYPES] = InputField(  # type: ignore[valid-type]
        "auto", title="Value type", description="How to write the value; auto guesses (GUIDs and ISO dates bare). Use string for text that only looks like a GUID or date.",
        widget="dropdown", enum_labels=TYPE_LABELS,
    )


def conditions_field(**overrides: Any) -> Any:
    return InputField(
        overrides.pop("default", ...),
        title=overrides.pop("title", "Conditions"),
        description=overrides.pop(
            "description",
            "Conditions on column values; each value is quoted safely, so text from users cannot change the filter.",
        ),
        examples=[[{"column": "name", "operator": "eq", "value": "O'Brien"}, {"column": "revenue", "operator": "gt", "value": 1000}]],
        **overrides,
    )


def filter_from_inputs(conditions: Sequence[FilterCondition], join: str, pointer: str) -> str:
    """:func:`build_filter` for typed inputs; a bad condition becomes a field error under ``pointer``."""
    try:
        return build_filter([c.model_dump(exclude_none=False) for c in conditions], join=join)
    except FilterError as exc:
        raise InputValidationError([FieldError(f"{pointer}{exc.path}", exc.reason)]) from None


class BuildFilterExpression(Action):
    """Build an OData filter from conditions, quoting every value so user text cannot change its meaning."""

    key = "dynamics365.build_filter_expression"
    needs_connection = False  # pure text work: runs in a form preview, offline
    label = "Build Filter Expression"
    group = "Queries"

    class Inputs(InputModel):
        conditions: list[FilterCondition] = conditions_field(min_length=1)
        join: Literal["and", "or"] = InputField(
            "and", title="Join", description="Match all conditions (and) or any (or).", widget="dropdown",
            enum_labels={"and": "All conditions (and)", "or": "Any condition (or)"},
        )

    output_schema = {
        "type": "object",
        "required": ["filterExpression"],
        "properties": {"filterExpression": {"type": "string", "description": "The $filter text, for Query Entities."}},
    }
    example = {"filterExpression": "name eq 'O''Brien' and revenue gt 1000"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        return {"filterExpression": filter_from_inputs(inputs.conditions, inputs.join, "/conditions")}
