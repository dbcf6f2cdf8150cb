"""Bulk Create / Bulk Upsert against a private emulator over HTTPS: thousands of rows in
concurrent chunks, exact resumption after a failed chunk, continue-on-error, and the $batch
fallback for a table without the bulk messages."""

from __future__ import annotations

import uuid

import jsonschema
import pytest
import pytest_asyncio

from d365_components.actions import bulk
from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.emulator.messages import registry as messages
from d365_components.emulator.server import Emulator
from d365_components.errors import InputValidationError
from d365_components.inputs import coerce_form_values
from d365_components.registry import get_registry
from d365_components.runtime import invoke

OUTPUT = get_registry().get("dynamics365.bulk_upsert").output_schema


@pytest.fixture(scope="module")
def org():
    with Emulator(seed="demo") as running:      # demo: upserts by the demo's account.accountnumber key
        yield running


@pytest_asyncio.fixture(scope="module")
async def connection(org):
    opened = ClientCredentialsConnection(org.connection_inputs())
    yield opened
    await opened.aclose()


async def run(connection, key: str, **inputs):
    output = await invoke(f"dynamics365.{key}", inputs, connection)
    jsonschema.validate(output, OUTPUT)
    return output


def stored(org, table: str, column: str, prefix: str) -> list[str]:
    rows = org.app.state.store.execute(f"SELECT {column} AS v FROM {table} WHERE {column} LIKE ?", (f"{prefix}%",))
    return [r["v"] for r in rows]


@pytest.fixture
def prefix() -> str:
    return uuid.uuid4().hex[:8] + "-"


async def test_upsert_resumes_exactly_after_a_failed_chunk(connection, org, prefix):
    rows = [{"accountnumber": f"{prefix}{i:05d}", "name": f"row {i}"} for i in range(3000)]
    rows[350]["nosuchcolumn"] = 1  # chunk 3 of 100-row chunks
    first = await run(connection, "bulk_upsert", entityType="accounts", rows=rows, alternateKeyColumns=["accountnumber"])
    assert first["method"] == "UpsertMultiple" and first["chunks"] == 30
    assert first["nextChunk"] == 3 and {0, 1, 2} <= set(first["confirmedChunks"]) and 3 not in first["confirmedChunks"]
    bad = [r for r in first["results"] if r["error"] and r["error"]["status"] != 424]
    assert [r["index"] for r in bad] == [350] and bad[0]["error"]["status"] == 400
    assert all(not r["written"] for r in first["results"] if r["chunk"] == 3)
    written_rows = {rows[r["index"]]["accountnumber"] for r in first["results"] if r["written"]}
    assert set(stored(org, "account", "accountnumber", prefix)) == written_rows
    assert {r["chunk"] for r in first["results"] if r["written"]} == set(first["confirmedChunks"])

    del rows[350]["nosuchcolumn"]
    second = await run(connection, "bulk_upsert", entityType="account", rows=rows, alternateKeyColumns=["accountnumber"],
                       **first["resumeInputs"])
    assert second["nextChunk"] is None and second["confirmedChunks"] == list(range(30))
    assert second["written"] == 3000 and second["written"] - second["alreadyWritten"] == 3000 - first["written"]
    assert first["written"] + first["failed"] + first["notWritten"] == first["total"]
    assert sorted(stored(org, "account", "accountnumber", prefix)) == [r["accountnumber"] for r in rows]


async def test_create_resumes_without_duplicates_and_returns_ids(connection, org, prefix):
    rows = [{"lastname": f"{prefix}{i:04d}"} for i in range(1000)]
    rows[420]["nosuchcolumn"] = 1
    first = await run(connection, "bulk_create", entityType="contacts", rows=rows, chunkSize=50, maxConcurrency=8)
    assert first["nextChunk"] == 8
    del rows[420]["nosuchcolumn"]
    second = await run(connection, "bulk_create", entityType="contacts", rows=rows, chunkSize=50, maxConcurrency=8,
                       **first["resumeInputs"])
    assert second["nextChunk"] is None
    assert sorted(stored(org, "contact", "lastname", prefix)) == [r["lastname"] for r in rows]
    ids = [r["id"] for r in first["results"] + second["results"] if r["written"]]
    assert len(set(ids)) == 1000 and all(r["created"] for r in second["results"])


