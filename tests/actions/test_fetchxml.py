"""Run Fetch XML Query against the emulator: local XML checks before any request, cookie paging
one page at a time and fetch-all over 12,000 rows (each row exactly once), aggregates, and the
table read from <entity name>."""

from __future__ import annotations

import time
import uuid

import pytest
import pytest_asyncio

from d365_components.connections.client import BatchOperation
from d365_components.emulator import defaults
from d365_components.errors import InputValidationError
from d365_components.runtime import invoke, open_connection

KEY = "dynamics365.run_fetch_xml_query"
ROWS = 7


@pytest_asyncio.fixture(scope="module")
async def tag(connection) -> str:
    """ROWS accounts named with one fresh tag; numberofemployees 1..ROWS, city alternating A/B."""
    tag = f"F-{uuid.uuid4().hex[:8]}"
    ops = [
        BatchOperation("POST", "accounts", body={"name": f"{tag} {i}", "numberofemployees": i, "address1_city": "AB"[i % 2], "description": tag})
        for i in range(1, ROWS + 1)
    ]
    assert all(r.error is None for r in await connection.open_client().batch(ops, atomic=True))
    return tag


def _fetch(tag: str, extra: str = "", **attrs: str) -> str:
    attributes = "".join(f" {k}='{v}'" for k, v in attrs.items())
    return (
        f"<fetch{attributes}><entity name='account'><attribute name='accountid'/><attribute name='name'/>"
        f"<attribute name='numberofemployees'/>{extra}<filter><condition attribute='description' operator='eq' value='{tag}'/></filter>"
        "<order attribute='numberofemployees'/></entity></fetch>"
    )


async def test_one_page_at_a_time_with_the_cookie(run, tag):
    first = await run(KEY, {"entityType": "accounts", "xmlQuery": _fetch(tag), "recordsPerPage": 3})
    assert [r["numberofemployees"] for r in first["value"]] == [1, 2, 3]
    assert first["moreRecords"] is True and first["nextPageId"] and first["pageNumber"] == 1 and first["nextPageNumber"] == 2
    second = await run(KEY, {"xmlQuery": _fetch(tag), "recordsPerPage": 3, "nextPageId": first["nextPageId"]})
    assert [r["numberofemployees"] for r in second["value"]] == [4, 5, 6] and second["pageNumber"] == 2
    third = await run(KEY, {"xmlQuery": _fetch(tag), "recordsPerPage": 3, "nextPageId": second["nextPageId"], "pageNumber": 3})
    assert [r["numberofemployees"] for r in third["value"]] == [7]
    assert third["moreRecords"] is False and third["nextPageId"] is None and third["nextPageNumber"] is None


async def test_fetch_all_and_max_rows(run, tag):
    everything = await run(KEY, {"xmlQuery": _fetch(tag), "fetchAll": True, "recordsPerPage": 2})
    assert [r["numberofemployees"] for r in everything["value"]] == list(range(1, ROWS + 1))
    assert everything["truncated"] is False and everything["moreRecords"] is False
    capped = await run(KEY, {"xmlQuery": _fetch(tag), "fetchAll": True, "recordsPerPage": 2, "maxRows": 4})
    assert len(capped["value"]) == 4 and capped["truncated"] is True and capped["nextPageId"]
    rest = await run(KEY, {"xmlQuery": _fetch(tag), "fetchAll": True, "recordsPerPage": 2, "nextPageId": capped["nextPageId"]})
    assert [r["numberofemployees"] for r in rest["value"]] == [5, 6, 7]
    mid = await run(KEY, {"xmlQuery": _fetch(tag), "fetchAll": True, "recordsPerPage": 2, "maxRows": 3})
    assert len(mid["value"]) == 3 and mid["truncated"] is True and mid["nextPageId"] is None


