"""Forms generated from table metadata: valid draft 2020-12 schemas that accept good rows, refuse bad
ones, match what the emulated Dataverse accepts, and are cached per connection until refreshed."""

from __future__ import annotations

import jsonschema
import pytest

from d365_components.actions.table_forms import build_form
from d365_components.runtime import fetch_choices, invoke, open_connection

CONTACT = "70bf5a68-31a6-4e1c-9a3b-7d1d5b8e2f10"
ACCOUNT = "7eb682f1-ca75-e511-80d4-00155d2a68d1"


def validator(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def errors(schema, row) -> list[str]:
    return sorted("/".join(map(str, e.absolute_path)) or e.validator for e in validator(schema).iter_errors(row))


@pytest.fixture(scope="module")
async def account_create(connection):
    return (await invoke("dynamics365.get_table_form", {"table": "account"}, connection))["schema"]


async def test_account_create_form_accepts_a_good_row(account_create):
    schema = account_create
    assert schema["required"] == ["name"]
    assert schema["x-entity-set"] == "accounts" and schema["additionalProperties"] is False
    assert list(schema["properties"])[0] == "name"
    name = schema["properties"]["name"]
    assert (name["title"], name["maxLength"]) == ("Account Name", 160)
    category = schema["properties"]["accountcategorycode"]
    assert category["enum"] == [1, 2] and category["x-enum-labels"] == ["Preferred Customer", "Standard"]
    channels = schema["properties"]["new_channels"]
    assert channels["type"] == "array" and channels["items"]["enum"][0] == 100000000
    assert schema["properties"]["lastonholdtime"]["format"] == "date-time"
    assert schema["properties"]["numberofemployees"]["maximum"] == 1000000000
    for not_writable in ("createdon", "versionnumber", "modifiedby", "new_contract"):
        assert not_writable not in schema["properties"]
    good = {
        "name": "Contoso", "accountcategorycode": 1, "new_channels": [100000000, 100000002], "revenue": 12.5,
        "creditonhold": False, "lastonholdtime": "2026-01-02T03:04:05Z", "numberofemployees": 50,
        "primarycontactid": {"table": "contacts", "id": CONTACT}, "parentaccountid": {"table": "accounts", "id": ACCOUNT},
    }
    assert errors(schema, good) == []


async def test_account_create_form_rejects_bad_rows(account_create):
    schema = account_create
    assert errors(schema, {"name": "x", "accountcategorycode": 99}) == ["accountcategorycode"]
    assert errors(schema, {"name": "x" * 161}) == ["name"]
    assert errors(schema, {"name": "x", "primarycontactid": {"table": "accounts", "id": CONTACT}}) == ["primarycontactid/table"]
    assert errors(schema, {"name": "x", "primarycontactid": {"table": "contacts", "id": "nope"}}) == ["primarycontactid/id"]
    assert errors(schema, {"name": "x", "new_channels": [100000000, 5]}) == ["new_channels/1"]
    assert errors(schema, {"name": "x", "numberofemployees": -1}) == ["numberofemployees"]
    assert errors(schema, {"name": "x", "nosuchcolumn": 1}) == ["additionalProperties"]
    assert errors(schema, {"accountnumber": "A-1"}) == ["required"]


async def test_a_row_the_form_accepts_is_created_by_create_entity(run, account_create):
    contact = await run("dynamics365.create_entity", {"entityType": "contacts", "dynamicValues": {"lastname": "Form"}})
    row = {"name": "Form-built account", "accountcategorycode": 2, "creditlimit": 1000.0, "creditonhold": True,
           "primarycontactid": {"table": "contacts", "id": contact["id"]}, "lastonholdtime": "2026-05-06T07:08:09Z"}
    assert errors(account_create, row) == []
    created = await run("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": row})
    assert created["record"]["_primarycontactid_value"] == contact["id"]


