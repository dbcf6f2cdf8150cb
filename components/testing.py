"""Test your own flows and plugins offline: an emulated org, and a conformance suite for definitions.

Outside pytest, :func:`emulated_org` starts an emulated Dataverse as a context manager (it needs
the ``emulator`` extra)::

    with emulated_org() as org:
        invoke_sync("dynamics365.query_entities", {"entityType": "accounts"}, org.connection)

A plugin checks its own definitions in one line of a test module (as Meltano's singer-sdk does
with ``get_tap_test_class``)::

    TestAcmeDefinitions = definition_test_class("acme")

The pytest fixtures (``dataverse_emulator``, ``dataverse_connection``, ``run_action``) live in
``d365_components.pytest_plugin``, which pytest loads by itself; this module never imports pytest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import jsonschema

from d365_components.definitions import Definition
from d365_components.extras import require
from d365_components.inputs import schema_problems
from d365_components.registry import KEY_PATTERN, build_registry, get_registry, make_plugin_manager

if TYPE_CHECKING:
    from d365_components.emulator.server import Emulator

__all__ = ["DefinitionChecks", "EmulatedOrg", "definition_test_class", "emulated_org"]


@dataclass(frozen=True)
class EmulatedOrg:
    """A running emulator and the connection config that reaches it."""

    emulator: Emulator
    connection: dict[str, Any]


@contextmanager
def emulated_org(**emulator_options: Any) -> Iterator[EmulatedOrg]:
    """Start an emulator (``Emulator`` options: seed, db, token_lifetime, faults...) and stop it after."""
    require("emulator", "d365_components.testing.emulated_org()")
    # optional dependency: the emulator's server stack is the `emulator` extra, checked just above
    from d365_components.emulator.server import Emulator

    with Emulator(**emulator_options) as emulator:
        connection = {"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()}
        yield EmulatedOrg(emulator, connection)


def _definitions(component: str, plugins: Iterable[ModuleType]) -> list[type[Definition]]:
    modules = list(plugins)
    if modules:
        pm = make_plugin_manager(entry_points=False)
        for module in modules:
            pm.register(module)
        registry = build_registry(pm)
    else:
        registry = get_registry()
    found = [d for _, d in sorted(registry.all().items()) if d.component_key() == component]
    if not found:
        raise LookupError(f"No definition of component '{component}' is registered (is the plugin installed?).")
    return found


class DefinitionChecks:
    """The checks, one test method each, run once per definition (``definition`` is parametrized)."""

    def test_key_names_the_component(self, definition: type[Definition]) -> None:
        assert KEY_PATTERN.match(definition.key), f"{definition.key}: keys look like 'component.snake_case_name'"

    def test_has_label_and_description(self, definition: type[Definition]) -> None:
        assert definition.label, f"{definition.key} has no label"
        assert definition.summary(), f"{definition.key} has no description (set `description` or a docstring)"

    def test_input_schema_is_publishable(self, definition: type[Definition]) -> None:
        schema = definition.input_schema()
        assert schema_problems(schema, where=definition.key) == []
        assert schema.get("type") == "object" and schema.get("additionalProperties") is False

    def test_inputs_are_camel_case_and_defaults_valid(self, definition: type[Definition]) -> None:
        for name, prop in definition.input_schema().get("properties", {}).items():
            assert name[0].islower() and "_" not in name, f"{definition.key}: input {name} is not camelCase"
            if prop.get("format") == "password":
                assert prop.get("writeOnly") is True, f"{definition.key}: secret {name} must be writeOnly"
            if "default" in prop:
                schema = {k: v for k, v in prop.items() if k != "default"}
                jsonschema.Draft202012Validator(schema).validate(prop["default"])

    def test_output_schema_and_example(self, definition: type[Definition]) -> None:
        output = definition.output_json_schema()
        if definition.kind in {"action", "data_source"}:
            assert output is not None, f"{definition.key} declares no output schema"
        if definition.kind == "action":
            assert definition.example is not None, f"{definition.key} has no example output"
        if output is not None:
            jsonschema.Draft202012Validator.check_schema(output)
            if definition.example is not None:
                jsonschema.Draft202012Validator(output).validate(definition.example)
                json.dumps(definition.example)


def definition_test_class(component: str, *, plugins: Iterable[ModuleType] = ()) -> type:
    """A pytest test class checking every definition of ``component`` (bind it to a ``Test*`` name).

    Definitions come from the installed plugins (the ``d365_components`` entry points), or only
    from ``plugins`` (modules with ``@hookimpl`` functions) when given.
    """
    definitions = _definitions(component, plugins)

    def pytest_generate_tests(self: Any, metafunc: Any) -> None:
        if "definition" in metafunc.fixturenames:
            metafunc.parametrize("definition", definitions, ids=[d.key for d in definitions])

    name = "Test" + "".join(part.title() for part in component.split("_")) + "Definitions"
    return type(name, (DefinitionChecks,), {"pytest_generate_tests": pytest_generate_tests})
