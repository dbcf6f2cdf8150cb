"""Metadata actions against the emulator over HTTPS: tables, columns, choices, and column writes
(on a private emulator, so the shared one's schema stays as seeded)."""

from __future__ import annotations

import uuid

import jsonschema
import pytest
import pytest_asyncio

from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.errors import InputValidationError, RecordNotFoundError
from d365_components.registry import get_registry
from d365_components.runtime import invoke


@pytest_asyncio.fixture(scope="module")
async def connection(emulator):
    opened = ClientCredentialsConnection(emulator.connection_inputs())
    yield opened
    await opened.aclose()


async def run(connection, key: str, **inputs):
    output = await invoke(f"dynamics365.{key}", inputs, connection)
    jsonschema.validate(output, get_registry().get(f"dynamics365.{key}").output_schema)
    return output


async def test_list_entity_types_pages_through_the_service_document(connection):
    everything = await run(connection, "list_entity_types", fetchAll=True)
    names = [t["name"] for t in everything["value"]]
    assert {"accounts", "contacts", "EntityDefinitions"} <= set(names) and everything["nextLink"] is None
    first = await run(connection, "list_entity_types", maxPageSize=10)
    assert len(first["value"]) == 10 and first["nextLink"]
    walked, link = list(first["value"]), first["nextLink"]
    while link:
        page = await run(connection, "list_entity_types", maxPageSize=10, nextLink=link)
        walked += page["value"]
        link = page["nextLink"]
    assert [t["name"] for t in walked] == names


async def test_list_entities_filters(connection):
    everything = await run(connection, "list_entities")
    assert everything["count"] == len(everything["value"]) >= 25
    account = next(t for t in everything["value"] if t["LogicalName"] == "account")
    assert account["EntitySetName"] == "accounts" and "OwnershipType" not in account
    detailed = await run(connection, "list_entities", includeCustom=False, includeOnlyTopLevel=True, includeDetails=True)
    assert all(not t["IsCustomEntity"] and not t["IsChildEntity"] for t in detailed["value"])
    assert "OwnershipType" in detailed["value"][0]


async def test_get_entities_metadata_with_columns(connection):
    out = await run(connection, "get_entities_metadata", tables=["account", "contact"])
    assert sorted(t["LogicalName"] for t in out["value"]) == ["account", "contact"]
    columns = {c["LogicalName"] for c in out["value"][0]["Attributes"]}
    assert "name" in columns or "fullname" in columns


@pytest.mark.parametrize("table", ["account", "accounts"])
async def test_get_entity_metadata_by_logical_or_entity_set_name(connection, table):
    out = await run(connection, "get_entity_metadata", table=table, expandPropertyNames=["Keys"])
    assert out["LogicalName"] == "account" and out["Keys"][0]["KeyAttributes"] == ["accountnumber"]
    by_id = await run(connection, "get_entity_metadata", table=out["MetadataId"], fieldNames=["EntitySetName"])
    assert by_id["EntitySetName"] == "accounts"


async def test_unknown_table_is_named(connection):
    with pytest.raises(InputValidationError) as caught:
        await run(connection, "get_entity_metadata", table="nosuchtable")
    assert caught.value.errors[0].pointer == "/table"
    with pytest.raises(RecordNotFoundError):
        await run(connection, "get_entity_metadata", table=str(uuid.uuid4()))


