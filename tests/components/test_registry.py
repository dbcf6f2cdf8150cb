"""The registry: built from pluggy hooks, checked at registration, lazily, with fresh managers."""

from __future__ import annotations

import sys
from typing import Any

import d365_test_acme as sample_plugin
import pluggy
import pytest

from d365_components import Action, InputField, InputModel, hookimpl
from d365_components.errors import DefinitionError, DuplicateKeyError, UnknownKeyError
from d365_components.registry import build_registry, check_schemas, make_plugin_manager


def registry_with(*plugins: Any):
    pm = make_plugin_manager(entry_points=False)
    for plugin in plugins:
        pm.register(plugin)
    return build_registry(pm, check=True)


class _Plugin:
    def __init__(self, *actions: type) -> None:
        self.actions = actions

    @hookimpl
    def register_actions(self, register):
        for action in self.actions:
            register(action)


def test_builtins_and_a_plugin_register_through_the_same_hooks() -> None:
    registry = registry_with(sample_plugin)
    assert "acme.echo" in registry.actions and "acme.colors" in registry.data_sources
    assert registry.component("acme").label == "Acme"
    assert "dynamics365" in registry.components
    assert registry.origins["acme.echo"].endswith("sample_plugin") or registry.origins["acme.echo"]


def test_duplicate_key_raises() -> None:
    class Again(sample_plugin.Echo):
        key = "acme.echo"

    with pytest.raises(DuplicateKeyError, match="acme.echo"):
        registry_with(sample_plugin, _Plugin(Again))


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"key": "Acme.Echo"}, "keys look like"),
        ({"key": "echo"}, "keys look like"),
        ({"key": "acme.nodoc", "__doc__": None}, "no description"),
        ({"key": "acme.nolabel", "label": ""}, "no label"),
    ],
)
def test_malformed_definitions_raise(attrs: dict[str, Any], message: str) -> None:
    bad = type("Bad", (Action,), {"label": "Bad", "__doc__": "Does things.", **attrs})
    with pytest.raises(DefinitionError, match=message):
        registry_with(_Plugin(bad))


def test_untitled_input_is_refused() -> None:
    class Inputs(InputModel):
        name: str = InputField(title="Name", description="")

    bad = type("Bad", (Action,), {"key": "acme.bad", "label": "Bad", "__doc__": "Bad.", "Inputs": Inputs})
    with pytest.raises(DefinitionError, match="input 'name' has no description"):
        registry_with(_Plugin(bad))


def test_schemas_are_checked_on_request_not_at_every_start() -> None:
    class Inputs(InputModel):
        name: str = InputField(title="Name", description="")

    bad = type("Bad", (Action,), {"key": "acme.bad", "label": "Bad", "__doc__": "Bad.", "Inputs": Inputs})
    pm = make_plugin_manager(entry_points=False)
    pm.register(_Plugin(bad))
    registry = build_registry(pm)  # a start: cheap checks only
    assert "acme.bad" in registry.actions
    with pytest.raises(DefinitionError, match="input 'name' has no description"):
        check_schemas(registry)
    check_schemas(build_registry(make_plugin_manager(entry_points=False)))  # the built-ins are sound


def test_unknown_key_suggests_a_close_one() -> None:
    registry = registry_with(sample_plugin)
    with pytest.raises(UnknownKeyError, match="Did you mean acme.echo"):
        registry.get("other.echo")


def test_registry_is_lazy_and_bare_folder_names_are_never_imported() -> None:
    import d365_components.registry as reg

    reg.reset_registry()
    assert reg._default is None  # importing built nothing
    reg.get_registry()
    assert reg._default is not None
    for bare in ("actions", "components", "connections", "triggers", "emulator", "manifests"):
        assert bare not in sys.modules, f"bare module {bare!r} was imported"


def test_hookspecs_are_documented_and_checked() -> None:
    from d365_components import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    names = [n for n in dir(pm.hook) if n.startswith("register_")]
    assert sorted(names) == ["register_actions", "register_components", "register_connections", "register_data_sources", "register_triggers"]
    for name in names:
        assert getattr(hookspecs, name).__doc__
