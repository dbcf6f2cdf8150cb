"""Every choice a form shows has a label: choices are published as ``oneOf`` of ``const`` + ``title``
(rjsf and JSON Forms both show labels from that), with ``x-enum-labels`` (the same labels, in the
same order, as generated table forms carry) and a dropdown widget; no bare ``enum`` is left."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from d365_components.registry import get_registry


def enums(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(pointer, schema) of every enum, at any depth; ``if`` and ``not`` (rules) are conditions, not fields."""
    if isinstance(node, dict):
        if "enum" in node or (node.get("oneOf") and all("const" in v for v in node["oneOf"])):
            yield path, node
        for key, value in node.items():
            if key not in ("if", "not"):
                yield from enums(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from enums(value, f"{path}/{index}")


DEFINITIONS = sorted(get_registry().all().items())


@pytest.mark.parametrize(("key", "definition"), DEFINITIONS, ids=[key for key, _ in DEFINITIONS])
def test_every_enum_has_labels_and_a_dropdown(key: str, definition: Any) -> None:
    for pointer, schema in enums(definition.input_schema()):
        labels = schema.get("x-enum-labels")
        assert "enum" not in schema, f"{key}{pointer}: a bare enum shows raw codes"
        assert [v["title"] for v in schema["oneOf"]] == labels, f"{key}{pointer}: labels {labels}"
        assert all(isinstance(label, str) and label for label in labels), f"{key}{pointer}: empty label"
        assert schema.get("x-widget") == "dropdown", f"{key}{pointer}: no dropdown widget"


def test_the_walk_finds_nested_and_list_item_enums() -> None:
    found = {pointer for key, d in DEFINITIONS for pointer, _ in enums(d.input_schema())}
    assert "/properties/messages/items" in found and "/properties/filterConditions/items/properties/operator" in found


def test_list_items_have_human_titles_and_free_values_a_widget() -> None:
    registry = get_registry()
    items = {
        key: registry.all()[key].input_schema()["properties"][name]["items"]
        for key, name in [("dynamics365.create_entity", "fieldValues"), ("dynamics365.query_entities", "filterConditions")]
    }
    assert items["dynamics365.create_entity"]["title"] == "Column value"
    assert items["dynamics365.query_entities"]["title"] == "Condition"
    for item in items.values():
        assert item["properties"]["value"]["x-widget"] == "any" and item["properties"]["value"]["description"]
