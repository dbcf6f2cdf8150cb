"""Machine-readable manifests: the component and every definition, generated from the code.

``build_manifest(registry, "dynamics365")`` describes one component: display data, then each
connection, action, trigger and data source with its input schema, output schema and example.
``MANIFEST_SCHEMA`` is the format of a manifest, published beside it as manifest.schema.json so
runtimes can validate what they load. The checked-in copies under manifests/ are never edited by
hand: ``d365 manifest`` writes them and ``d365 manifest --check`` fails when they are stale.

Beside each manifest: ``vocabulary.schema.json`` (our ``x-`` keywords, as a meta-schema a strict
validator loads) and ``<component>.ui.json`` (a ready-made rjsf and JSON Forms UI schema per
definition, :func:`build_ui_schemas`). The manifest's ``inputContract`` says how inputs are checked:
the coercion step, the formats, the vocabulary.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from d365_components.definitions import Definition
from d365_components.registry import Registry
from d365_components.ui_schemas import ui_schemas
from d365_components.vocabulary import KEYWORDS, VOCABULARY_ID, vocabulary_schema

__all__ = ["INPUT_CONTRACT", "MANIFEST_SCHEMA", "build_manifest", "build_ui_schemas", "default_directory", "manifest_files", "render", "stale_files"]

#: how a runtime checks inputs exactly as the library does (published in every manifest)
INPUT_CONTRACT: dict[str, Any] = {
    "dialect": "https://json-schema.org/draft/2020-12/schema",
    "coercion": {
        "function": "d365_components.inputs.coerce_form_values",
        "description": (
            "Optional step BEFORE validation, for text typed in a form: for a top-level input whose type has "
            "no string, text becomes an integer, number, boolean (true/false/1/0/yes/no) or parsed JSON "
            "object/array, and empty text means not given. Validation itself never coerces."
        ),
    },
    "formats": {
        "checked": ["date-time", "date", "uuid"],
        "date-time": "RFC 3339 with an offset (2025-06-30T09:00:00Z), as ajv-formats checks it; also given as pattern.",
        "annotations": ["password"],
    },
    "rules": (
        "Rules between inputs are in each schema as not: {anyOf: [refused combination, ...]}; each combination's "
        "description is the message and x-fields the inputs it names."
    ),
    "vocabulary": VOCABULARY_ID,
    "uiSchemas": "<component>.ui.json: {definition key: {rjsf, jsonforms}}",
}

FORMAT_VERSION = 1
DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://d365-components.dev/schemas/manifest-v1.json"

_definition = {
    "type": "object",
    "required": ["key", "label", "description", "inputs"],
    "properties": {
        "key": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", "description": "Permanent key; workflows store it."},
        "label": {"type": "string"},
        "description": {"type": "string"},
        "group": {"type": "string"},
        "deprecated": {"type": ["string", "null"], "description": "Why, or the key replacing it."},
        "inputs": {"$ref": "#/$defs/schema", "description": "JSON Schema (2020-12) of the inputs: the form and the validation rule."},
        "output": {"$ref": "#/$defs/schema", "description": "JSON Schema of the output, when declared."},
        "example": {"description": "An example output."},
        "mode": {"enum": ["webhook", "polling"], "description": "Triggers only."},
        "checks": {
            "type": "array",
            "description": "Rules on inputs that JSON Schema cannot say, checked by the library after the schema.",
            "items": {"type": "object", "required": ["input", "rule"], "properties": {
                "input": {"type": "string"}, "rule": {"type": "string"}}},
        },
    },
    "additionalProperties": False,
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": DRAFT,
    "$id": SCHEMA_ID,
    "title": "d365-components manifest",
    "description": "A component with its connections, actions, triggers and data sources.",
    "type": "object",
    "required": ["formatVersion", "component", "connections", "actions", "triggers", "dataSources"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "formatVersion": {"const": FORMAT_VERSION},
        "component": {
            "type": "object",
            "required": ["key", "label", "description"],
            "additionalProperties": False,
            "properties": {
                "key": {"type": "string"},
                "label": {"type": "string"},
                "description": {"type": "string"},
                "icon": {"type": "string", "description": "An image URL or data URI."},
                "documentationUrl": {"type": "string"},
                "version": {"type": "string"},
                "category": {"type": "string"},
            },
        },
        "connections": {"type": "array", "items": {"$ref": "#/$defs/definition"}},
        "actions": {"type": "array", "items": {"$ref": "#/$defs/definition"}},
        "triggers": {"type": "array", "items": {"$ref": "#/$defs/definition"}},
        "dataSources": {"type": "array", "items": {"$ref": "#/$defs/definition"}},
        "inputContract": {
            "type": "object",
            "description": "How inputs are checked: dialect, the coercion step, formats, rules, the x- vocabulary.",
        },
    },
    "$defs": {
        "definition": _definition,
        "schema": {"type": ["object", "boolean"]},
        "uiHints": {
            "description": "The x- keywords input schemas carry (annotations: none changes what is valid).",
            "type": "object",
            "properties": {
                keyword: {**entry["value"], "description": f"{entry['meaning']} Renderers: {entry['renderers']}"}
                for keyword, entry in KEYWORDS.items()
            },
        },
    },
}


def _describe(definition: type[Definition]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": definition.key,
        "label": definition.label,
        "description": definition.summary(),
    }
    if definition.group:
        entry["group"] = definition.group
    if definition.deprecated:
        entry["deprecated"] = definition.deprecated
    mode = getattr(definition, "mode", "")
    if mode:
        entry["mode"] = mode
    entry["inputs"] = definition.input_schema()
    output = definition.output_json_schema()
    if output is not None:
        entry["output"] = output
    if definition.example is not None:
        entry["example"] = definition.example
    checks = getattr(definition, "checks", None)
    if checks:
        entry["checks"] = [{"input": name, "rule": rule} for name, rule in checks.items()]
    return entry


def build_manifest(registry: Registry, component_key: str) -> dict[str, Any]:
    """The manifest of one component, in a stable order (sorted keys) so diffs stay readable."""
    component = registry.component(component_key)
    display = {
        "key": component.key,
        "label": component.label,
        "description": component.description,
        "icon": component.icon,
        "documentationUrl": component.documentation_url,
        "version": component.version,
        "category": component.category,
    }
    return {
        "$schema": SCHEMA_ID,
        "formatVersion": FORMAT_VERSION,
        "component": {k: v for k, v in display.items() if v},
        "connections": [_describe(d) for d in registry.of_component(component_key, "connections")],
        "actions": [_describe(d) for d in registry.of_component(component_key, "actions")],
        "triggers": [_describe(d) for d in registry.of_component(component_key, "triggers")],
        "dataSources": [_describe(d) for d in registry.of_component(component_key, "data_sources")],
        "inputContract": INPUT_CONTRACT,
    }


def build_ui_schemas(registry: Registry, component_key: str, renderer: str | None = None) -> dict[str, Any]:
    """Definition key -> ``{"rjsf": ..., "jsonforms": ...}`` (or only ``renderer``'s UI schema)."""
    found: dict[str, Any] = {}
    for kind in ("connections", "actions", "triggers", "data_sources"):
        for definition in registry.of_component(component_key, kind):
            both = ui_schemas(definition.input_schema())
            found[definition.key] = both[renderer] if renderer else both
    return found


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def default_directory() -> Path:
    """The manifests/ folder of this distribution (the repository folder in an editable install)."""
    return Path(str(resources.files("d365_components.manifests")))


def manifest_files(registry: Registry, component_keys: list[str]) -> dict[str, str]:
    """File name -> content for the given components, plus manifest.schema.json."""
    files = {f"{key}.json": render(build_manifest(registry, key)) for key in component_keys}
    files.update({f"{key}.ui.json": render(build_ui_schemas(registry, key)) for key in component_keys})
    files["manifest.schema.json"] = render(MANIFEST_SCHEMA)
    files["vocabulary.schema.json"] = render(vocabulary_schema())
    return files


def stale_files(directory: Path, files: dict[str, str]) -> list[str]:
    """Names of the files in ``directory`` that are missing or differ from ``files``."""
    stale = []
    for name, content in files.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            stale.append(name)
    return stale
