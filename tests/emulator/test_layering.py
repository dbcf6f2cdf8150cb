"""The emulator's layout holds: layers import only downwards, imports sit at module level, no module
reaches into another's private names, and the emulator never imports the library."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2] / "emulator"
PACKAGE = "d365_components.emulator"
# lowest first, as in the module map of emulator/__init__.py; a module may import its own layer or lower
LAYERS = ["defaults", "protocol", "storage", "request", "query", "records", "metadata", "messages", "identity", "limits",
          "events", "web_api", "extensions", "tls", "server"]


def _modules() -> dict[str, ast.Module]:
    return {str(path.relative_to(ROOT)): ast.parse(path.read_text(), str(path)) for path in ROOT.rglob("*.py")}


def _layer(relative: str) -> str:
    return relative.split("/")[0].removesuffix(".py")


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [f"{base}.{alias.name}" for alias in node.names]


def test_every_module_is_in_a_layer() -> None:
    assert {_layer(name) for name in _modules() if name != "__init__.py"} == set(LAYERS)


def test_layers_import_only_downwards_and_never_the_library() -> None:
    wrong = []
    for name, tree in _modules().items():
        if name == "__init__.py":
            continue
        level = LAYERS.index(_layer(name))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _imported(node):
                if not target.startswith("d365_components"):
                    continue
                if not target.startswith(PACKAGE + "."):
                    wrong.append(f"{name} imports the library: {target}")
                    continue
                layer = target.removeprefix(PACKAGE + ".").split(".")[0]
                if LAYERS.index(layer) > level:
                    wrong.append(f"{name} ({_layer(name)}) imports a higher layer: {target}")
    assert wrong == []


def test_imports_are_at_module_level() -> None:
    late = []
    for name, tree in _modules().items():
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
                late.append(f"{name}:{node.lineno}")
    assert late == []


def test_no_module_imports_private_names_of_another() -> None:
    private = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                private += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []
