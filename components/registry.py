"""The registry: every definition that plugins registered, checked and keyed by permanent key.

Built lazily (never at import) by :func:`get_registry` from a fresh plugin manager that loads the
built-in component and, unless disabled, the ``d365_components`` entry-point group. Hosts that
want isolation build their own with :func:`build_registry`.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pluggy

from d365_components import hookspecs
from d365_components.definitions import (
    Action,
    Component,
    Connection,
    DataSource,
    Definition,
    Trigger,
)
from d365_components.errors import DefinitionError, DuplicateKeyError, UnknownKeyError
from d365_components.inputs import InputModel, schema_problems

__all__ = ["Registry", "build_registry", "check_schemas", "definitions_in", "get_registry", "make_plugin_manager", "reset_registry", "schema_check"]

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*\.[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
BUILTIN_PLUGINS = ("d365_components.dynamics365",)
#: set to 0 to skip third-party plugins (e.g. to debug the built-ins alone).
LOAD_PLUGINS_ENV = "D365_COMPONENTS_LOAD_PLUGINS"

_KINDS: dict[str, type[Definition]] = {
    "actions": Action,
    "triggers": Trigger,
    "connections": Connection,
    "data_sources": DataSource,
}


@dataclass
class Registry:
    """Definitions by kind and key, plus the component display data they belong to."""

    components: dict[str, Component] = field(default_factory=dict)
    actions: dict[str, type[Action]] = field(default_factory=dict)
    triggers: dict[str, type[Trigger]] = field(default_factory=dict)
    connections: dict[str, type[Connection]] = field(default_factory=dict)
    data_sources: dict[str, type[DataSource]] = field(default_factory=dict)
    #: key -> name of the plugin that registered it (for error messages and `d365 list`).
    origins: dict[str, str] = field(default_factory=dict)

    def all(self) -> dict[str, type[Definition]]:
        return {**self.connections, **self.actions, **self.triggers, **self.data_sources}

    def get(self, key: str, kind: str | None = None) -> type[Definition]:
        """The definition with ``key`` (optionally of one kind: actions, triggers...)."""
        table = getattr(self, kind) if kind else self.all()
        try:
            return table[key]
        except KeyError:
            close = [k for k in table if k.split(".")[-1] == key.split(".")[-1]]
            close = close or difflib.get_close_matches(key, list(table), n=1, cutoff=0.8)
            suggestion = f" Did you mean {close[0]}?" if close else ""
            what = (kind or "definition").rstrip("s").replace("_", " ")
            elsewhere = next((k for k in _KINDS if k != kind and key in getattr(self, k)), None) if kind else None
            if elsewhere:
                suggestion = f" It is a {elsewhere.rstrip('s').replace('_', ' ')}."
            raise UnknownKeyError(f"No {what} has the key '{key}'.{suggestion}") from None

    def component(self, key: str) -> Component:
        """Display data of ``key``; a plugin that registered none gets a plain default."""
        if key in self.components:
            return self.components[key]
        if any(d.component_key() == key for d in self.all().values()):
            return Component(key=key, label=key.replace("_", " ").title(), description="")
        raise UnknownKeyError(f"No component has the key '{key}'.")

    def of_component(self, component_key: str, kind: str) -> list[type[Definition]]:
        table: dict[str, type[Definition]] = getattr(self, kind)
        return [d for k, d in sorted(table.items()) if d.component_key() == component_key]


def _check(definition: Any, base: type[Definition], registry: Registry) -> None:
    name = getattr(definition, "__qualname__", repr(definition))
    if not (isinstance(definition, type) and issubclass(definition, base)):
        raise DefinitionError(f"{name} is not a {base.__name__} subclass.")
    key = getattr(definition, "key", None)
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise DefinitionError(
            f"{name} has key {key!r}; keys look like 'component.snake_case_name'."
        )
    if key in registry.all():
        raise DuplicateKeyError(
            f"Key '{key}' is registered twice: by {registry.origins[key]} and by {name}."
        )
    if not getattr(definition, "label", None):
        raise DefinitionError(f"{key}: has no label.")
    if not definition.summary():
        raise DefinitionError(f"{key}: has no description (set `description` or a docstring).")
    if not issubclass(definition.Inputs, InputModel):
        raise DefinitionError(f"{key}: Inputs must subclass InputModel.")


def schema_check(definition: type[Definition]) -> list[str]:
    """What is wrong with a definition's published schemas (inputs, output), checked against the
    JSON Schema meta-schema and the project's input rules; empty when they are sound."""
    key = definition.key
    try:
        schema = definition.input_schema()
    except Exception as exc:  # pydantic raises several kinds for unpublishable models
        return [f"{key}: its inputs cannot be published as JSON Schema: {exc}"]
    problems = schema_problems(schema, where=key)
    output = definition.output_json_schema()
    if output is not None:
        meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
        problems += [f"{key} output schema: {e.message}" for e in meta.iter_errors(output)]
    return problems


def check_schemas(registry: Registry) -> None:
    """Check every definition's schemas (:func:`schema_check`); raise one DefinitionError listing
    all problems. Run by the test suite and ``d365 manifest``, not at every start: meta-schema
    validation of all definitions costs about ten times the rest of building the registry."""
    problems = [p for definition in registry.all().values() for p in schema_check(definition)]
    if problems:
        raise DefinitionError("; ".join(problems))


def make_plugin_manager(*, entry_points: bool | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with the hookspecs, the built-ins and (optionally) entry points."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if entry_points is None:
        entry_points = os.environ.get(LOAD_PLUGINS_ENV, "1") != "0"
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    pm.check_pending()
    return pm


def build_registry(pm: pluggy.PluginManager | None = None, *, check: bool = False) -> Registry:
    """Call every plugin's register hooks and check what they hand over: keys, labels,
    descriptions and Inputs always; the published schemas too with ``check`` (see
    :func:`check_schemas`, which tests and ``d365 manifest`` run)."""
    pm = pm or make_plugin_manager()
    registry = Registry()
    for impl in pm.hook.register_components.get_hookimpls():
        def add_component(component: Any, _plugin: str = impl.plugin_name) -> None:
            if not isinstance(component, Component) or not re.match(r"^[a-z][a-z0-9_]*$", component.key):
                raise DefinitionError(f"{_plugin} registered {component!r}, not a Component with a snake_case key.")
            if component.key in registry.components:
                raise DuplicateKeyError(f"Component '{component.key}' is registered twice.")
            registry.components[component.key] = component

        impl.function(register=add_component)
    for kind, base in _KINDS.items():
        hook = getattr(pm.hook, f"register_{kind}")
        table: dict[str, Any] = getattr(registry, kind)
        for impl in hook.get_hookimpls():
            def add(definition: Any, _plugin: str = impl.plugin_name, _base: type[Definition] = base, _table: dict[str, Any] = table) -> None:
                _check(definition, _base, registry)
                _table[definition.key] = definition
                registry.origins[definition.key] = _plugin

            impl.function(register=add)
    if check:
        check_schemas(registry)
    return registry


_lock = threading.Lock()
_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = build_registry()
        return _default


def reset_registry() -> None:
    """Forget the process-wide registry (after installing a plugin at run time, or in tests)."""
    global _default
    with _lock:
        _default = None


def definitions_in(modules: Iterable[Any], base: type[Definition]) -> list[type[Definition]]:
    """Concrete subclasses of ``base`` defined (not imported) in ``modules``, with a key."""
    found = []
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, base)
                and value.__module__ == module.__name__
                and "key" in vars(value)
            ):
                found.append(value)
    return found