async def test_continue_on_error_writes_every_good_row(connection, org, prefix):
    rows = [{"accountnumber": f"{prefix}{i:04d}", "name": f"row {i}"} for i in range(500)]
    for bad in (5, 250, 251):
        rows[bad]["nosuchcolumn"] = 1
    out = await run(connection, "bulk_upsert", entityType="accounts", rows=rows, alternateKeyColumns=["accountnumber"],
                    continueOnError=True)
    assert out["nextChunk"] is None and out["written"] == 497 and out["failed"] == 3 and out["notWritten"] == 0
    assert [r["index"] for r in out["results"] if not r["written"]] == [5, 250, 251]
    assert len(stored(org, "account", "accountnumber", prefix)) == 497


async def test_batch_fallback_when_the_table_has_no_bulk_message(connection, org, prefix, monkeypatch):
    monkeypatch.delitem(messages._actions, ("UpsertMultiple", "lead"))
    monkeypatch.setattr(bulk, "_WITHOUT_MESSAGE", set())
    rows = [{"subject": f"{prefix}{i:03d}", "lastname": "x"} for i in range(120)]
    out = await run(connection, "bulk_upsert", entityType="leads", rows=rows, chunkSize=50)
    assert out["method"] == "$batch" and out["written"] == 120 and out["nextChunk"] is None
    assert all(r["created"] and r["id"] for r in out["results"])
    assert len(bulk._WITHOUT_MESSAGE) == 1  # remembered: later runs go straight to $batch
    # update by primary key through the fallback, with a bad row: all or nothing per chunk
    again = [{"leadid": r["id"], "subject": f"{prefix}u{r['index']:03d}"} for r in out["results"]]
    again[60]["nosuchcolumn"] = 1
    out = await run(connection, "bulk_upsert", entityType="leads", rows=again, chunkSize=50, maxConcurrency=1)
    assert out["nextChunk"] == 1 and out["confirmedChunks"] == [0] and out["written"] == 50
    assert [r["index"] for r in out["results"] if r["error"] and r["error"]["status"] != 424] == [60]
    assert len(stored(org, "lead", "subject", f"{prefix}u")) == 50


async def test_progress_is_reported(connection, prefix):
    seen = []
    rows = [{"lastname": f"{prefix}{i}"} for i in range(250)]
    await invoke("dynamics365.bulk_create", {"entityType": "contacts", "rows": rows}, connection,
                 progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 250) and seen[-1] == (250, 250) and len(seen) == 4


async def test_rows_as_json_text_after_the_coercion_step(connection, org, prefix):
    text = f'[{{"lastname": "{prefix}a"}}, {{"lastname": "{prefix}b"}}]'
    rows = coerce_form_values(get_registry().get("dynamics365.bulk_create").input_schema(), {"rows": text})["rows"]
    out = await run(connection, "bulk_create", entityType="contacts", rows=rows)
    assert out["written"] == 2


async def test_bad_inputs_are_named_before_any_request():
    spec = {"key": "dynamics365.oauth2_client_credentials", "inputs": {}}
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.bulk_upsert", {"entityType": "accounts", "alternateKeyColumns": ["accountnumber"],
                                                 "rows": [{"accountnumber": "1"}, {"name": "no key"}]}, spec)
    assert [e.pointer for e in caught.value.errors] == ["/rows/1/accountnumber"]
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.bulk_create", {"entityType": "accounts", "rows": [], "chunkSize": 5000,
                                                 "maxConcurrency": 64}, spec)
    assert {e.pointer for e in caught.value.errors} == {"/rows", "/chunkSize", "/maxConcurrency"}