async def test_a_record_url_is_not_a_table(connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.list_attributes", {"table": "accounts(1)"}, connection)
    assert caught.value.errors[0].pointer == "/table"


async def test_list_and_query_attributes(connection):
    listed = await run(connection, "list_attributes", table="account")
    by_name = {c["LogicalName"]: c for c in listed["value"]}
    assert by_name["accountid"]["IsPrimaryId"] and not by_name["accountid"]["IsValidForUpdate"]
    choices = await run(connection, "query_attributes", table="account", attributeType="Picklist",
                        fieldNames=["LogicalName"], expandPropertyNames=["OptionSet"])
    assert choices["count"] > 0 and all("Options" in c["OptionSet"] for c in choices["value"])
    strings = await run(connection, "query_attributes", table="account", attributeType="String",
                        filterExpression="IsPrimaryName eq true")
    assert [c["LogicalName"] for c in strings["value"]] == ["name"] and strings["value"][0]["MaxLength"]


async def test_expand_without_a_type_is_refused_before_any_request(connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.query_attributes", {"table": "account", "expandPropertyNames": ["OptionSet"]},
                     {"key": "dynamics365.oauth2_client_credentials", "inputs": {}})
    assert caught.value.errors[0].pointer == "/expandPropertyNames"


async def test_get_attribute_is_typed(connection):
    out = await run(connection, "get_attribute", table="account", attribute="name")
    assert out["@odata.type"].endswith("StringAttributeMetadata") and out["MaxLength"]
    picked = await run(connection, "get_attribute", table="account", attribute="industrycode",
                       attributeType="Picklist", expandPropertyNames=["OptionSet"], fieldNames=["SchemaName"])
    assert picked["OptionSet"]["Options"]


async def test_choice_options(connection):
    industry = await run(connection, "get_choice_options", table="account", column="industrycode")
    assert industry["options"][0] == {"value": 1, "label": "Accounting"}
    status = await run(connection, "get_choice_options", table="accounts", column="statuscode")
    assert {"value": 2, "label": "Inactive", "state": 1} in status["options"]
    with pytest.raises(InputValidationError) as caught:
        await run(connection, "get_choice_options", table="account", column="name")
    assert caught.value.errors[0].pointer == "/column" and "String" in caught.value.errors[0].message


@pytest_asyncio.fixture(scope="module")
async def private(fresh_emulator_module):
    opened = ClientCredentialsConnection(fresh_emulator_module.connection_inputs())
    yield opened
    await opened.aclose()


@pytest.fixture(scope="module")
def fresh_emulator_module():
    from d365_components.emulator.server import Emulator

    with Emulator(seed=None) as running:
        yield running


async def test_create_an_attribute_then_write_a_row_with_it(private):
    created = await run(private, "create_attribute", table="account", attributeBody={
        "AttributeType": "String", "SchemaName": "new_Code", "DisplayName": "Code", "MaxLength": 20,
        "RequiredLevel": "None"})
    assert created["logicalName"] == "new_code" and created["attributeId"]
    column = await run(private, "get_attribute", table="account", attribute=created["attributeId"])
    assert column["LogicalName"] == "new_code" and column["MaxLength"] == 20
    assert column["DisplayName"]["LocalizedLabels"][0]["Label"] == "Code"
    client = private.open_client()
    row = await client.create("accounts", {"name": "with code", "new_code": "C-1"}, return_representation=True)
    assert row["row"]["new_code"] == "C-1"
    choice = await run(private, "create_attribute", table="accounts", attributeBody={
        "@odata.type": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata", "SchemaName": "new_Tier",
        "DisplayName": "Tier", "OptionSet": {"Options": [
            {"Value": 100000000, "Label": {"LocalizedLabels": [{"Label": "Gold", "LanguageCode": 1033}]}},
            {"Value": 100000001, "Label": {"LocalizedLabels": [{"Label": "Silver", "LanguageCode": 1033}]}}]}})
    assert choice["logicalName"] == "new_tier"
    tiers = await run(private, "get_choice_options", table="account", column="new_tier")
    assert [o["label"] for o in tiers["options"]] == ["Gold", "Silver"]


async def test_update_attribute_merges_with_the_current_definition(private):
    await run(private, "create_attribute", table="contact", attributeBody={
        "AttributeType": "String", "SchemaName": "new_Nick", "DisplayName": "Nick", "MaxLength": 40})
    out = await run(private, "update_attribute", table="contact", attribute="new_nick",
                    attributeBody={"DisplayName": "Nickname"})
    assert out["attributeId"] and out["logicalName"] == "new_nick"
    column = await run(private, "get_attribute", table="contact", attribute="new_nick")
    assert column["MaxLength"] == 40
    assert column["DisplayName"]["UserLocalizedLabel"]["Label"] == "Nickname"


async def test_attribute_body_problems_are_named_before_any_request():
    spec = {"key": "dynamics365.oauth2_client_credentials", "inputs": {}}
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.create_attribute", {"table": "account", "attributeBody": {"SchemaName": "new_X"}}, spec)
    assert caught.value.errors[0].pointer == "/attributeBody" and "@odata.type" in caught.value.errors[0].message
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.create_attribute", {"table": "account", "attributeBody": {"AttributeType": "String"}}, spec)
    assert "SchemaName" in caught.value.errors[0].message


# -- Prismatic's inputs: a name-or-label filter, Default Selected Entity Types, a column-type filter


async def test_get_entities_metadata_filters_by_label_and_marks_default_selected(connection):
    everything = await run(connection, "get_entities_metadata", includeAttributes=False)
    spaced = next(t for t in everything["value"]
                  if " " in t["DisplayName"]["UserLocalizedLabel"]["Label"] and not t["IsCustomEntity"])
    label = spaced["DisplayName"]["UserLocalizedLabel"]["Label"]
    assert all(t["selected"] is False for t in everything["value"])

    out = await run(connection, "get_entities_metadata", includeAttributes=False,
                    labelFilter=[label.upper(), "Contacts"], defaultSelected=["CONTACT"])
    assert sorted(t["LogicalName"] for t in out["value"]) == sorted([spaced["LogicalName"], "contact"])
    assert {t["LogicalName"]: t["selected"] for t in out["value"]} == {spaced["LogicalName"]: False, "contact": True}
    assert out["count"] == 2

    nothing = await run(connection, "get_entities_metadata", includeAttributes=False, labelFilter=["No Such Table"])
    assert nothing == {"value": [], "count": 0}


async def test_list_attributes_by_column_type(connection):
    money = await run(connection, "list_attributes", table="accounts", attributeType="Money")
    assert money["count"] > 0 and {c["AttributeType"] for c in money["value"]} == {"Money"}
    assert "revenue" in {c["LogicalName"] for c in money["value"]}
    every = await run(connection, "list_attributes", table="account")
    assert every["count"] > money["count"]
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.list_attributes", {"table": "account", "attributeType": "Nope"},
                     {"key": "dynamics365.oauth2_client_credentials", "inputs": {}})
    assert caught.value.errors[0].pointer == "/attributeType"


async def test_get_entities_metadata_takes_entity_set_or_logical_names(connection):
    out = await run(connection, "get_entities_metadata", tables=["accounts", "contact"], includeAttributes=False)
    assert sorted(t["LogicalName"] for t in out["value"]) == ["account", "contact"]
    with pytest.raises(InputValidationError) as caught:
        await run(connection, "get_entities_metadata", tables=["account", "nosuchtables"])
    assert caught.value.errors[0].pointer == "/tables/1"
