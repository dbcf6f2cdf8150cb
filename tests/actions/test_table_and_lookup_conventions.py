"""One convention everywhere: a table input takes its entity set or logical name, a lookup value
takes {table, id}, {table, key}, navprop@odata.bind or a GUID (one-table lookups) — in the record
actions as in batch items and bulk rows (tested beside them)."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.errors import InputValidationError
from d365_components.registry import get_registry
from d365_components.runtime import invoke

NO_CONNECTION = {"key": "dynamics365.oauth2_client_credentials", "inputs": {}}


@pytest_asyncio.fixture(scope="module")
async def connection(emulator):
    opened = ClientCredentialsConnection(emulator.connection_inputs())
    yield opened
    await opened.aclose()


def _table_inputs():
    """(definition key, pointer) of every table input the definitions publish."""
    found = []
    for key, definition in get_registry().all().items():
        schema = definition.input_schema()
        for name, prop in schema.get("properties", {}).items():
            if prop.get("x-data-source") in ("dynamics365.tables", "dynamics365.table_definitions"):
                found.append((key, name, prop))
    return found


@pytest.mark.parametrize(("key", "name", "prop"), _table_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_table_input_says_both_names_and_has_a_pattern(key, name, prop):
    text = prop["description"].lower()
    items = prop.get("items", {})
    assert "entity set" in text and "logical" in text or "label" in text, (key, name, prop["description"])
    assert prop.get("pattern") or items.get("pattern") or items.get("minLength"), (key, name)


async def test_a_table_input_that_is_not_a_name_is_refused_before_any_request():
    for key in ("create_entity", "query_entities", "bulk_create"):
        inputs = {"entityType": "accounts(1)", "rows": [{"name": "x"}]} if key == "bulk_create" else {"entityType": "accounts(1)"}
        with pytest.raises(InputValidationError) as caught:
            await invoke(f"dynamics365.{key}", inputs, NO_CONNECTION)
        assert "/entityType" in [e.pointer for e in caught.value.errors], key


@pytest.mark.parametrize("table", ["account", "accounts"])
async def test_record_actions_take_either_name_and_every_lookup_form(connection, table):
    tag = uuid.uuid4().hex[:8]
    parent = await invoke("dynamics365.create_entity", {
        "entityType": table, "dynamicValues": {"name": f"{tag} parent", "accountnumber": f"{tag}-P"}}, connection)
    parent_id = parent["id"]
    forms = {
        "id": {"table": table, "id": parent_id},
        "key": {"table": table, "key": {"accountnumber": f"{tag}-P"}},
        "guid": parent_id,  # parentaccountid points to one table
        "text": f"/accounts({parent_id})",
    }
    for form, value in forms.items():
        child = await invoke("dynamics365.create_entity", {
            "entityType": table, "dynamicValues": {"name": f"{tag} {form}", "parentaccountid": value}}, connection)
        row = await invoke("dynamics365.get_entity", {"entityType": table, "entityId": child["id"],
                                                      "fieldNames": ["_parentaccountid_value"]}, connection)
        assert row["record"]["_parentaccountid_value"] == parent_id, form
    bound = await invoke("dynamics365.create_entity", {
        "entityType": table, "dynamicValues": {"name": f"{tag} bind", "parentaccountid@odata.bind": f"/accounts({parent_id})"}},
        connection)
    queried = await invoke("dynamics365.query_entities", {
        "entityType": table, "filterExpression": f"startswith(name,'{tag}')", "fieldNames": ["name"]}, connection)
    assert len(queried["value"]) == 6 and bound["id"]
