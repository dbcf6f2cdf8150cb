"""Query Entities against the emulator: options, paging with a cursor, fetch-all with a row limit,
count, formatted values, safe filter conditions, and input errors before any request."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from d365_components.actions.queries import QueryEntities
from d365_components.connections.client import BatchOperation
from d365_components.errors import DataverseError, InputValidationError
from d365_components.inputs import coerce_form_values
from d365_components.runtime import invoke

ROWS = 25


@pytest_asyncio.fixture(scope="module")
async def tagged(connection) -> str:
    """A company name shared by ROWS fresh leads (estimatedamount 1..ROWS), so queries can scope to them."""
    tag = f"Q-{uuid.uuid4().hex[:8]}"
    client = connection.open_client()
    ops = [
        BatchOperation("POST", "leads", body={"lastname": f"L{i:02d}", "subject": "q", "companyname": tag, "estimatedamount": i})
        for i in range(1, ROWS + 1)
    ]
    results = await client.batch(ops, atomic=True)
    assert all(r.error is None for r in results)
    return tag


def _query(tag: str, **extra) -> dict:
    return {"entityType": "leads", "filterExpression": f"companyname eq '{tag}'", **extra}


async def test_one_page_with_cursor_then_the_rest(run, tagged):
    first = await run("dynamics365.query_entities", _query(tagged, fieldNames=["lastname", "estimatedamount"], orderByFieldNames=["estimatedamount desc"], recordsPerPage=10))
    assert [r["estimatedamount"] for r in first["value"]] == list(range(25, 15, -1))
    assert first["nextPageId"] and first["@odata.nextLink"] == first["oDataNextLink"] == first["nextPageId"]
    assert first["truncated"] is False
    second = await run("dynamics365.query_entities", {"entityType": "leads", "nextPageId": first["nextPageId"], "recordsPerPage": 10})
    assert [r["estimatedamount"] for r in second["value"]] == list(range(15, 5, -1))
    third = await run("dynamics365.query_entities", {"entityType": "leads", "nextPageId": second["nextPageId"], "recordsPerPage": 10})
    assert len(third["value"]) == 5 and third["nextPageId"] is None


async def test_fetch_all_and_count(run, tagged):
    out = await run("dynamics365.query_entities", _query(tagged, fetchAll=True, recordsPerPage=7, includeCount=True, fieldNames=["leadid"]))
    assert len(out["value"]) == ROWS and len({r["leadid"] for r in out["value"]}) == ROWS
    assert out["count"] == ROWS and out["truncated"] is False and out["nextPageId"] is None


async def test_fetch_all_stops_at_max_rows(run, tagged):
    mid_page = await run("dynamics365.query_entities", _query(tagged, fetchAll=True, recordsPerPage=10, maxRows=15, fieldNames=["leadid"]))
    assert len(mid_page["value"]) == 15 and mid_page["truncated"] is True
    at_boundary = await run(
        "dynamics365.query_entities",
        _query(tagged, fetchAll=True, recordsPerPage=10, maxRows=20, fieldNames=["estimatedamount"], orderByFieldNames=["estimatedamount"]),
    )
    assert len(at_boundary["value"]) == 20 and at_boundary["truncated"] is True and at_boundary["nextPageId"]
    rest = await run("dynamics365.query_entities", {"entityType": "leads", "nextPageId": at_boundary["nextPageId"], "fetchAll": True, "recordsPerPage": 10})
    assert [r["estimatedamount"] for r in rest["value"]] == list(range(21, 26))
    exact = await run("dynamics365.query_entities", _query(tagged, fetchAll=True, recordsPerPage=5, maxRows=ROWS))
    assert len(exact["value"]) == ROWS and exact["truncated"] is False


async def test_filter_conditions_quote_user_text_and_merge_with_filter(run, tagged):
    out = await run(
        "dynamics365.query_entities",
        {
            "entityType": "lead",
            "filterExpression": "estimatedamount le 3",
            "filterConditions": [{"column": "companyname", "operator": "eq", "value": tagged}],
            "fieldNames": ["estimatedamount"],
            "orderByFieldNames": ["estimatedamount"],
        },
    )
    assert [r["estimatedamount"] for r in out["value"]] == [1, 2, 3]
    hostile = await run(
        "dynamics365.query_entities",
        {"entityType": "leads", "filterConditions": [{"column": "companyname", "value": f"{tagged}' or companyname ne 'x"}]},
    )
    assert hostile["value"] == []
    within = await run(
        "dynamics365.query_entities",
        {"entityType": "leads", "filterConditions": [{"column": "companyname", "value": tagged}, {"column": "estimatedamount", "operator": "in", "value": [4, 9]}], "fieldNames": ["estimatedamount"], "orderByFieldNames": ["estimatedamount"]},
    )
    assert [r["estimatedamount"] for r in within["value"]] == [4, 9]


async def test_expand_and_formatted_values(run):
    account = await run("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": {"name": f"Exp {uuid.uuid4().hex[:6]}", "revenue": 42}})
    contact = await run("dynamics365.create_entity", {"entityType": "contacts", "dynamicValues": {"lastname": "Primary"}})
    await run("dynamics365.update_entity", {"entityType": "accounts", "entityId": account["id"], "dynamicValues": {"primarycontactid": contact["id"]}})
    out = await run(
        "dynamics365.query_entities",
        {
            "entityType": "accounts",
            "filterConditions": [{"column": "accountid", "value": account["id"]}],
            "fieldNames": ["name", "revenue", "statecode"],
            "expandPropertyNames": ["primarycontactid($select=lastname)"],
            "includeFormattedValues": True,
        },
    )
    [row] = out["value"]
    assert row["primarycontactid"]["lastname"] == "Primary"
    assert "statecode@OData.Community.Display.V1.FormattedValue" in row


async def test_dataverse_errors_surface_typed(run):
    with pytest.raises(DataverseError) as caught:
        await run("dynamics365.query_entities", {"entityType": "accounts", "fieldNames": ["nosuchcolumn"]})
    assert caught.value.status == 400 and caught.value.hint


async def test_bad_inputs_all_named_before_any_request(offline_connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke(
            "dynamics365.query_entities",
            {"recordsPerPage": 0, "orderByFieldNames": ["name sideways"], "fieldNames": ["bad name"], "maxRows": "lots"},
            offline_connection,
        )
    pointers = {e.pointer for e in caught.value.errors}
    assert {"/entityType", "/recordsPerPage", "/maxRows"} <= pointers
    assert offline_connection.sent == []
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.query_entities", {"entityType": "accounts", "recordsPerPage": 0}, offline_connection)
    assert [e.pointer for e in caught.value.errors] == ["/recordsPerPage"]
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.query_entities", {"entityType": "accounts", "orderByFieldNames": ["name sideways"], "fieldNames": ["bad name"]}, offline_connection)
    assert {e.pointer for e in caught.value.errors} == {"/orderByFieldNames/0", "/fieldNames/0"}
    with pytest.raises(InputValidationError) as caught:
        await invoke(
            "dynamics365.query_entities",
            {"entityType": "accounts", "filterConditions": [{"column": "name", "operator": "in", "value": "x"}]},
            offline_connection,
        )
    assert caught.value.errors[0].pointer == "/filterConditions/0/value"
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.query_entities", {"entityType": "accounts", "nextPageId": "https://elsewhere.example/api/data/v9.2/accounts"}, offline_connection)
    assert caught.value.errors[0].pointer == "/nextPageId"
    assert offline_connection.sent == []


async def test_form_strings_are_coerced_by_the_published_step(run, tagged):
    text = _query(tagged, recordsPerPage="3", fetchAll="false", includeCount="true")
    out = await run("dynamics365.query_entities", coerce_form_values(QueryEntities.input_schema(), text))
    assert len(out["value"]) == 3 and out["count"] == ROWS
