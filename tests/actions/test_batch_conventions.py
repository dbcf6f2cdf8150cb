"""Batch items name tables and lookups the way record actions do: an entity set or a logical name,
and a lookup as {table, id}, {table, key}, a GUID or navprop@odata.bind."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.errors import InputValidationError
from d365_components.runtime import invoke

KEY = "dynamics365.run_batch_operations"


@pytest_asyncio.fixture(scope="module")
async def connection(emulator):
    opened = ClientCredentialsConnection(emulator.connection_inputs())
    yield opened
    await opened.aclose()


async def test_logical_names_and_table_id_lookups_work_in_batch_items(connection) -> None:
    marker = f"conv-{uuid.uuid4().hex[:8]}"
    account = await invoke("dynamics365.create_entity", {"entityType": "account", "dynamicValues": {"name": marker}}, connection)
    out = await invoke(KEY, {"actions": [
        {"collection": "contact", "action": "create", "returnRepresentation": True,
         "data": {"lastname": marker, "parentcustomerid": {"table": "accounts", "id": account["id"]}}},
    ]}, connection)
    assert out["succeeded"] == 1, out
    assert out["results"][0]["row"]["_parentcustomerid_value"] == account["id"]


async def test_an_unknown_table_is_named_by_its_pointer_before_any_request(connection) -> None:
    with pytest.raises(InputValidationError) as info:
        await invoke(KEY, {"actions": [
            {"collection": "accounts", "action": "create", "data": {"name": "x"}},
            {"collection": "nosuchtable", "action": "create", "data": {"name": "x"}},
        ]}, connection)
    assert [e.pointer for e in info.value.errors] == ["/actions/1/collection"]
