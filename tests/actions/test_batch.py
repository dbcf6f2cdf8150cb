"""Run Batch Operations against the emulator over HTTPS: atomic rollback, continue-on-error, and
inputs refused (with the failing field named) before any request."""

from __future__ import annotations

import uuid

import jsonschema
import pytest
import pytest_asyncio

from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.errors import InputValidationError
from d365_components.inputs import coerce_form_values
from d365_components.registry import get_registry
from d365_components.runtime import invoke

KEY = "dynamics365.run_batch_operations"
OUTPUT = get_registry().get(KEY).output_schema


@pytest_asyncio.fixture(scope="module")
async def connection(emulator):
    opened = ClientCredentialsConnection(emulator.connection_inputs())
    yield opened
    await opened.aclose()


async def run(connection, **inputs):
    output = await invoke(KEY, inputs, connection)
    jsonschema.validate(output, OUTPUT)
    return output


def _names(emulator, marker: str) -> list[str]:
    store = emulator.app.state.store
    rows = store.execute("SELECT name FROM account WHERE name LIKE ?", (f"{marker}%",))
    return sorted(r["name"] for r in rows)


@pytest.fixture
def marker() -> str:
    return f"batch-{uuid.uuid4().hex[:8]}"


async def test_mixed_operations_report_one_result_each_in_order(connection, marker):
    number = f"{marker}-n"
    out = await run(connection, actions=[
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-a"}, "returnRepresentation": True},
        {"collection": "accounts", "action": "upsert", "key": {"accountnumber": number}, "data": {"name": f"{marker}-b"},
         "returnRepresentation": True},
        {"collection": "accounts", "action": "update", "key": {"accountnumber": number}, "data": {"telephone1": "555"}},
    ])
    assert [r["outcome"] for r in out["results"]] == ["succeeded"] * 3
    assert out["results"][0]["row"]["name"] == f"{marker}-a"
    created = out["results"][0]["id"]
    assert out["results"][1]["id"] == out["results"][1]["row"]["accountid"]
    out = await run(connection, actions=[
        {"collection": "accounts", "action": "delete", "key": created},
        {"collection": "accounts", "action": "delete", "key": {"accountnumber": number}},
    ])
    assert out["succeeded"] == 2 and out["failed"] == 0


async def test_atomic_failure_rolls_back_everything(connection, emulator, marker):
    out = await run(connection, atomic=True, actions=[
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-1"}},
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-2"}},
        {"collection": "accounts", "action": "update", "key": str(uuid.uuid4()), "data": {"name": "x"}},
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-4"}},
    ])
    assert out["rolledBack"] is True and out["succeeded"] == 0
    assert out["failed"] == 1 and out["notApplied"] == 3
    assert out["results"][2]["outcome"] == "failed" and out["results"][2]["error"]["status"] == 404
    assert {r["outcome"] for i, r in enumerate(out["results"]) if i != 2} == {"rolledBack"}
    assert _names(emulator, marker) == []


async def test_atomic_batch_can_reference_an_earlier_row(connection, emulator, marker):
    out = await run(connection, atomic=True, actions=[
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-parent"}},
        {"collection": "contacts", "action": "create",
         "data": {"lastname": marker, "parentcustomerid_account@odata.bind": "$1"}, "returnRepresentation": True},
    ])
    assert out["succeeded"] == 2 and out["rolledBack"] is False
    assert out["results"][1]["row"]["_parentcustomerid_value"] == out["results"][0]["id"]


async def test_continue_on_error_reports_exactly_which_failed(connection, emulator, marker):
    missing = str(uuid.uuid4())
    out = await run(connection, continueOnError=True, actions=[
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-1"}},
        {"collection": "accounts", "action": "delete", "key": missing},
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-3"}},
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-4", "nosuchcolumn": 1}},
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-5"}},
    ])
    assert [r["outcome"] for r in out["results"]] == ["succeeded", "failed", "succeeded", "failed", "succeeded"]
    assert out["succeeded"] == 3 and out["failed"] == 2 and out["rolledBack"] is False
    assert out["results"][1]["error"]["status"] == 404
    assert out["results"][3]["error"]["status"] == 400
    assert _names(emulator, marker) == [f"{marker}-1", f"{marker}-3", f"{marker}-5"]


