"""sdkmessage / sdkmessagefilter rows say which tables support which messages, as a real org does, so
a client that checks first (as Microsoft recommends) finds CreateMultiple and friends."""

from __future__ import annotations

import pytest


async def supported(api, message: str, table: str) -> bool:
    response = await api.get("sdkmessagefilters", params={
        "$select": "sdkmessagefilterid",
        "$filter": "sdkmessageid/name eq @message and primaryobjecttypecode eq @table",
        "@message": f"'{message}'", "@table": f"'{table}'"})
    assert response.status_code == 200, response.text
    return bool(response.json()["value"])


@pytest.mark.parametrize(("message", "table", "expected"), [
    ("CreateMultiple", "account", True),
    ("UpdateMultiple", "contact", True),
    ("UpsertMultiple", "lead", True),
    ("DeleteMultiple", "account", False),     # elastic tables only
    ("Create", "account", True),
    ("Assign", "account", True),
    ("Assign", "businessunit", False),        # organization-owned
    ("SetState", "incident", True),
])
async def test_filters_say_which_tables_support_a_message(api, message, table, expected):
    assert await supported(api, message, table) is expected


async def test_the_documented_filter_shape_and_the_messages_exist(api):
    response = await api.get("sdkmessagefilters?$select=primaryobjecttypecode"
                             "&$filter=primaryobjecttypecode eq 'account' and sdkmessageid/name eq 'CreateMultiple'")
    assert [r["primaryobjecttypecode"] for r in response.json()["value"]] == ["account"]
    names = {r["name"] for r in (await api.get("sdkmessages?$select=name")).json()["value"]}
    assert {"Create", "CreateMultiple", "UpdateMultiple", "UpsertMultiple", "DeleteMultiple", "BulkDelete"} <= names
    response = await api.get("sdkmessages?$select=name&$filter=name eq 'Create'")
    assert len(response.json()["value"]) == 1                 # the seed's messages are reused, not doubled
