"""``tap-dynamics365`` as Meltano runs a Singer tap: --about, --discover, then --config --catalog
--state piped into a real Singer target, and a second run from the saved state.

The console script runs as a subprocess against the emulator; rows are stamped in the past with
the emulator store's clock, so the incremental cutoff (the server's current second) never waits.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio

from d365_components.emulator.extensions import EmulatorFeatures
from d365_components.emulator.server import Emulator
from d365_components.emulator.storage import store as emulator_store
from d365_components.runtime import open_connection

CONNECTION = "dynamics365.oauth2_client_credentials"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def org() -> Iterator[Emulator]:
    with Emulator(seed=None, features=EmulatorFeatures(limits=None)) as emulator:
        yield emulator


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, datetime]:
    now = {"at": datetime(2024, 5, 1, tzinfo=UTC)}
    monkeypatch.setattr(emulator_store, "utc_now", lambda: now["at"].strftime("%Y-%m-%dT%H:%M:%SZ"))
    return now


@pytest_asyncio.fixture
async def client(org: Emulator):
    connection = open_connection({"key": CONNECTION, "inputs": org.connection_inputs()})
    try:
        yield connection.open_client()
    finally:
        await connection.aclose()


def tap(*arguments: str, stdin: Any = None) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("tap-dynamics365", path=str(BIN))
    assert executable, "the console script of pyproject's [project.scripts]"
    return subprocess.run([executable, *arguments], capture_output=True, text=True, timeout=120)


def config(org: Emulator, folder: Path, **settings: Any) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps({"connection": {"key": CONNECTION, "inputs": org.connection_inputs()},
                                "anchor_date": "2024-01-01", **settings}))
    return path


def test_about_lists_the_capabilities_meltano_checks() -> None:
    about = json.loads(tap("--about").stdout)
    assert about["name"] == "tap-dynamics365"
    assert {"catalog", "discover", "state"} <= set(about["capabilities"])
    assert "connection" in about["settings"]["properties"]


def test_discover_prints_streams_with_keys_and_replication_metadata(org: Emulator, tmp_path: Path) -> None:
    found = tap("--config", str(config(org, tmp_path, streams="contacts,accounts,businessunits,nosuchthings")),
                "--discover")
    assert found.returncode == 0, found.stderr
    catalog = json.loads(found.stdout)
    streams = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(streams) == {"contacts", "accounts", "businessunits"}
    assert "nosuchthings: no such table" in found.stderr
    contacts = streams["contacts"]
    assert contacts["key_properties"] == ["contactid"]
    assert contacts["replication_method"] == "INCREMENTAL" and contacts["replication_key"] == "modifiedon"
    jsonschema.Draft7Validator.check_schema(contacts["schema"])
    top = next(m["metadata"] for m in contacts["metadata"] if m["breadcrumb"] == [])
    assert top["table-key-properties"] == ["contactid"] and top["valid-replication-keys"] == ["modifiedon"]
    columns = {tuple(m["breadcrumb"]): m["metadata"] for m in contacts["metadata"] if m["breadcrumb"]}
    assert columns[("properties", "contactid")]["inclusion"] == "automatic"
    assert columns[("properties", "lastname")] == {"inclusion": "available", "selected-by-default": True}
    assert set(contacts["schema"]["properties"]) == {crumb[1] for crumb in columns}


def select(catalog: dict[str, Any], streams: dict[str, str], drop: dict[str, list[str]]) -> dict[str, Any]:
    """What ``meltano select`` writes: ``selected`` on every stream and column, a method per stream."""
    for stream in catalog["streams"]:
        name = stream["tap_stream_id"]
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = name in streams
                if name in streams:
                    entry["metadata"]["replication-method"] = streams[name]
            else:
                entry["metadata"]["selected"] = entry["breadcrumb"][1] not in drop.get(name, [])
    return catalog


async def test_a_catalog_and_state_run_into_a_real_target_then_only_changes(
        org: Emulator, client, clock, tmp_path: Path) -> None:
    made = [(await client.create("contacts", {"lastname": f"tap-{n}", "jobtitle": "x"}))["id"] for n in range(3)]
    settings = config(org, tmp_path, streams="contacts,businessunits,teams", page_size=2, activate_version=False)
    catalog = tmp_path / "catalog.json"
    discovered = json.loads(tap("--config", str(settings), "--discover").stdout)
    catalog.write_text(json.dumps(select(discovered, {"contacts": "INCREMENTAL", "businessunits": "FULL_TABLE"},
                                         {"contacts": ["jobtitle", "modifiedon"]})))
    target = shutil.which("target-singer-jsonl", path=str(BIN))
    assert target, "target-singer-jsonl is in the test extra"
    target_config = tmp_path / "target.json"
    target_config.write_text(json.dumps({"destination": "local", "local": {"folder": str(tmp_path / "out")},
                                         "add_record_metadata": False}))
    state = tmp_path / "state.json"
    state.write_text("{}")  # what Meltano passes before the first run

    def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One run as Meltano does it: the tap into the target; the target's last STATE is saved."""
        out = tap("--config", str(settings), "--catalog", str(catalog), "--state", str(state))
        assert out.returncode == 0, out.stderr
        loaded = subprocess.run([target, "--config", str(target_config)], input=out.stdout, capture_output=True,
                                text=True, timeout=120)
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        states = [json.loads(line) for line in loaded.stdout.splitlines() if line.strip()]
        state.write_text(json.dumps(states[-1]))
        return [json.loads(line) for line in out.stdout.splitlines()], states[-1]

    messages, saved = run()
    assert {m["stream"] for m in messages if m["type"] == "SCHEMA"} == {"contacts", "businessunits"}
    contacts = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "contacts"]
    assert sorted(r["contactid"] for r in contacts) == sorted(made)
    assert "jobtitle" not in contacts[0] and "lastname" in contacts[0]  # deselected; modifiedon is automatic
    assert "modifiedon" in contacts[0]
    schema = next(m for m in messages if m["type"] == "SCHEMA" and m["stream"] == "contacts")["schema"]
    assert "jobtitle" not in schema["properties"]
    assert saved["bookmarks"]["contacts"]["mode"] == "incremental"
    assert saved["bookmarks"]["businessunits"] == {"mode": "full"}
    assert sorted(p.parent.name for p in (tmp_path / "out").rglob("*.singer.gz")) == ["businessunits", "contacts"]

    clock["at"] = datetime(2024, 6, 1, tzinfo=UTC)
    await client.update("contacts", made[1], {"lastname": "changed"})
    messages, _ = run()
    changed = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "contacts"]
    assert [(r["contactid"], r["lastname"]) for r in changed] == [(made[1], "changed")]


def test_bad_config_and_catalog_say_what_is_wrong(org: Emulator, tmp_path: Path) -> None:
    settings = tmp_path / "config.json"
    settings.write_text(json.dumps({"connection": {"key": CONNECTION, "inputs": {}}, "colour": "red"}))
    wrong = tap("--config", str(settings), "--discover")
    assert wrong.returncode == 1 and "unknown settings colour" in wrong.stderr
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"streams": [{"tap_stream_id": "contacts", "schema": {}, "metadata": [
        {"breadcrumb": [], "metadata": {"selected": True, "replication-method": "SIDEWAYS"}}]}]}))
    method = tap("--config", str(config(org, tmp_path)), "--catalog", str(catalog))
    assert method.returncode == 1 and "replication-method 'SIDEWAYS'" in method.stderr
    assert tap("--discover").returncode != 0
