"""The compiled validator only ever accepts what jsonschema accepts (it is a fast path, never a judge).

``validate_inputs`` accepts input the compiled (Rust) validator accepts and leaves every refusal to
jsonschema, so the library's verdict equals jsonschema's as long as the compiled one is never more
lenient. Checked here on every definition's contract corpus (examples, boundaries, broken rules)
and on values it would read differently from jsonschema.
"""

from __future__ import annotations

import jsonschema
import pytest
from d365_contract_corpus import corpus, definitions
from pydantic import BaseModel

from d365_components.errors import InputValidationError
from d365_components.inputs import _accepted_fast, _cached_validators, validate_inputs


def test_never_more_lenient_than_jsonschema_on_the_corpus() -> None:
    lenient = []
    checked = 0
    for definition in definitions():
        schema = definition.input_schema()
        standard, compiled = _cached_validators(schema)
        for case in corpus(definition):
            if not isinstance(case, dict):
                continue
            checked += 1
            if _accepted_fast(compiled, case) and not standard.is_valid(case):
                lenient.append((definition.key, case))
    assert lenient == []
    assert checked > 500


@pytest.mark.parametrize(
    "value",
    [(1, 2), float("nan"), float("inf"), {1: "key is no text"}, b"bytes"],
    ids=["tuple", "nan", "inf", "int key", "bytes"],
)
def test_values_it_reads_differently_are_left_to_jsonschema(value: object) -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"v": {}}, "additionalProperties": False}
    _, compiled = _cached_validators(schema)
    assert not _accepted_fast(compiled, {"v": value})


def test_a_pattern_dollar_before_a_line_break_is_decided_by_jsonschema() -> None:
    # Python's `$` matches before a final line break, the compiled engine's does not: jsonschema's
    # verdict (accept) is the library's
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"v": {"type": "string", "pattern": "^a$"}}, "additionalProperties": False}
    class Model(BaseModel):
        v: str

    assert jsonschema.Draft202012Validator(schema).is_valid({"v": "a\n"})
    assert validate_inputs(schema, Model, {"v": "a\n"}).v == "a\n"  # type: ignore[attr-defined]
    with pytest.raises(InputValidationError):
        validate_inputs(schema, Model, {"v": "b"})
