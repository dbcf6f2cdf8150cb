"""Contract tests over every registered definition: what a runtime and a form generator rely on."""

from __future__ import annotations

import json

import jsonschema
import pytest

from d365_components.registry import get_registry

DEFINITIONS = sorted(get_registry().all().items())


@pytest.mark.parametrize(("key", "definition"), DEFINITIONS, ids=[k for k, _ in DEFINITIONS])
def test_definition_contract(key: str, definition) -> None:
    schema = definition.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert name[0].islower() and "_" not in name, f"{key}: input {name} is not camelCase"
        assert prop.get("title") and prop.get("description"), f"{key}: {name} needs title and description"
        if prop.get("format") == "password":
            assert prop.get("writeOnly") is True
        if "default" in prop:
            jsonschema.Draft202012Validator({k: v for k, v in prop.items() if k != "default"}).validate(prop["default"])
    if definition.kind in {"action", "data_source"} or getattr(definition, "mode", ""):
        output = definition.output_json_schema()
        assert output is not None, f"{key} declares no output schema"
        jsonschema.Draft202012Validator.check_schema(output)
        if definition.kind == "action":
            assert definition.example is not None, f"{key} has no example output"
    if definition.example is not None and definition.output_json_schema() is not None:
        jsonschema.Draft202012Validator(definition.output_json_schema()).validate(definition.example)
        json.dumps(definition.example)