async def test_without_continue_on_error_the_rest_is_not_run(connection, emulator, marker):
    out = await run(connection, actions=[
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-1"}},
        {"collection": "accounts", "action": "delete", "key": str(uuid.uuid4())},
        {"collection": "accounts", "action": "create", "data": {"name": f"{marker}-3"}},
    ])
    assert [r["outcome"] for r in out["results"]] == ["succeeded", "failed", "notRun"]
    assert _names(emulator, marker) == [f"{marker}-1"]


async def test_etag_guards_an_update(connection, marker):
    created = await run(connection, actions=[
        {"collection": "accounts", "action": "create", "data": {"name": marker}, "returnRepresentation": True}])
    row = created["results"][0]["row"]
    stale = row["@odata.etag"]
    first = await run(connection, actions=[{"collection": "accounts", "action": "update", "key": row["accountid"],
                                            "etag": stale, "data": {"name": marker + "-1"}}])
    assert first["succeeded"] == 1
    second = await run(connection, actions=[{"collection": "accounts", "action": "update", "key": row["accountid"],
                                             "etag": stale, "data": {"name": marker + "-2"}}])
    assert second["results"][0]["error"]["status"] == 412


async def test_json_text_is_accepted_after_the_coercion_step(connection, marker):
    text = f'[{{"collection": "accounts", "action": "create", "data": {{"name": "{marker}"}}}}]'
    out = await run(connection, **coerce_form_values(get_registry().get(KEY).input_schema(), {"actions": text}))
    assert out["succeeded"] == 1


async def _refused(connection, **inputs) -> dict[str, str]:
    with pytest.raises(InputValidationError) as caught:
        await invoke(KEY, inputs, connection)
    return {e.pointer: e.message for e in caught.value.errors}


async def test_more_than_1000_operations_are_refused_before_any_request(emulator):
    # a connection config that cannot even be opened: validation must fail first
    spec = {"key": "dynamics365.oauth2_client_credentials", "inputs": {}}
    ops = [{"collection": "accounts", "action": "create", "data": {"name": "x"}}] * 1001
    errors = await _refused(spec, actions=ops)
    assert errors == {"/actions": "must have at most 1000 items"}


async def test_each_bad_item_is_named_by_its_pointer():
    spec = {"key": "dynamics365.oauth2_client_credentials", "inputs": {}}
    errors = await _refused(spec, actions=[
        {"collection": "accounts", "action": "create", "data": {"name": "ok"}},
        {"collection": "accounts", "action": "update", "data": {"name": "x"}},
        {"collection": "accounts", "action": "delete"},
        {"collection": "accounts", "action": "merge", "key": str(uuid.uuid4())},
        {"collection": "accounts", "action": "upsert", "key": {"accountnumber": "A"}},
    ])
    assert errors["/actions/1/key"] == "is required"
    assert errors["/actions/2/key"] == "is required"
    assert "/actions/3/action" in errors
    assert errors["/actions/4/data"] == "is required"


async def test_semantic_item_errors_are_named_too():
    spec = {"key": "dynamics365.oauth2_client_credentials", "inputs": {}}
    errors = await _refused(spec, actions=[
        {"collection": "accounts", "action": "update", "key": "not-a-guid", "data": {}},
        {"collection": "accounts", "action": "delete", "key": str(uuid.uuid4()), "data": {"a": 1}},
    ])
    assert "GUID" in errors["/actions/0/key"]
    assert "delete" in errors["/actions/1/data"]
    errors = await _refused(spec, atomic=True, continueOnError=True,
                            actions=[{"collection": "accounts", "action": "create", "data": {}}])
    assert any("atomic" in m and "continueOnError" in m for m in errors.values())
