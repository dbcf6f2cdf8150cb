"""The filter builder: every operator, groups, errors with paths, a property test that a value
never escapes its literal, and the same quoting holding up against the emulator."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d365_components.actions.filters import FilterError, build_filter
from d365_components.connections.odata import is_guid
from d365_components.errors import InputValidationError
from d365_components.runtime import invoke


def _literal_end(text: str, start: int) -> int:
    """Index of the quote that closes the OData string literal opening at ``start``."""
    assert text[start] == "'"
    i = start + 1
    while i < len(text):
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                i += 2
                continue
            return i
        i += 1
    raise AssertionError(f"unterminated literal in {text!r}")


@pytest.mark.parametrize(
    "condition, expected",
    [
        ({"column": "name", "operator": "eq", "value": "O'Brien"}, "name eq 'O''Brien'"),
        ({"column": "name", "value": "plain"}, "name eq 'plain'"),
        ({"column": "revenue", "operator": "ge", "value": 1000}, "revenue ge 1000"),
        ({"column": "revenue", "operator": "lt", "value": 2.5}, "revenue lt 2.5"),
        ({"column": "creditonhold", "operator": "ne", "value": True}, "creditonhold ne true"),
        ({"column": "_parentcustomerid_value", "value": "{7EB682F1-CA75-E511-80D4-00155D2A68D1}"}, "_parentcustomerid_value eq 7eb682f1-ca75-e511-80d4-00155d2a68d1"),
        ({"column": "createdon", "operator": "gt", "value": "2024-05-01T08:00:00Z"}, "createdon gt 2024-05-01T08:00:00Z"),
        ({"column": "birthdate", "operator": "le", "value": "2024-05-01"}, "birthdate le 2024-05-01"),
        ({"column": "accountnumber", "value": "2024-05-01", "type": "string"}, "accountnumber eq '2024-05-01'"),
        ({"column": "numberofemployees", "value": "12", "type": "number"}, "numberofemployees eq 12"),
        ({"column": "name", "operator": "contains", "value": "50%_off[1]"}, "contains(name,'50[%][_]off[[]1]')"),
        ({"column": "name", "operator": "startswith", "value": "Con"}, "startswith(name,'Con')"),
        ({"column": "name", "operator": "endswith", "value": "Inc."}, "endswith(name,'Inc.')"),
        ({"column": "statecode", "operator": "in", "value": [0, 1]}, "(statecode eq 0 or statecode eq 1)"),
        ({"column": "statecode", "operator": "in", "value": [0]}, "statecode eq 0"),
        ({"column": "telephone1", "operator": "null"}, "telephone1 eq null"),
        ({"column": "telephone1", "operator": "notnull"}, "telephone1 ne null"),
        ({"column": "telephone1", "operator": "ne", "value": None}, "telephone1 ne null"),
    ],
)
def test_operators(condition, expected):
    assert build_filter(condition) == expected


def test_groups_and_join():
    text = build_filter(
        [
            {"column": "statecode", "value": 0},
            {"conditions": [{"column": "name", "operator": "startswith", "value": "A"}, {"column": "revenue", "operator": "gt", "value": 5}], "join": "or"},
        ]
    )
    assert text == "statecode eq 0 and (startswith(name,'A') or revenue gt 5)"
    assert build_filter([{"column": "a", "value": 1}, {"column": "b", "value": 2}], join="or") == "a eq 1 or b eq 2"
    assert build_filter([]) == ""


@pytest.mark.parametrize(
    "conditions, path",
    [
        ([{"column": "name or 1 eq 1", "value": "x"}], "/0/column"),
        ([{"column": "name", "operator": "like", "value": "x"}], "/0/operator"),
        ([{"column": "name", "operator": "in", "value": "x"}], "/0/value"),
        ([{"column": "name", "operator": "null", "value": "x"}], "/0/value"),
        ([{"column": "name", "value": {"a": 1}}], "/0/value"),
        ([{"column": "n", "value": "ten", "type": "number"}], "/0/value"),
        ([{"column": "n", "value": "nope", "type": "guid"}], "/0/value"),
        ([{"column": "n", "value": float("nan")}], "/0/value"),
        ([{"column": "n", "operator": "gt"}], "/0/value"),
        ([{"column": "n", "value": 1, "colour": "red"}], "/0"),
        ([{"column": "a", "value": 1}, {"conditions": [{"column": "b", "operator": "in", "value": [1, [2]]}]}], "/1/conditions/0/value/1"),
        ([{"column": "a", "value": 1}, {"conditions": []}], "/1/conditions"),
    ],
)
def test_bad_conditions_name_their_path(conditions, path):
    with pytest.raises(FilterError) as caught:
        build_filter(conditions)
    assert caught.value.path == path


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_a_string_value_never_escapes_its_literal(value):
    text = build_filter({"column": "name", "value": value, "type": "string"})
    prefix = "name eq "
    assert text.startswith(prefix)
    assert _literal_end(text, len(prefix)) == len(text) - 1
    assert text[len(prefix) + 1 : -1].replace("''", "'") == value


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1), st.sampled_from(["contains", "startswith", "endswith"]))
def test_a_search_value_never_escapes_its_literal(value, operator):
    text = build_filter({"column": "name", "operator": operator, "value": value})
    start = len(operator) + len("(name,")
    assert _literal_end(text, start) == len(text) - 2 and text.endswith("')")
    inner = text[start + 1 : -2].replace("''", "'")
    assert inner.replace("[%]", "%").replace("[_]", "_").replace("[[]", "[") == value


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_auto_values_are_quoted_unless_guid_or_date(value):
    text = build_filter({"column": "name", "value": value})
    literal = text[len("name eq "):]
    if literal.startswith("'"):
        assert _literal_end(text, len("name eq ")) == len(text) - 1
    else:
        assert is_guid(value) or literal == value


TRICKY = ["O'Brien", "' or name ne '", "a''b", "50% off", "x) or (1 eq 1", "Zoë & Co + 1/2 ?#", "tab\there", "'"]


async def test_tricky_values_match_exactly_on_the_emulator(run):
    tag = uuid.uuid4().hex[:8]
    for value in TRICKY:
        await run("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": {"name": value, "description": tag}, "returnRepresentation": False})
    for value in TRICKY:
        out = await run(
            "dynamics365.query_entities",
            {"entityType": "accounts", "fieldNames": ["name"], "filterConditions": [{"column": "description", "value": tag}, {"column": "name", "value": value}]},
        )
        assert [r["name"] for r in out["value"]] == [value]
    out = await run(
        "dynamics365.query_entities",
        {"entityType": "accounts", "fieldNames": ["name"], "filterConditions": [{"column": "description", "value": tag}, {"column": "name", "operator": "startswith", "value": "O'"}]},
    )
    assert [r["name"] for r in out["value"]] == ["O'Brien"]


async def test_build_filter_expression_action_needs_no_connection():
    out = await invoke(
        "dynamics365.build_filter_expression",
        {"conditions": [{"column": "name", "value": "O'Brien"}, {"column": "revenue", "operator": "gt", "value": 1000}]},
    )
    assert out == {"filterExpression": "name eq 'O''Brien' and revenue gt 1000"}
    out = await invoke("dynamics365.build_filter_expression", {"conditions": [{"column": "a", "value": 1}, {"column": "b", "value": 2}], "join": "or"})
    assert out["filterExpression"] == "a eq 1 or b eq 2"


async def test_build_filter_expression_errors_name_fields():
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.build_filter_expression", {"conditions": [{"column": "bad column", "operator": "like"}], "join": "xor"})
    pointers = {e.pointer for e in caught.value.errors}
    assert {"/conditions/0/column", "/conditions/0/operator", "/join"} <= pointers
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.build_filter_expression", {"conditions": [{"column": "a", "operator": "in", "value": []}]})
    assert caught.value.errors[0].pointer == "/conditions/0/value"
