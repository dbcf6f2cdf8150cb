"""The extract engine against the emulator: anchor date, saved state, deletes, a run killed and
resumed, every table, a missing table, and a real Singer target loading the output.

The emulator stamps rows with its store's clock (whole seconds, like Dataverse); the tests set
that clock to fixed past moments so many rows share a second and nothing waits for the cutoff.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
from click.testing import CliRunner

from d365_components.cli_extract import extract_command
from d365_components.connections.extract import DELETED_AT, ExtractError, RateLimiter, extract, parse_streams
from d365_components.emulator.extensions import EmulatorFeatures
from d365_components.emulator.server import Emulator
from d365_components.emulator.storage import store as emulator_store
from d365_components.errors import InputValidationError
from d365_components.extract_output import JsonlWriter, SingerWriter
from d365_components.registry import get_registry
from d365_components.runtime import invoke, open_connection

CONNECTION = "dynamics365.oauth2_client_credentials"
OLD = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
ANCHOR = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def org() -> Iterator[Emulator]:
    """An org without demo rows: each test writes the rows it counts."""
    with Emulator(seed=None, features=EmulatorFeatures(limits=None)) as emulator:
        yield emulator


class Clock:
    """The emulator store's clock, set by the test."""

    def __init__(self) -> None:
        self.now = OLD

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(emulator_store, "utc_now", fake)
    return fake


@pytest_asyncio.fixture
async def client(org: Emulator):
    connection = open_connection({"key": CONNECTION, "inputs": org.connection_inputs()})
    try:
        yield connection.open_client()
    finally:
        await connection.aclose()


