"""The d365 command as a user meets it: tables, forms, JSON, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from d365_components import extras
from d365_components.cli import main
from d365_components.registry import LOAD_PLUGINS_ENV

PLUGINS = Path(__file__).parents[1] / "plugins"


def d365(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console script in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-c", "from d365_components.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", LOAD_PLUGINS_ENV: "1", **(env or {})},
        timeout=120,
    )


def test_bad_arguments_give_one_line_and_exit_2(capsys) -> None:
    for argv in (["nope"], ["describe"], ["manifest", "--bogus"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("d365: error:") and "\n" not in err and "Traceback" not in err


def test_failures_give_one_line_and_exit_1(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["describe", "dynamics365.no_such_thing"])
    assert info.value.code == 1
    assert capsys.readouterr().err.strip().startswith("d365: error: No definition has the key")
    with pytest.raises(SystemExit):
        main(["run", "dynamics365.no_such_thing", "--input", "{not json"])
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "x.y", "--input", f"@{tmp_path / 'missing.json'}"])
    assert "cannot read" in capsys.readouterr().err


@pytest.fixture
def plugin_on_path(tmp_path: Path) -> dict[str, str]:
    """A third-party distribution, outside this repository, exposing the d365_components entry point."""
    dist = tmp_path / "d365_acme-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: d365-acme\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[d365_components]\nacme = d365_test_acme\n")
    (tmp_path / "d365_test_acme.py").write_text((PLUGINS / "d365_test_acme.py").read_text())
    return {"PYTHONPATH": str(tmp_path)}


def test_external_plugin_shows_in_list_describe_run_and_manifest(plugin_on_path, tmp_path) -> None:
    listed = d365("list", "--json", env=plugin_on_path)
    assert listed.returncode == 0, listed.stderr
    assert {"acme.echo", "acme.colors"} <= {row["key"] for row in json.loads(listed.stdout)}

    described = d365("describe", "acme.echo", env=plugin_on_path)
    assert described.returncode == 0, described.stderr
    assert "recordsPerPage" in described.stdout and "5000" not in described.stdout.split("recordsPerPage")[0]

    ran = d365("run", "acme.echo", "--input", '{"message": "hi", "fetchAll": "true"}', env=plugin_on_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"message": "hi", "recordsPerPage": 100, "fetchAll": True}

    bad = d365("run", "acme.echo", "--input", '{"recordsPerPage": 0}', env=plugin_on_path)
    assert bad.returncode == 1 and "/message: is required" in bad.stderr and "Traceback" not in bad.stderr

    out = tmp_path / "out"
    written = d365("manifest", "--component", "acme", "--out", str(out), env=plugin_on_path)
    assert written.returncode == 0, written.stderr
    document = json.loads((out / "acme.json").read_text())
    assert [a["key"] for a in document["actions"]] == ["acme.echo"]


def test_manifest_check_passes_on_the_checked_in_files() -> None:
    result = d365("manifest", "--check")
    assert result.returncode == 0, result.stderr
    stale = d365("manifest", "--check", "--out", "/nonexistent-dir")
    assert stale.returncode == 1 and "stale" in stale.stderr


def test_an_importable_module_is_not_a_plugin_without_an_entry_point() -> None:
    result = d365("describe", "acme.echo", env={"PYTHONPATH": str(PLUGINS)})
    assert result.returncode == 1 and "No definition has the key" in result.stderr
    assert result.stderr.count("\n") == 1


def test_plugins_can_be_switched_off(plugin_on_path) -> None:
    result = d365("describe", "acme.echo", env={**plugin_on_path, "D365_COMPONENTS_LOAD_PLUGINS": "0"})
    assert result.returncode == 1 and "No definition has the key" in result.stderr


def test_runs_without_a_connection_say_so(capsys) -> None:
    for key in ("dynamics365.query_entities", "dynamics365.tables"):
        with pytest.raises(SystemExit):
            main(["run", key, "--input", '{"entityType": "accounts"}' if "query" in key else "{}"])
        assert "needs a connection" in capsys.readouterr().err
    main(["run", "dynamics365.build_filter_expression", "--input",
          '{"conditions": [{"column": "name", "operator": "eq", "value": "O\'Brien"}]}'])
    assert json.loads(capsys.readouterr().out) == {"filterExpression": "name eq 'O''Brien'"}


def test_emulator_arguments_fail_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--faults", "bogus=1"])
    assert info.value.code == 2 and "unknown entry 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--latency", "30ms,per-page=1ms"])
    assert info.value.code == 2 and "latency: unknown entry 'per-page'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["describe", "dynamics365.create_entty"])
    assert "Did you mean dynamics365.create_entity?" in capsys.readouterr().err


def test_list_reads_at_80_columns_and_through_a_pipe() -> None:
    result = d365("list", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    listed = json.loads(d365("list", "--json").stdout)
    assert all(len(line) <= 80 for line in lines)
    assert len(lines) < len(listed) * 1.5  # about one line a definition
    for row in listed:  # every key whole on a line, followed by the start of its label
        line = next(line for line in lines if line.split()[:1] == [row["key"]])
        assert row["label"].startswith(line.split(None, 1)[1].strip())
    words = {word for row in listed for word in row["label"].split()}
    assert all(word in words for line in lines if line.startswith("   ") for word in line.split())  # no word cut
    wide = d365("list", "--wide", "--kind", "triggers", env={"COLUMNS": "80"})
    assert "webhook" in wide.stdout and all(len(line) <= 80 for line in wide.stdout.splitlines())


def test_describe_shows_names_and_titles(capsys) -> None:
    main(["describe", "dynamics365.query_entities"])
    text = capsys.readouterr().out
    assert "entityType - Table (string, required)" in text
    assert "recordsPerPage - Rows per page (integer, default 100)" in text


def test_at_file_expands_the_home_directory(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "inputs.json").write_text('{"conditions": [{"column": "name", "operator": "eq", "value": "x"}]}')
    main(["run", "dynamics365.build_filter_expression", "--input", "@~/inputs.json"])
    assert json.loads(capsys.readouterr().out) == {"filterExpression": "name eq 'x'"}


def test_a_missing_extra_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setitem(extras.EXTRAS, "emulator", ("no_such_module_d365",))
    monkeypatch.setitem(extras.EXTRAS, "webhook", ("no_such_module_d365",))
    for argv, extra in ((["emulator"], "emulator"), (["demo"], "emulator"),
                        (["serve-trigger", "dynamics365.webhook"], "webhook")):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 1
        assert capsys.readouterr().err == (
            f"d365: error: d365 {argv[0]} needs the {extra} extra: pip install 'd365-components[{extra}]'\n")
