"""The built-in component lists its definitions by hand: the lists are complete, and building
the registry loads no server (starlette, uvicorn) and nothing of the emulator."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

from d365_components import dynamics365
from d365_components.definitions import Action, Connection, DataSource, Trigger
from d365_components.registry import definitions_in


def _modules(package: str) -> list[object]:
    root = importlib.import_module(f"d365_components.{package}")
    return [importlib.import_module(f"{root.__name__}.{info.name}") for info in pkgutil.iter_modules(root.__path__)]


def test_every_definition_class_is_listed() -> None:
    everything = [m for package in ("actions", "triggers", "connections") for m in _modules(package)]
    for listed, base in ((dynamics365.ACTIONS, Action), (dynamics365.TRIGGERS, Trigger),
                         (dynamics365.CONNECTIONS, Connection), (dynamics365.DATA_SOURCES, DataSource)):
        found = definitions_in(everything, base)
        assert sorted(d.key for d in found) == sorted(d.key for d in listed), base.__name__
        assert len(set(listed)) == len(listed)


def test_the_registry_builds_without_servers() -> None:
    script = (
        "import sys\n"
        "from d365_components.registry import build_registry, make_plugin_manager\n"
        "from d365_components.manifest import manifest_files\n"
        "registry = build_registry(make_plugin_manager(entry_points=False))\n"
        "manifest_files(registry, ['dynamics365'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'starlette', 'uvicorn', 'trustme', 'lark'}\n"
        "                or m.startswith(('d365_components.emulator', 'd365_components.webhook_host')))\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