async def singer(client: Any, streams: str, state: dict | None = None, **options: Any) -> list[dict[str, Any]]:
    """The Singer messages of one run, parsed."""
    out = io.StringIO()
    options.setdefault("anchor", ANCHOR)
    await extract(client, SingerWriter(out), streams=parse_streams(streams, options.pop("mode", "incremental")),
                  state=state, **options)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def records(messages: list[dict[str, Any]], stream: str | None = None) -> list[dict[str, Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and stream in (None, m["stream"])]


def last_state(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return [m for m in messages if m["type"] == "STATE"][-1]["value"]


async def create(client: Any, entity_set: str, count: int, **values: Any) -> list[str]:
    return [(await client.create(entity_set, {**values}))["id"] for _ in range(count)]


async def test_anchor_then_state_returns_exactly_what_changed(client, clock) -> None:
    old = await create(client, "contacts", 3, lastname="old")
    clock.now = datetime(2024, 6, 1, tzinfo=UTC)
    new = await create(client, "contacts", 7, lastname="new")  # seven rows in one second

    first = await singer(client, "contacts", page_size=2)
    ids = [r["contactid"] for r in records(first)]
    assert sorted(ids) == sorted(new)  # exactly the rows modified since the anchor, once each
    schema = next(m for m in first if m["type"] == "SCHEMA")
    assert schema["key_properties"] == ["contactid"] and schema["bookmark_properties"] == ["modifiedon"]
    assert schema["schema"]["properties"]["modifiedon"]["format"] == "date-time"
    assert all(m["time_extracted"] for m in first if m["type"] == "RECORD")

    clock.now = datetime(2024, 7, 1, tzinfo=UTC)
    await client.update("contacts", old[0], {"jobtitle": "changed"})
    await client.update("contacts", new[3], {"jobtitle": "changed"})
    added = await create(client, "contacts", 1, lastname="added")
    second = await singer(client, "contacts", last_state(first), page_size=2)
    assert sorted(r["contactid"] for r in records(second)) == sorted([old[0], new[3], *added])
    assert records(await singer(client, "contacts", last_state(second))) == []


async def test_change_tracking_delivers_updates_and_deletes_as_tombstones(client, clock) -> None:
    clock.now = datetime(2024, 5, 1, tzinfo=UTC)
    ids = await create(client, "accounts", 3, name="tracked")
    first = await singer(client, "accounts", mode="changes")
    assert sorted(r["accountid"] for r in records(first)) == sorted(ids)
    assert DELETED_AT in next(m for m in first if m["type"] == "SCHEMA")["schema"]["properties"]
    assert last_state(first)["bookmarks"]["accounts"]["deltaLink"]

    await client.update("accounts", ids[0], {"name": "renamed"})
    await client.delete("accounts", ids[1])
    second = records(await singer(client, "accounts", last_state(first), mode="changes"))
    updated = [r for r in second if not r.get(DELETED_AT)]
    deleted = [r for r in second if r.get(DELETED_AT)]
    assert [(r["accountid"], r["name"]) for r in updated] == [(ids[0], "renamed")]
    assert [r["accountid"] for r in deleted] == [ids[1]]


class Meddler:
    """The real client; after the n-th request, runs a write: rows change while the run reads."""

    def __init__(self, client: Any, after: int, write: Any) -> None:
        self.client, self.after, self.write, self.calls = client, after, write, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        response = await self.client.request(*args, **kwargs)
        self.calls += 1
        if self.calls == self.after:
            await self.write()
        return response


async def test_rows_changed_during_a_run_come_once_per_version(client, clock) -> None:
    clock.now = datetime(2024, 10, 1, tzinfo=UTC)
    ids = await create(client, "quotes", 9, name="busy")  # one second, ordered by id within it
    ordered = sorted(ids)

    async def write() -> None:  # after the first page: one row already read, one not yet
        clock.now = datetime(2024, 10, 2, tzinfo=UTC)
        await client.update("quotes", ordered[0], {"description": "again"})
        await client.update("quotes", ordered[-1], {"description": "moved"})
        await create(client, "quotes", 1, name="during")

    first = await singer(Meddler(client, 2, write), "quotes", page_size=3)  # the cutoff, then page 1
    second = await singer(client, "quotes", last_state(first))
    delivered = [(r["quoteid"], r["modifiedon"]) for r in records(first) + records(second)]
    assert len(delivered) == len(set(delivered))  # no version twice
    final = {r["quoteid"]: r["modifiedon"] async for r in client.rows("quotes", params={"$select": "quoteid,modifiedon"})}
    assert set(final.items()) <= set(delivered)  # every row's last version delivered
    assert len(delivered) == len(final) + 1  # and only ordered[0] twice (read before it changed)


@pytest.mark.parametrize("mode", ["incremental", "full", "changes"])
async def test_a_run_killed_midway_and_resumed_loses_and_repeats_nothing(client, clock, mode) -> None:
    clock.now = datetime(2024, 8, 1, tzinfo=UTC)
    await create(client, "leads", 5, lastname=f"kill-{mode}")
    clock.now = datetime(2024, 8, 1, 0, 0, 1, tzinfo=UTC)
    await create(client, "leads", 4, lastname=f"kill-{mode}")
    whole = await singer(client, "leads", mode=mode, page_size=2)
    everything = sorted(r["leadid"] for r in records(whole))
    assert len(everything) == len(set(everything)) >= 9
    for killed_after in (1, 4, 7):  # records the target had received when the tap died
        seen, delivered, state = 0, [], None
        pending: list[str] = []
        for message in whole:
            if message["type"] == "RECORD":
                seen += 1
                if seen > killed_after:
                    break
                pending.append(message["record"]["leadid"])
            elif message["type"] == "STATE":  # the target commits records up to each state
                delivered += pending
                pending, state = [], message["value"]
        resumed = records(await singer(client, "leads", state, mode=mode, page_size=2))
        assert sorted(delivered + [r["leadid"] for r in resumed]) == everything


async def test_jsonl_files_resume_after_a_crash_without_duplicates(client, clock, tmp_path: Path) -> None:
    clock.now = datetime(2024, 9, 1, tzinfo=UTC)
    ids = await create(client, "opportunities", 7, name="jsonl")
    streams = parse_streams("opportunities", "incremental")
    writer = JsonlWriter(tmp_path, None)
    await extract(client, writer, streams=streams, anchor=ANCHOR, page_size=2, max_records=3)
    writer.close()
    state = json.loads((tmp_path / "state.json").read_text())
    with (tmp_path / "opportunities.jsonl").open("a") as file:  # written after the last state, then a crash
        file.write('{"opportunityid": "half-written"}\n')
    writer = JsonlWriter(tmp_path, state)
    await extract(client, writer, streams=streams, state=state, anchor=ANCHOR, page_size=2)
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "opportunities.jsonl").read_text().splitlines()]
    assert sorted(r["opportunityid"] for r in lines) == sorted(ids)


