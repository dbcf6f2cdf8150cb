"""The README's promises: every code block in it runs as written.

Each block is claimed by one test below through a phrase it contains; a block no test claims
fails ``test_every_block_is_run``. The test command is the one block not run here: CI runs it
(``.ci/run`` holds it verbatim).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from d365_test_repo import clean_env, copy_of_the_repository

from d365_components import hookspecs
from d365_components.registry import LOAD_PLUGINS_ENV, build_registry, make_plugin_manager
from d365_components.runtime import invoke_sync, open_connection, run_sync

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)

#: a phrase of each block -> the test that runs it
CLAIMS = {
    "d365 demo": "test_demo_command_installs_what_it_needs",
    '.venv/bin/pip install -q -e ".[test]" && .venv/bin/pytest': "test_ci_runs_the_readme_test_command",
    "_D365_COMPLETE=bash_source": "test_completion_line_installs_completion",
    "d365 run dynamics365.query_entities": "test_run_example_reads_the_emulator_connection_file",
    "def test_new_accounts_are_found": "test_testing_kit_example_runs",
    "with emulated_org(": "test_emulated_org_example_runs",
    "registry = get_registry()": "test_embedding_example_runs",
    "class CountRows": "test_plugin_example_registers_publishes_and_runs",
    "definition_test_class(": "test_conformance_one_liner_runs",
    "build_ui_schemas(get_registry()": "test_dynamic_dropdown_example_runs",
    "addKeyword": "test_strict_ajv_snippet_compiles_every_schema",
    "| target-singer-jsonl": "test_replication_line_loads_a_singer_target",
}


def _block(phrase: str) -> str:
    (source,) = [body for _, body in BLOCKS if phrase in body]
    return source


def test_every_block_is_run() -> None:
    for language, body in BLOCKS:
        claimed = [phrase for phrase in CLAIMS if phrase in body]
        assert len(claimed) == 1, f"README {language} block claimed by {claimed}:\n{body}"
        assert CLAIMS[claimed[0]] in globals()


def test_ci_runs_the_readme_test_command() -> None:
    demo, tests = [body.strip() for language, body in BLOCKS if language == "sh"][:2]
    assert "d365 demo" in demo and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
    mypy = next(i for i, line in enumerate(ci) if line.startswith(".venv/bin/mypy"))
    assert ci.index(tests) < ci.index(".venv/bin/ruff check .") < mypy


@pytest.mark.install
def test_demo_command_installs_what_it_needs(tmp_path: Path) -> None:
    """The first command, in a fresh copy of the repository: a venv with the emulator extra, then the demo."""
    copy = copy_of_the_repository(tmp_path / "repo")
    result = subprocess.run(["sh", "-c", _block("d365 demo")], cwd=copy, capture_output=True, text=True,
                            env=clean_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Done: 14 steps" in result.stdout


@pytest.fixture
def home(tmp_path: Path, emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose cache holds the connection file `d365 emulator` writes, for the session's emulator."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    cache = tmp_path / ".cache" / "d365-components" / "emulator"
    cache.mkdir(parents=True)
    config = {"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()}
    (cache / "connection-8443.json").write_text(json.dumps(config))
    return tmp_path


def test_run_example_reads_the_emulator_connection_file(home: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", _block("d365 run dynamics365.query_entities")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 1 <= len(json.loads(result.stdout)["value"]) <= 5


def test_completion_line_installs_completion() -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", _block("_D365_COMPLETE") + "complete -p d365"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 0 and "_d365_completion" in result.stdout, result.stderr
    words = {**env, "_D365_COMPLETE": "bash_complete", "COMP_WORDS": "d365 describe dynamics365.query_",
             "COMP_CWORD": "2"}
    completed = subprocess.run(["d365"], capture_output=True, text=True, env=words, timeout=60)
    assert completed.stdout.split() == ["plain,dynamics365.query_attributes", "plain,dynamics365.query_entities"]


def test_testing_kit_example_runs(run_action) -> None:
    namespace: dict = {}
    exec(compile(_block("def test_new_accounts_are_found"), "README.md", "exec"), namespace)
    namespace["test_new_accounts_are_found"](run_action)


def test_emulated_org_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(_block("with emulated_org("), "README.md", "exec"), {})
    assert capsys.readouterr().out.endswith(" accounts\n")


def test_embedding_example_runs(home: Path) -> None:
    namespace: dict = {}
    exec(compile(_block("registry = get_registry()"), "README.md", "exec"), namespace)
    assert namespace["rows"]["value"]
    run_sync(namespace["connection"].aclose())


def _plugin_module() -> types.ModuleType:
    module = types.ModuleType("acme_d365_plugin")
    exec(compile(_block("class CountRows"), "README.md", "exec"), module.__dict__)
    return module


def test_plugin_example_registers_publishes_and_runs(dataverse_connection) -> None:
    pm = make_plugin_manager(entry_points=False)
    pm.register(_plugin_module())
    registry = build_registry(pm)
    assert registry.actions["acme.count_rows"].input_schema()["required"] == ["entityType"]
    connection = open_connection(dataverse_connection, registry)
    try:
        counted = invoke_sync("acme.count_rows", {"entityType": "accounts"}, connection, registry=registry)
        listed = invoke_sync("dynamics365.query_entities", {"entityType": "accounts", "fetchAll": True}, connection)
    finally:
        run_sync(connection.aclose())
    assert counted == {"count": len(listed["value"]), "moreThan5000": False}


def test_conformance_one_liner_runs(tmp_path: Path) -> None:
    """As written, in a plugin's own suite, with the plugin installed (a distribution on the path)."""
    (tmp_path / "acme_d365_plugin.py").write_text(_block("class CountRows"))
    dist = tmp_path / "acme_d365-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-d365\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[d365_components]\nacme = acme_d365_plugin\n")
    (tmp_path / "test_acme.py").write_text(_block("definition_test_class("))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_acme.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(tmp_path), LOAD_PLUGINS_ENV: "1"})
    assert result.returncode == 0, result.stdout[-2000:]
    assert "5 passed" in result.stdout


