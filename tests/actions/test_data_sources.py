"""Data sources (form dropdowns) against the emulator over HTTPS: labels and values as forms use them."""

from __future__ import annotations

import jsonschema
import pytest
import pytest_asyncio

from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.definitions import DataSource
from d365_components.errors import InputValidationError
from d365_components.runtime import fetch_choices


@pytest_asyncio.fixture(scope="module")
async def connection(emulator):
    opened = ClientCredentialsConnection(emulator.connection_inputs())
    yield opened
    await opened.aclose()


async def choices(connection, key: str, **inputs) -> list[dict]:
    found = await fetch_choices(f"dynamics365.{key}", inputs, connection)
    jsonschema.validate(found, DataSource.output_schema)
    return found


async def test_tables_value_is_the_entity_set_and_definitions_the_logical_name(connection):
    tables = await choices(connection, "tables")
    assert {"label": "Account (account)", "value": "accounts"} in tables
    assert [t["label"] for t in tables] == sorted((t["label"] for t in tables), key=str.lower)
    definitions = await choices(connection, "table_definitions", search="contact")
    assert {"label": "Contact (contact)", "value": "contact"} in definitions
    assert all("contact" in d["label"].lower() for d in definitions)


async def test_columns_depend_on_the_purpose(connection):
    read = {c["value"] for c in await choices(connection, "columns", table="contacts")}
    create = {c["value"] for c in await choices(connection, "columns", table="contact", purpose="create")}
    update = {c["value"] for c in await choices(connection, "columns", table="contact", purpose="update")}
    assert "_parentcustomerid_value" in read and "parentcustomerid" in create
    assert "contactid" in read and "contactid" in create and "contactid" not in update
    assert "createdon" in read and "createdon" not in create  # system-set: readable only
    assert update <= create


async def test_choice_options(connection):
    options = await choices(connection, "choice_options", table="accounts", column="industrycode")
    assert options[0] == {"label": "Accounting", "value": 1}
    status = await choices(connection, "choice_options", table="account", column="statecode")
    assert {o["label"] for o in status} == {"Active", "Inactive"}


async def test_relationships_name_the_related_table(connection):
    found = {c["value"]: c["label"] for c in await choices(connection, "relationships", table="contacts")}
    assert found["parentcustomerid_account"].endswith("→ account (N:1)")
    assert any(label.endswith("(1:N)") for label in found.values())


async def test_records_search_by_primary_name(connection, emulator):
    everything = await choices(connection, "records", table="accounts")
    assert 0 < len(everything) <= 50 and all(len(c["value"]) == 36 for c in everything)
    one = next(c for c in everything if c["label"] != c["value"])  # a row with a name (unnamed rows show their id)
    found = await choices(connection, "records", table="account", search=one["label"][:5])
    assert one in found and all(one["label"][:5].lower() in c["label"].lower() for c in found)
    assert await choices(connection, "records", table="accounts", search="no such name at all") == []


async def test_unknown_table_is_named(connection):
    with pytest.raises(InputValidationError) as caught:
        await choices(connection, "records", table="nosuchtable")
    assert caught.value.errors[0].pointer == "/table"


async def test_columns_of_some_types_only_feed_the_choice_column_picker(connection):
    everything = await choices(connection, "columns", table="account")
    picked = await choices(connection, "columns", table="=account", types="=Picklist,MultiSelectPicklist,State,Status,Boolean")
    assert {"industrycode", "statecode", "statuscode"} <= {c["value"] for c in picked}
    assert "name" not in {c["value"] for c in picked}
    assert {c["description"] for c in picked} <= {"Picklist", "MultiSelectPicklist", "State", "Status", "Boolean"}
    assert len(picked) < len(everything)
