"""Manifests: generated from the code, valid against their own format, checked in and current."""

from __future__ import annotations

import json

import d365_test_acme
import jsonschema

from d365_components.manifest import (
    MANIFEST_SCHEMA,
    build_manifest,
    default_directory,
    manifest_files,
    stale_files,
)
from d365_components.registry import build_registry, get_registry, make_plugin_manager


def test_checked_in_manifests_are_current() -> None:
    files = manifest_files(get_registry(), ["dynamics365"])
    assert stale_files(default_directory(), files) == [], "run `d365 manifest` and commit manifests/"


def test_manifest_is_valid_against_its_schema_and_every_input_schema_is_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(MANIFEST_SCHEMA)
    document = json.loads((default_directory() / "dynamics365.json").read_text())
    jsonschema.Draft202012Validator(MANIFEST_SCHEMA).validate(document)
    assert document["component"]["key"] == "dynamics365"
    for kind in ("connections", "actions", "triggers", "dataSources"):
        for entry in document[kind]:
            jsonschema.Draft202012Validator.check_schema(entry["inputs"])
            if "output" in entry:
                jsonschema.Draft202012Validator.check_schema(entry["output"])


def test_a_plugin_component_gets_its_own_manifest() -> None:
    pm = make_plugin_manager(entry_points=False)
    pm.register(d365_test_acme)
    document = build_manifest(build_registry(pm), "acme")
    jsonschema.Draft202012Validator(MANIFEST_SCHEMA).validate(document)
    assert [a["key"] for a in document["actions"]] == ["acme.echo"]
    assert document["actions"][0]["example"] == {"message": "hi", "recordsPerPage": 100}
    assert [d["key"] for d in document["dataSources"]] == ["acme.colors"]
