"""The input contract in Python terms: typed properties, titled list items, a declared vocabulary,
published coercion and formats, UI schemas for both renderers, and the README's dropdown example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from d365_contract_corpus import definitions

from d365_components.errors import InputValidationError
from d365_components.inputs import coerce_form_values, validate_inputs
from d365_components.manifest import MANIFEST_SCHEMA, build_manifest, build_ui_schemas
from d365_components.registry import get_registry
from d365_components.vocabulary import KEYWORDS, vocabulary_schema

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def fields(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(pointer, schema) of every input and nested field, list items included; rules are skipped."""
    found = []
    for name, prop in schema.get("properties", {}).items():
        found.append((f"{path}/{name}", prop))
        found += fields(prop, f"{path}/{name}")
        items = prop.get("items")
        if isinstance(items, dict):
            found.append((f"{path}/{name}/items", items))
            found += fields(items, f"{path}/{name}/items")
    return found


def keywords(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {k for k in node if k.startswith("x-")} | {k for v in node.values() for k in keywords(v)}
    if isinstance(node, list):
        return {k for v in node for k in keywords(v)}
    return set()


@pytest.mark.parametrize("definition", definitions(), ids=lambda d: d.key)
def test_every_field_has_a_type_and_every_list_item_a_title(definition: Any) -> None:
    for pointer, prop in fields(definition.input_schema()):
        assert "type" in prop, f"{definition.key}{pointer} has no type"
        if pointer.endswith("/items") and "object" in prop["type"] and prop.get("properties"):
            assert prop.get("title"), f"{definition.key}{pointer}: a list item needs a human title"


def test_every_x_keyword_used_is_declared_in_the_vocabulary_and_the_manifest_schema() -> None:
    used = set().union(*(keywords(d.input_schema()) for d in definitions()))
    assert used <= set(KEYWORDS)
    assert set(vocabulary_schema()["properties"]) == set(KEYWORDS)
    assert set(MANIFEST_SCHEMA["$defs"]["uiHints"]["properties"]) == set(KEYWORDS)
    assert all(entry["meaning"] and entry["renderers"] for entry in KEYWORDS.values())


def test_the_manifest_publishes_the_coercion_step_and_formats() -> None:
    contract = build_manifest(get_registry(), "dynamics365")["inputContract"]
    assert contract["coercion"]["function"] == "d365_components.inputs.coerce_form_values"
    assert "date-time" in contract["formats"]["checked"]


def test_validation_never_coerces_and_dates_need_an_offset() -> None:
    key = "dynamics365.create_activity"
    definition = get_registry().get(key)
    schema = definition.input_schema()
    base = {"activityType": "task", "subject": "Call back"}
    for bad in ("2025-06-30T09:00:00", "2025-06-30", "2025-06-30 09:00:00Z"):
        with pytest.raises(InputValidationError) as info:
            validate_inputs(schema, definition.Inputs, {**base, "due": bad})
        assert [e.pointer for e in info.value.errors] == ["/due"]
    validate_inputs(schema, definition.Inputs, {**base, "due": "2025-06-30T09:00:00+02:00"})
    query = get_registry().get("dynamics365.query_entities")
    text = {"entityType": "accounts", "recordsPerPage": "50"}
    with pytest.raises(InputValidationError):
        validate_inputs(query.input_schema(), query.Inputs, text)
    typed = validate_inputs(query.input_schema(), query.Inputs, coerce_form_values(query.input_schema(), text))
    assert typed.records_per_page == 50


def test_rules_name_their_fields() -> None:
    get = get_registry().get("dynamics365.get_entity")
    for inputs, message in (({"entityType": "accounts"}, "exactly one"),
                            ({"entityType": "accounts", "entityId": "7eb682f1-ca75-e511-80d4-00155d2a68d1",
                              "alternateKey": {"accountnumber": "A-1"}}, "not both")):
        with pytest.raises(InputValidationError) as info:
            validate_inputs(get.input_schema(), get.Inputs, inputs)
        errors = {e.pointer: e.message for e in info.value.errors}
        assert set(errors) == {"/entityId", "/alternateKey"} and message in errors["/entityId"]


@pytest.mark.parametrize("definition", definitions(), ids=lambda d: d.key)
def test_ui_schemas_cover_every_input_for_both_renderers(definition: Any) -> None:
    schema = definition.input_schema()
    both = build_ui_schemas(get_registry(), definition.component_key())[definition.key]
    names = list(schema["properties"])
    if names:
        assert both["rjsf"]["ui:order"] == [*names, "*"]
    scopes = re.findall(r"#/properties/([^/\"']+)", str(both["jsonforms"]))
    assert set(names) <= set(scopes)
    for name, prop in schema["properties"].items():
        if prop.get("format") == "password":
            assert both["rjsf"][name]["ui:widget"] == "password"
        if "x-data-source" in prop:
            assert both["rjsf"][name]["ui:options"]["dataSource"] == prop["x-data-source"]

