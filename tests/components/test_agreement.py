"""The published schema is the whole contract: the library, jsonschema and Ajv agree on every input.

For every definition a generated corpus (the example, the empty input, every rule broken, every
field's boundaries) gets a verdict from the library (``validate_inputs``), from jsonschema (2020-12,
formats checked) and from Ajv2020 + ajv-formats run with node. The only disagreements allowed are on
an input a definition lists in ``checks`` (a rule JSON Schema cannot say, published in the manifest).
A strict Ajv2020 with our vocabulary compiles every schema.

Node packages come from tests/js (``npm ci`` there); without them the test is skipped locally and
fails in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from d365_contract_corpus import corpus, definitions, refusals

from d365_components.vocabulary import vocabulary_schema

JS = Path(__file__).resolve().parents[1] / "js"


def node_ready() -> None:
    """Skip (locally) or fail (in CI) when node or the pinned packages are missing."""
    missing = shutil.which("node") is None or not (JS / "node_modules" / "ajv").is_dir()
    if missing and os.environ.get("CI") == "true":
        pytest.fail("tests/js/node_modules is missing: run `npm ci` in tests/js (CI must)")
    if missing:
        pytest.skip("tests/js/node_modules is missing: run `npm ci --prefix tests/js` to run the Ajv checks")


def _ajv(schemas: dict[str, Any], cases: list[tuple[str, Any]]) -> dict[str, Any]:
    payload = json.dumps({"vocabulary": vocabulary_schema(), "schemas": schemas, "cases": cases})
    done = subprocess.run(
        ["node", str(JS / "ajv_verdicts.mjs")], input=payload, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def verdicts() -> dict[str, Any]:
    node_ready()
    schemas = {d.key: d.input_schema() for d in definitions()}
    cases = [(d.key, case) for d in definitions() for case in corpus(d)]
    return {"cases": cases, **_ajv(schemas, cases)}


def test_every_definition_has_at_least_ten_cases_and_a_valid_example() -> None:
    for definition in definitions():
        cases = corpus(definition)
        assert len(cases) >= 10, definition.key
        assert refusals(definition, cases[0]) is None, f"{definition.key}: no valid example {cases[0]}"


def test_strict_ajv_with_our_vocabulary_compiles_every_schema(verdicts: dict[str, Any]) -> None:
    failures = {key: error for key, error in verdicts["strict"].items() if error}
    assert failures == {}
    assert len(verdicts["strict"]) == len(definitions())


def test_library_jsonschema_and_ajv_agree_on_every_input(verdicts: dict[str, Any]) -> None:
    registry = {d.key: d for d in definitions()}
    disagreements = []
    for (key, data), ajv_says in zip(verdicts["cases"], verdicts["verdicts"], strict=True):
        definition = registry[key]
        schema = definition.input_schema()
        standard = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        ).is_valid(data)
        errors = refusals(definition, data)
        library = errors is None
        if library == standard == ajv_says:
            continue
        if standard and ajv_says and errors and set(errors) <= set(definition.checks):
            continue  # a published check (not expressible in JSON Schema) refused it
        disagreements.append(f"{key}: library={library} jsonschema={standard} ajv={ajv_says} {errors} {data!r:.300}")
    assert disagreements == [], f"{len(disagreements)} of {len(verdicts['cases'])}:\n" + "\n".join(disagreements[:40])