async def test_aggregates_are_one_request(run, tag):
    xml = (
        "<fetch aggregate='true'><entity name='account'>"
        "<attribute name='address1_city' groupby='true' alias='city'/>"
        "<attribute name='numberofemployees' aggregate='sum' alias='people'/>"
        "<attribute name='accountid' aggregate='count' alias='rows'/>"
        f"<filter><condition attribute='description' operator='eq' value='{tag}'/></filter>"
        "<order alias='city'/></entity></fetch>"
    )
    out = await run(KEY, {"entityType": "account", "xmlQuery": xml, "fetchAll": True, "recordsPerPage": 1})
    assert [(r["city"], r["people"], r["rows"]) for r in out["value"]] == [("A", 2 + 4 + 6, 3), ("B", 1 + 3 + 5 + 7, 4)]
    assert out["moreRecords"] is False


async def test_top_and_annotations(run, tag):
    out = await run(KEY, {"xmlQuery": _fetch(tag, top="2"), "includeAnnotations": "*"})
    assert len(out["value"]) == 2 and out["moreRecords"] is False
    assert any(k.endswith("@OData.Community.Display.V1.FormattedValue") for k in out["value"][0])


@pytest.mark.parametrize(
    "xml, words",
    [
        ("<fetch><entity name='account'>", "well-formed"),
        ("<query><entity name='account'/></query>", "<fetch>"),
        ("<fetch><entity/></fetch>", "name"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><fetch><entity name='account'/></fetch>", "DTD"),
    ],
)
async def test_bad_xml_is_a_field_error_before_any_request(offline_connection, xml, words):
    with pytest.raises(InputValidationError) as caught:
        await invoke(KEY, {"xmlQuery": xml}, offline_connection)
    errors = {e.pointer: e.message for e in caught.value.errors}
    assert words in errors["/xmlQuery"]
    assert offline_connection.sent == []


async def test_table_must_match_entity_name(run, tag):
    with pytest.raises(InputValidationError) as caught:
        await run(KEY, {"entityType": "contacts", "xmlQuery": _fetch(tag)})
    assert caught.value.errors[0].pointer == "/entityType"
    with pytest.raises(InputValidationError) as caught:
        await run(KEY, {"xmlQuery": "<fetch><entity name='nosuchtable'/></fetch>"})
    assert caught.value.errors[0].pointer == "/xmlQuery"


@pytest.mark.slow
async def test_fetch_all_past_5000_rows_returns_every_row_exactly_once(fresh_emulator, run):
    emulator = fresh_emulator(seed="demo")
    store = emulator.app.state.store
    total = 12_000
    with store.transaction():
        for i in range(total):
            # ties on the sort column: only the cookie's primary-key tiebreak keeps pages exact
            store.insert("lead", {"lastname": f"Bulk {i}", "subject": "bulk", "companyname": f"Co {i % 7}"}, user=defaults.USER_ID)
    conn = open_connection({"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()})
    try:
        started = time.monotonic()
        xml = "<fetch><entity name='lead'><attribute name='leadid'/><attribute name='companyname'/><filter><condition attribute='subject' operator='eq' value='bulk'/></filter><order attribute='companyname'/></entity></fetch>"
        out = await run(KEY, {"xmlQuery": xml, "fetchAll": True}, connection=conn)
        ids = [r["leadid"] for r in out["value"]]
        assert len(ids) == total and len(set(ids)) == total
        assert out["truncated"] is False and out["pageNumber"] == 3
        capped = await run(KEY, {"xmlQuery": xml, "fetchAll": True, "recordsPerPage": 5000, "maxRows": 10_000}, connection=conn)
        assert len(capped["value"]) == 10_000 and capped["truncated"] is True
        rest = await run(KEY, {"xmlQuery": xml, "fetchAll": True, "nextPageId": capped["nextPageId"]}, connection=conn)
        assert len(rest["value"]) == 2_000
        assert set(ids) == {r["leadid"] for r in capped["value"]} | {r["leadid"] for r in rest["value"]}
        assert time.monotonic() - started < 15
    finally:
        await conn.aclose()
