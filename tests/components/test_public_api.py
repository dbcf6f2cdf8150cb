"""The public modules say what they export: ``__all__`` resolves and lists every
public class and function the module defines (so nothing a host or plugin uses is left out,
and nothing private leaks in)."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC = [
    "d365_components",
    "d365_components.cli",
    "d365_components.definitions",
    "d365_components.demo",
    "d365_components.dynamics365",
    "d365_components.errors",
    "d365_components.extras",
    "d365_components.hookspecs",
    "d365_components.inputs",
    "d365_components.manifest",
    "d365_components.pytest_plugin",
    "d365_components.redaction",
    "d365_components.registry",
    "d365_components.runtime",
    "d365_components.testing",
    "d365_components.webhook_host",
    "d365_components.connections",
    "d365_components.connections.client",
    "d365_components.connections.oauth",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("name", PUBLIC)
def test_all_lists_every_public_definition(name: str) -> None:
    module = importlib.import_module(name)
    defined = {
        n for n, value in vars(module).items()
        if not n.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == name
    }
    assert not defined - set(module.__all__), f"{name}: public but not in __all__: {sorted(defined - set(module.__all__))}"


def test_the_root_exports_what_a_plugin_author_needs() -> None:
    import d365_components

    needed = {"Action", "Component", "Connection", "Context", "DataSource", "InputField", "InputModel",
              "PollingTrigger", "WebhookTrigger", "hookimpl", "__version__"}
    assert needed <= set(d365_components.__all__)
