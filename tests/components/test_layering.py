"""The layers of the package, read from the imports of every module (nothing is imported here).

From the bottom up:

- ``core``: the component model (definitions, inputs, errors, redaction, hookspecs, conventions,
  version, the package root). It may name the Web API client in type hints only.
- ``connections``: OAuth and the Web API client.
- ``actions``, then ``triggers``.
- ``top``: what collects and runs definitions (registry, runtime, the CLI, manifests, the demo,
  the test kit, the webhook host).
- ``emulator``: a sub-system of its own that imports nothing of the library; only the CLI, the
  demo and the test kit start it.

A lower layer never imports a higher one, no module imports another package's private module,
and the library has no imports inside functions (they hide cycles) except of what the extras bring
(so that a core install works without them) and the few listed below with the reason.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "d365_components"

#: modules of components/ that collect or run definitions; every other module there is core
TOP = frozenset({
    "cli", "cli_bulk", "cli_extract", "cli_input", "demo", "dynamics365", "extract_output", "manifest", "pytest_plugin", "registry", "runtime", "scale", "testing", "webhook_host",
    # scale: runs actions in Celery workers (it collects and runs definitions, like the runtime)
    # the Singer tap's command line (tap-dynamics365): it opens connections through the runtime, as cli_extract does
    "tap",
})
#: the only modules that may import the emulator
EMULATOR_USERS = frozenset({f"{PACKAGE}.{name}" for name in ("cli", "demo", "testing", "pytest_plugin")})
#: layer -> the layers it may import
ALLOWED = {
    "core": {"core"},
    "connections": {"core", "connections"},
    "actions": {"core", "connections", "actions"},
    "triggers": {"core", "connections", "actions", "triggers"},
    "top": {"core", "connections", "actions", "triggers", "top", "emulator"},
    "emulator": {"emulator"},
}
#: (module, imported module) pairs that break the rules above for now, and why
KNOWN_EXCEPTIONS = {
    (f"{PACKAGE}.triggers.host", f"{PACKAGE}.registry"): "the webhook host moves next to the runtime (issue 10)",
    (f"{PACKAGE}.triggers.host", f"{PACKAGE}.runtime"): "the webhook host moves next to the runtime (issue 10)",
}
#: what the extras bring: the top layer may import these inside a function, so that a core install
#: works without them (the emulator, the webhook host and their server stack)
EXTRAS = frozenset({"starlette", "uvicorn", "trustme", "jwt", "lark", "pytest"})
#: other imports inside functions the library keeps, by (module, imported module), and why
LOCAL_IMPORTS = {
    (f"{PACKAGE}.cli", f"{PACKAGE}.webhook_host"): "the webhook host is an extra",
    (f"{PACKAGE}.cli_bulk", f"{PACKAGE}.scale"): "Celery and Redis are an extra ([celery])",
    (f"{PACKAGE}.webhook_host", "socket"): "known debt: move to the top of the module",
    # cold start (issue 16): heavy dependencies imported where they are first needed
    (f"{PACKAGE}.inputs", "jsonschema"): "validation imports jsonschema on first use: a tenth of the cold start",
    (f"{PACKAGE}.inputs", "jsonschema_rs"): "the compiled validator is built on first validation, as jsonschema's",
    (f"{PACKAGE}.registry", "jsonschema"): "schema checks run in tests and `d365 manifest`, never at a start",
}


@dataclass(frozen=True)
class Import:
    module: str
    target: str
    line: int
    in_function: bool
    type_only: bool
    relative: bool = False

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name, from pyproject's package-dir mapping."""
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules = {}
    for package, folder in package_dirs.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, alias.name, node.lineno, in_function, type_only))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if submodule in MODULES else base
                found.append(Import(module, target, node.lineno, in_function, type_only, node.level > 0))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, in_function, True)
            for child in node.orelse:
                visit(child, in_function, type_only)
        else:
            inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            for child in ast.iter_child_nodes(node):
                visit(child, inside, type_only)

    visit(ast.parse(path.read_text(), filename=str(path)), False, False)
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def layer(module: str) -> str:
    if not (module == PACKAGE or module.startswith(PACKAGE + ".")):
        return "outside"
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    if parts[1] in ("emulator", "connections", "actions", "triggers"):
        return parts[1]
    return "top" if len(parts) == 2 and parts[1] in TOP else "core"