async def test_star_covers_every_readable_table(client, clock) -> None:
    messages = await singer(client, "*", mode="full", concurrency=8)
    definitions = await client.get_json("EntityDefinitions", params={"$select": "EntitySetName,IsPrivate,IsIntersect"})
    readable = {e["EntitySetName"] for e in definitions["value"]
                if e.get("EntitySetName") and not e.get("IsPrivate") and not e.get("IsIntersect")}
    assert {m["stream"] for m in messages if m["type"] == "SCHEMA"} == readable
    assert set(last_state(messages)["bookmarks"]) == readable
    assert records(messages, "systemusers")  # the org's users are there in every org


async def test_a_missing_table_is_skipped_with_a_warning(client, clock, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="d365_components.connections.extract"):
        messages = await singer(client, "nosuchthings,transactioncurrencies", mode="full")
    assert "nosuchthings: no such table" in caplog.text
    assert {m["stream"] for m in messages if m["type"] == "SCHEMA"} == {"transactioncurrencies"}


def test_a_real_singer_target_loads_the_output(org: Emulator, clock, tmp_path: Path) -> None:
    target = shutil.which("target-singer-jsonl", path=str(Path(sys.executable).parent))
    assert target, "target-singer-jsonl is in the test extra"
    connection = tmp_path / "connection.json"
    connection.write_text(json.dumps({"key": CONNECTION, "inputs": org.connection_inputs()}))
    config = tmp_path / "target.json"
    config.write_text(json.dumps({"destination": "local", "local": {"folder": str(tmp_path / "out")},
                                  "add_record_metadata": False}))
    tap = subprocess.Popen(
        [sys.executable, "-m", "d365_components.cli_extract", "--connection", f"@{connection}",
         "--streams", "systemusers,businessunits,transactioncurrencies:changes", "--mode", "full", "--page-size", "1",
         "--no-activate-version"],  # an old singer-python target: it refuses the message
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    loaded = subprocess.run([target, "--config", str(config)], stdin=tap.stdout, capture_output=True, timeout=120)
    assert tap.stdout is not None
    tap.stdout.close()
    assert tap.wait(60) == 0, tap.stderr.read() if tap.stderr else ""
    assert loaded.returncode == 0, loaded.stderr.decode()[-2000:]
    written = sorted(p.parent.name for p in (tmp_path / "out").rglob("*.singer.gz"))
    assert written == ["businessunits", "systemusers", "transactioncurrencies"]
    states = [json.loads(line) for line in loaded.stdout.decode().splitlines() if line.strip()]
    assert states and set(states[-1]["bookmarks"]) == {"businessunits", "systemusers", "transactioncurrencies"}


async def test_extract_changes_action_pages_with_state(org: Emulator, client, clock) -> None:
    key = "dynamics365.extract_changes"
    connection = {"key": CONNECTION, "inputs": org.connection_inputs()}
    schema = get_registry().get(key, "actions").output_json_schema()
    clock.now = datetime(2024, 11, 1, tzinfo=UTC)
    ids = await create(client, "appointments", 5, subject="action")

    async def drain(state: dict | None) -> tuple[list[dict[str, Any]], dict]:
        got: list[dict[str, Any]] = []
        while True:
            output = await invoke(key, {"entityType": "appointments", "anchorDate": "2024-10-01T00:00:00Z",
                                        "pageSize": 2, "state": state}, connection)
            jsonschema.Draft202012Validator(schema).validate(output)
            got += output["records"]
            state = output["state"]
            if not output["hasMore"]:
                return got, state

    first, state = await drain(None)
    assert sorted(r["activityid"] for r in first) == sorted(ids)
    clock.now = datetime(2024, 11, 2, tzinfo=UTC)
    await client.update("appointments", ids[2], {"subject": "changed"})
    second, _ = await drain(state)
    assert [(r["activityid"], r["subject"]) for r in second] == [(ids[2], "changed")]

    missing = await invoke(key, {"entityType": "nosuchthings"}, connection)
    assert missing["records"] == [] and "no table" in missing["warnings"][0]
    with pytest.raises(InputValidationError) as raised:
        await invoke(key, {"entityType": "appointments", "state": {"bookmarks": []}}, connection)
    assert raised.value.errors[0].pointer == "/state"


def test_cli_writes_jsonl_and_state_then_reads_only_changes(org: Emulator, clock, tmp_path: Path) -> None:
    connection = tmp_path / "connection.json"
    connection.write_text(json.dumps({"key": CONNECTION, "inputs": org.connection_inputs()}))
    arguments = ["--connection", f"@{connection}", "--streams", "businessunits,nosuchthings", "--output", "jsonl",
                 "--output-dir", str(tmp_path / "out"), "--anchor-date", "2000-01-01"]
    first = CliRunner().invoke(extract_command, arguments)
    assert first.exit_code == 0, first.output
    assert "skipped (no such table): nosuchthings" in first.stderr
    rows = (tmp_path / "out" / "businessunits.jsonl").read_text().splitlines()
    assert rows and json.loads((tmp_path / "out" / "state.json").read_text())["bookmarks"]["businessunits"]
    again = CliRunner().invoke(extract_command, arguments)
    assert again.exit_code == 0 and "0 records" in again.stderr
    assert (tmp_path / "out" / "businessunits.jsonl").read_text().splitlines() == rows

    wrong = CliRunner().invoke(extract_command, [*arguments[:2], "--streams", "accounts:sideways"])
    assert wrong.exit_code == 1 and "mode 'sideways'" in wrong.stderr


async def test_a_bookmark_that_is_not_ours_is_refused_before_reading(client, clock) -> None:
    forged = {"bookmarks": {"contacts": {"mode": "incremental", "modifiedon": "2024-01-01T00:00:00Z",
                                         "id": "x) or (1 eq 1"}}}
    with pytest.raises(ExtractError, match="not one this extract wrote"):
        await singer(client, "contacts", forged)


def test_the_rate_narrows_with_dataverse_burst_budget() -> None:
    limiter = RateLimiter(15)
    limiter.observe(httpx.Headers({"x-ms-ratelimit-burst-remaining-xrm-requests": "5999"}))
    assert limiter.allowed == 15
    limiter.observe(httpx.Headers({"x-ms-ratelimit-burst-remaining-xrm-requests": "20"}))
    assert limiter.allowed == 3
    limiter.observe(httpx.Headers({"x-ms-ratelimit-burst-remaining-xrm-requests": "0"}))
    assert limiter.allowed == 0.5
    limiter.observe(httpx.Headers({}))
    assert limiter.allowed == 15


async def test_full_reads_are_versioned_and_activated_when_complete(client, clock) -> None:
    clock.now = datetime(2024, 12, 1, tzinfo=UTC)
    await create(client, "phonecalls", 5, subject="versioned")
    whole = await singer(client, "phonecalls", mode="full", page_size=2)
    versions = {m["version"] for m in whole if m["type"] == "RECORD"}
    assert len(versions) == 1
    kinds = [m["type"] for m in whole]
    activate = kinds.index("ACTIVATE_VERSION")
    assert kinds.count("ACTIVATE_VERSION") == 1 and "RECORD" not in kinds[activate:]
    assert whole[activate] == {"type": "ACTIVATE_VERSION", "stream": "phonecalls", "version": versions.pop()}
    assert last_state(whole)["bookmarks"]["phonecalls"] == {"mode": "full"}  # the next run reads all again

    first_page = whole[:kinds.index("STATE", kinds.index("RECORD")) + 1]  # killed after one page
    resumed = await singer(client, "phonecalls", last_state(first_page), mode="full", page_size=2)
    assert {m["version"] for m in resumed if m["type"] == "RECORD"} == {whole[activate]["version"]}
    again = await singer(client, "phonecalls", mode="full", page_size=2)
    assert {m["version"] for m in again if m["type"] == "RECORD"} != {whole[activate]["version"]}

    plain = await singer(client, "phonecalls", mode="full", activate_versions=False)
    assert "ACTIVATE_VERSION" not in {m["type"] for m in plain}
    assert all("version" not in m for m in plain if m["type"] == "RECORD")
