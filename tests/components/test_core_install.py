"""The core install, as a runtime embeds it: a fresh venv with the project and no extras.

It lists, describes and runs every definition it can without a server, writes the manifest, and
runs an action against the emulator this test process serves; the extras' modules (the emulator's
and the webhook host's server stack) cannot be imported there, and commands that need them say
which extra to install in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from d365_test_repo import clean_env, copy_of_the_repository

from d365_components.registry import build_registry, make_plugin_manager

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.install


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A plain venv (no system site-packages) with ``pip install <repo>``: the core only."""
    where = tmp_path_factory.mktemp("core")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    source = copy_of_the_repository(where / "repo")
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(source)], capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    yield venv


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True,
                          env=clean_env(COLUMNS="80"), timeout=120)


def test_extras_are_not_importable(core_venv: Path) -> None:
    for module in ("starlette", "uvicorn", "trustme", "lark", "pytest", "d365_components.emulator.server",
                   "d365_components.webhook_host"):
        result = _run(core_venv, "python", "-c", f"import {module}")
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, module
    assert _run(core_venv, "python", "-c", "import d365_components.testing").returncode == 0


def test_lists_and_describes_every_definition(core_venv: Path) -> None:
    expected = sorted(build_registry(make_plugin_manager(entry_points=False)).all())
    listed = _run(core_venv, "d365", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(row["key"] for row in json.loads(listed.stdout)) == expected
    script = (
        "import sys\nfrom d365_components.cli import main\n"
        "for key in sys.argv[1:]:\n    main(['describe', key])\n"
    )
    described = _run(core_venv, "python", "-c", script, *expected)
    assert described.returncode == 0, described.stderr
    assert all(f" {key})" in described.stdout for key in expected)


def test_writes_the_manifest(core_venv: Path, tmp_path: Path) -> None:
    written = _run(core_venv, "d365", "manifest", "--out", str(tmp_path))
    assert written.returncode == 0, written.stderr
    for name in ("dynamics365.json", "manifest.schema.json"):
        assert (tmp_path / name).read_text() == (ROOT / "manifests" / name).read_text()


def test_runs_an_action_against_an_emulator_served_elsewhere(core_venv: Path, emulator, tmp_path: Path) -> None:
    connection = tmp_path / "connection.json"
    connection.write_text(json.dumps({"key": "dynamics365.oauth2_client_credentials",
                                      "inputs": emulator.connection_inputs()}))
    ran = _run(core_venv, "d365", "run", "dynamics365.query_entities",
               "--input", '{"entityType": "accounts", "recordsPerPage": 2}', "--connection", f"@{connection}")
    assert ran.returncode == 0, ran.stderr
    assert len(json.loads(ran.stdout)["value"]) == 2


def test_commands_needing_an_extra_say_which_in_one_line(core_venv: Path) -> None:
    for args, extra in ((["emulator"], "emulator"), (["demo"], "emulator"),
                        (["serve-trigger", "dynamics365.webhook"], "webhook")):
        result = _run(core_venv, "d365", *args)
        assert result.returncode == 1
        assert result.stderr == (f"d365: error: d365 {args[0]} needs the {extra} extra: "
                                 f"pip install 'd365-components[{extra}]'\n")
    script = "from d365_components.testing import emulated_org\nwith emulated_org():\n    pass\n"
    result = _run(core_venv, "python", "-c", script)
    assert "MissingExtraError: d365_components.testing.emulated_org() needs the emulator extra" in result.stderr