def _ours(imp: Import) -> bool:
    return layer(imp.target) != "outside"


def _of_an_extra(imp: Import) -> bool:
    """An import of the emulator or of an extra's package, from the top layer."""
    extra = layer(imp.target) == "emulator" or imp.target.split(".")[0] in EXTRAS
    return extra and (layer(imp.module) == "top" or imp.module == f"{PACKAGE}.triggers.host")  # until it moves


def test_the_scan_sees_every_layer() -> None:
    layers = {layer(module) for module in MODULES}
    assert {"core", "connections", "actions", "triggers", "top", "emulator"} <= layers
    assert len([imp for imp in IMPORTS if _ours(imp)]) > 100


def test_imports_are_absolute() -> None:
    assert [str(imp) for imp in IMPORTS if imp.relative] == []


@pytest.mark.parametrize("source", ["core", "connections", "actions", "triggers", "emulator"])
def test_no_layer_imports_a_higher_one(source: str) -> None:
    broken = []
    for imp in IMPORTS:
        if layer(imp.module) != source or not _ours(imp) or (imp.module, imp.target) in KNOWN_EXCEPTIONS:
            continue
        target = layer(imp.target)
        if source == "core" and target == "connections" and imp.type_only:
            continue  # Context names the Web API client in its type hints
        if target not in ALLOWED[source]:
            broken.append(f"{imp} ({source} -> {target})")
    assert broken == []


def test_only_the_cli_demo_and_test_kit_import_the_emulator() -> None:
    broken = [
        str(imp)
        for imp in IMPORTS
        if layer(imp.target) == "emulator" and layer(imp.module) != "emulator" and imp.module not in EMULATOR_USERS
    ]
    assert broken == []


def test_the_emulator_imports_nothing_of_the_library() -> None:
    broken = [str(imp) for imp in IMPORTS if layer(imp.module) == "emulator" and _ours(imp) and layer(imp.target) != "emulator"]
    assert broken == []


def test_private_modules_stay_in_their_package() -> None:
    def private(name: str) -> bool:
        return any(part.startswith("_") and part != "__init__" for part in name.split("."))

    broken = [
        str(imp)
        for imp in IMPORTS
        if _ours(imp) and private(imp.target) and imp.target.rsplit(".", 1)[0] != imp.module.rsplit(".", 1)[0]
    ]
    assert broken == []


def test_no_imports_inside_functions_of_the_library() -> None:
    """The emulator is left to its own rule (issue 10: only documented optional-dependency ones)."""
    broken = [
        str(imp)
        for imp in IMPORTS
        if imp.in_function
        and layer(imp.module) != "emulator"
        and not _of_an_extra(imp)
        and (imp.module, imp.target) not in LOCAL_IMPORTS
    ]
    assert broken == []


def test_the_lists_of_exceptions_are_current() -> None:
    """An exception that no longer happens is removed, so the lists only shrink."""
    happening = {(imp.module, imp.target) for imp in IMPORTS}
    local = {(imp.module, imp.target) for imp in IMPORTS if imp.in_function}

    def exists(pair: tuple[str, str]) -> bool:  # both ends, while modules move between branches
        return pair[0] in MODULES and (pair[1] in MODULES or layer(pair[1]) == "outside")

    gone = [pair for pair in KNOWN_EXCEPTIONS if exists(pair) and pair not in happening]
    gone += [pair for pair in LOCAL_IMPORTS if exists(pair) and pair not in local]
    assert gone == []