async def test_unknown_table_is_named(connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.bulk_create", {"entityType": "nosuchthings", "rows": [{"a": 1}]}, connection)
    assert caught.value.errors[0].pointer == "/entityType"


async def test_batch_fallback_upserts_by_alternate_key(connection, org, prefix, monkeypatch):
    monkeypatch.delitem(messages._actions, ("UpsertMultiple", "contact"))
    monkeypatch.setattr(bulk, "_WITHOUT_MESSAGE", set())
    rows = [{"emailaddress1": f"{prefix}{i}@example.com", "lastname": "before"} for i in range(30)]
    first = await run(connection, "bulk_upsert", entityType="contacts", rows=rows, alternateKeyColumns=["emailaddress1"])
    assert first["method"] == "$batch" and first["written"] == 30
    rows = [{**row, "lastname": "after"} for row in rows]
    second = await run(connection, "bulk_upsert", entityType="contacts", rows=rows, alternateKeyColumns=["emailaddress1"])
    assert second["written"] == 30
    names = org.app.state.store.execute("SELECT lastname FROM contact WHERE emailaddress1 LIKE ?", (f"{prefix}%",))
    assert [r["lastname"] for r in names] == ["after"] * 30


async def test_counters_add_up_when_a_run_stops_early(connection, org, prefix):
    rows = [{"name": f"{prefix}{i:03d}"} for i in range(500)]
    rows[250]["nosuchcolumn"] = 1
    out = await run(connection, "bulk_create", entityType="accounts", rows=rows, maxConcurrency=1)
    assert (out["written"], out["failed"], out["notWritten"]) == (200, 1, 299)
    assert out["written"] + out["failed"] + out["notWritten"] == out["total"] == 500
    assert out["resumeInputs"]["runId"] == out["runId"] and out["resumeInputs"]["resumeFrom"] == 2


async def test_bulk_create_gives_rows_client_ids_derived_from_the_run(connection, org, prefix):
    run_id = str(uuid.uuid4())
    rows = [{"name": f"{prefix}{i}"} for i in range(3)]
    out = await run(connection, "bulk_create", entityType="accounts", rows=rows, runId=run_id)
    assert [r["id"] for r in out["results"]] == [str(uuid.uuid5(uuid.UUID(run_id), str(i))) for i in range(3)]
    again = await run(connection, "bulk_create", entityType="accounts", rows=rows, runId=run_id)  # a resumed run
    assert again["reconciled"] == 3 and again["written"] == 3
    assert len(stored(org, "account", "name", prefix)) == 3


# -- lookups in rows: the same convention as the record actions and batch items -------------------


async def _parents(connection, ids: list[str]) -> list[str | None]:
    client = connection.open_client()
    rows = [await client.get_json(f"contacts({i})", params={"$select": "_parentcustomerid_value"}) for i in ids]
    return [r.get("_parentcustomerid_value") for r in rows]


@pytest.mark.parametrize("fallback", [False, True], ids=["CreateMultiple", "$batch"])
async def test_rows_take_lookups_as_table_and_id_key_bind_or_guid(connection, prefix, monkeypatch, fallback):
    client = connection.open_client()
    account = (await client.create("accounts", {"name": f"{prefix}parent", "accountnumber": f"{prefix}P"}))["id"]
    owner = (await client.whoami())["UserId"]
    if fallback:
        monkeypatch.delitem(messages._actions, ("CreateMultiple", "contact"))
        monkeypatch.setattr(bulk, "_WITHOUT_MESSAGE", set())
    rows = [
        {"lastname": f"{prefix}id", "parentcustomerid": {"table": "accounts", "id": account}},
        {"lastname": f"{prefix}key", "parentcustomerid": {"table": "account", "key": {"accountnumber": f"{prefix}P"}}},
        {"lastname": f"{prefix}bind", "parentcustomerid_account@odata.bind": f"/accounts({account})"},
        {"lastname": f"{prefix}text", "parentcustomerid": f"accounts({account})"},
        {"lastname": f"{prefix}guid", "ownerid": {"table": "systemusers", "id": owner}},
    ]
    out = await run(connection, "bulk_create", entityType="contact", rows=rows)
    assert out["written"] == 5 and out["entityType"] == "contacts", out["results"]
    ids = [r["id"] for r in out["results"]]
    assert await _parents(connection, ids[:4]) == [account] * 4


async def test_upsert_rows_bind_lookups_and_keep_key_columns(connection, prefix):
    client = connection.open_client()
    account = (await client.create("accounts", {"name": f"{prefix}parent"}))["id"]
    rows = [{"accountnumber": f"{prefix}C{i}", "name": f"child {i}", "parentaccountid": account} for i in range(3)]
    out = await run(connection, "bulk_upsert", entityType="account", rows=rows, alternateKeyColumns=["accountnumber"])
    assert out["written"] == 3, out["results"]
    children = [row async for row in client.rows("accounts", params={
        "$select": "_parentaccountid_value", "$filter": f"startswith(accountnumber,'{prefix}C')"})]
    assert [c["_parentaccountid_value"] for c in children] == [account] * 3


async def test_a_bad_lookup_in_a_row_is_named_before_anything_is_written(connection, org, prefix):
    account = "00000000-0000-0000-0000-0000000000aa"
    rows = [{"lastname": f"{prefix}ok"},
            {"lastname": f"{prefix}ambiguous", "parentcustomerid": account},  # account or contact?
            {"lastname": f"{prefix}wrong", "parentcustomerid": {"table": "tasks", "id": account}}]
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.bulk_create", {"entityType": "contacts", "rows": rows}, connection)
    assert [e.pointer for e in caught.value.errors] == ["/rows/1/parentcustomerid", "/rows/2/parentcustomerid"]
    assert "give {\"table\"" in caught.value.errors[0].message
    assert stored(org, "contact", "lastname", prefix) == []