async def test_multi_table_lookup_and_date_only(connection):
    schema = (await invoke("dynamics365.get_table_form", {"table": "contacts"}, connection))["schema"]
    company = schema["properties"]["parentcustomerid"]
    assert company["properties"]["table"]["enum"] == ["accounts", "contacts"]
    assert company["x-lookup-targets"] == ["account", "contact"]
    assert schema["properties"]["birthdate"]["format"] == "date"
    assert "lastname" in schema["required"]
    named = {"lastname": "x"}     # contact.fullname is read-only: Dataverse composes it
    assert errors(schema, {**named, "parentcustomerid": {"table": "contacts", "id": CONTACT}}) == []
    assert errors(schema, {**named, "parentcustomerid": {"table": "leads", "id": CONTACT}}) == ["parentcustomerid/table"]
    assert errors(schema, {**named, "birthdate": "not a date"}) == ["birthdate"]


async def test_update_form_is_all_optional_and_null_clears(connection):
    out = await invoke("dynamics365.get_table_form", {"table": "account", "operation": "update"}, connection)
    schema = out["schema"]
    assert "required" not in schema and schema["minProperties"] == 1
    assert "accountid" not in schema["properties"]
    assert errors(schema, {"accountcategorycode": None, "primarycontactid": None, "telephone1": None}) == []
    assert errors(schema, {"name": None}) == ["name"]
    assert errors(schema, {}) == ["minProperties"]


async def test_data_source_returns_the_same_schema(connection, account_create):
    choices = await fetch_choices("dynamics365.table_form", {"table": "account", "operation": "create"}, connection)
    assert len(choices) == 1 and choices[0]["label"] == "account create form"
    assert choices[0]["value"] == account_create


async def test_metadata_is_cached_per_connection_until_refreshed(fresh_emulator):
    emulator = fresh_emulator(seed=None)
    conn = open_connection({"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()})
    try:
        first = await invoke("dynamics365.get_table_form", {"table": "queue"}, conn)
        assert first["cached"] is False
        client = conn.open_client()
        await client.request("POST", "EntityDefinitions(LogicalName='queue')/Attributes", json={
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "AttributeType": "String",
            "AttributeTypeName": {"Value": "StringType"}, "SchemaName": "new_Code", "MaxLength": 12,
            "DisplayName": {"LocalizedLabels": [{"Label": "Code", "LanguageCode": 1033}]},
            "RequiredLevel": {"Value": "ApplicationRequired"},
        })
        again = await invoke("dynamics365.get_table_form", {"table": "queue"}, conn)
        assert again["cached"] is True and "new_code" not in again["schema"]["properties"]
        fresh = await invoke("dynamics365.get_table_form", {"table": "queue", "refresh": True}, conn)
        assert fresh["cached"] is False
        code = fresh["schema"]["properties"]["new_code"]
        assert (code["title"], code["maxLength"]) == ("Code", 12)
        assert fresh["schema"]["required"] == ["name", "new_code"]
    finally:
        await conn.aclose()


def test_build_form_from_plain_metadata():
    entity = {"LogicalName": "new_thing", "EntitySetName": "new_things", "PrimaryNameAttribute": "new_name",
              "DisplayName": {"UserLocalizedLabel": {"Label": "Thing"}}, "Attributes": [
                  {"LogicalName": "new_name", "AttributeType": "String", "MaxLength": 10, "IsValidForCreate": True,
                   "RequiredLevel": {"Value": "ApplicationRequired"}},
                  {"LogicalName": "new_mail", "AttributeType": "String", "FormatName": {"Value": "Email"},
                   "IsValidForCreate": True},
                  {"LogicalName": "new_owner", "AttributeType": "Owner", "Targets": ["systemuser", "team"],
                   "IsValidForCreate": True},
                  {"LogicalName": "new_name_yomi", "AttributeType": "String", "AttributeOf": "new_name", "IsValidForCreate": True},
                  {"LogicalName": "new_photo", "AttributeType": "Image", "IsValidForCreate": True},
              ]}
    schema = build_form(entity, "create", {"systemuser": "systemusers"})
    assert list(schema["properties"]) == ["new_name", "new_mail", "new_owner"]
    assert schema["properties"]["new_mail"]["format"] == "email"
    assert schema["properties"]["new_owner"]["properties"]["table"]["enum"] == ["systemusers", "team"]
    assert schema["title"] == "Thing (create)"
    assert errors(schema, {"new_name": "ok", "new_mail": "not-an-email"}) == ["new_mail"]