def test_every_hook_is_documented() -> None:
    """As datasette does: each hookspec has a docstring and a README heading, and no heading is stale."""
    specs = {name for name, value in vars(hookspecs).items()
             if callable(value) and hasattr(value, "d365_components_spec")}
    assert specs and all(getattr(hookspecs, name).__doc__ for name in specs)
    section = README.split("## Hooks", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^### (\w+)\(register\)$", section, flags=re.M))
    assert documented == specs


def test_strict_ajv_snippet_compiles_every_schema(tmp_path: Path) -> None:
    """The README's Ajv lines, as written, make a strict Ajv2020 that compiles every input schema."""
    modules = ROOT / "tests" / "js" / "node_modules"
    if not modules.exists():
        assert os.environ.get("CI") != "true", "CI installs tests/js (npm ci)"
        pytest.skip("npm packages of tests/js not installed (npm ci --prefix tests/js)")
    script = tmp_path / "snippet.mjs"
    script.write_text(
        f'import {{ createRequire }} from "node:module";\n'
        f'const require = createRequire({json.dumps(str(modules) + "/")});\n'
        'const Ajv2020 = require("ajv/dist/2020.js").default;\n'
        'const addFormats = require("ajv-formats").default;\n'
        f'const vocabulary = require({json.dumps(str(ROOT / "manifests" / "vocabulary.schema.json"))});\n'
        f'const manifest = require({json.dumps(str(ROOT / "manifests" / "dynamics365.json"))});\n'
        + _block("addKeyword") +
        'let compiled = 0;\n'
        'for (const kind of ["actions", "triggers", "connections", "dataSources"])\n'
        '  for (const d of manifest[kind] ?? []) { ajv.compile(d.inputs); compiled++; }\n'
        'console.log(compiled);\n'
    )
    result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 50


def test_replication_line_loads_a_singer_target(home: Path, tmp_path: Path) -> None:
    """The one-line replication, as written, lands rows in a real Singer target's files and saves state."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-o", "pipefail", "-c", _block("| target-singer-jsonl")], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {p.parent.name for p in (tmp_path / "warehouse").rglob("*.singer.gz")} >= {"accounts", "contacts"}
    assert json.loads((tmp_path / "state.json").read_text())["bookmarks"].keys() >= {"accounts", "contacts"}


def test_dynamic_dropdown_example_runs(dataverse_connection: dict[str, Any]) -> None:
    namespace: dict[str, Any] = {"connection": dataverse_connection}
    exec(compile(_block("build_ui_schemas(get_registry()"), "README.md", "exec"), namespace)
    choices = namespace["choices"]
    assert choices and all({"label", "value"} <= set(choice) for choice in choices)
