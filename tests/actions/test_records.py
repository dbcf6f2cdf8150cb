"""Record actions against the emulator over HTTPS: CRUD, alternate keys, upsert modes, ETags,
lookups (pair, GUID, alternate key, customer, owner), associations, and input errors before any
request."""

from __future__ import annotations

import uuid

import httpx
import pytest

from d365_components.errors import ConcurrencyError, InputValidationError, RecordNotFoundError
from d365_components.runtime import invoke, open_connection


def _number() -> str:
    return f"T-{uuid.uuid4().hex[:10]}"


async def _account(run, **values) -> dict:
    values.setdefault("name", "Test account")
    values.setdefault("accountnumber", _number())
    return await run("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": values})


# -- create / get ----------------------------------------------------------------------------


async def test_create_merges_field_values_and_dynamic_values_dynamic_wins(run):
    out = await run(
        "dynamics365.create_entity",
        {
            "entityType": "accounts",
            "fieldValues": [{"key": "name", "value": "From the list"}, {"key": "numberofemployees", "value": 12}],
            "dynamicValues": {"name": "From the object", "revenue": 5000},
        },
    )
    assert uuid.UUID(out["id"])
    assert out["entityType"] == "accounts"
    assert out["entityUrl"].endswith(f"accounts({out['id']})")
    assert out["etag"].startswith('W/"')
    assert out["record"]["name"] == "From the object"
    assert out["record"]["numberofemployees"] == 12


async def test_create_without_representation_still_returns_the_id(run):
    out = await run("dynamics365.create_entity", {"entityType": "account", "dynamicValues": {"name": "No representation"}, "returnRepresentation": False})
    assert uuid.UUID(out["id"]) and out["record"] is None and out["entityType"] == "accounts"


async def test_create_select_columns(run):
    out = await run("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": {"name": "Sel", "revenue": 7}, "fieldNames": ["name"]})
    assert out["record"]["name"] == "Sel" and "revenue" not in out["record"]


async def test_get_by_id_and_by_alternate_key_return_the_etag(run):
    number = _number()
    created = await _account(run, name="Gettable", accountnumber=number)
    by_id = await run("dynamics365.get_entity", {"entityType": "accounts", "entityId": created["id"], "fieldNames": ["name"]})
    assert by_id["record"]["name"] == "Gettable" and by_id["id"] == created["id"]
    assert by_id["etag"] == created["etag"]
    by_key = await run("dynamics365.get_entity", {"entityType": "Accounts", "alternateKey": {"accountnumber": number}})
    assert by_key["id"] == created["id"] and by_key["etag"] == created["etag"]


async def test_get_formatted_values(run):
    created = await _account(run, revenue=1234.5)
    out = await run("dynamics365.get_entity", {"entityType": "accounts", "entityId": created["id"], "includeFormattedValues": True})
    assert any(k.endswith("@OData.Community.Display.V1.FormattedValue") for k in out["record"])


async def test_get_missing_row_is_record_not_found_with_code_and_hint(run):
    with pytest.raises(RecordNotFoundError) as caught:
        await run("dynamics365.get_entity", {"entityType": "accounts", "entityId": str(uuid.uuid4())})
    error = caught.value
    assert error.status == 404 and error.code == "0x80040217"
    assert error.message and error.hint


async def test_unknown_table_is_a_field_error(run):
    with pytest.raises(InputValidationError) as caught:
        await run("dynamics365.get_entity", {"entityType": "nosuchtables", "entityId": str(uuid.uuid4())})
    assert [e.pointer for e in caught.value.errors] == ["/entityType"]


# -- update / delete with ETags ----------------------------------------------------------------


async def test_update_with_current_etag_then_stale_etag_fails(run):
    created = await _account(run, name="v1")
    etag = created["etag"]
    updated = await run(
        "dynamics365.update_entity",
        {"entityType": "accounts", "entityId": created["id"], "dynamicValues": {"name": "v2"}, "ifMatchEtag": etag, "returnRepresentation": True},
    )
    assert updated["record"]["name"] == "v2" and updated["etag"] != etag
    with pytest.raises(ConcurrencyError) as caught:
        await run("dynamics365.update_entity", {"entityType": "accounts", "entityId": created["id"], "dynamicValues": {"name": "v3"}, "ifMatchEtag": etag})
    assert caught.value.status == 412
    current = await run("dynamics365.get_entity", {"entityType": "accounts", "entityId": created["id"]})
    assert current["record"]["name"] == "v2"


async def test_update_never_creates(run):
    with pytest.raises(RecordNotFoundError):
        await run("dynamics365.update_entity", {"entityType": "accounts", "entityId": str(uuid.uuid4()), "dynamicValues": {"name": "ghost"}})


async def test_update_by_alternate_key_refuses_to_change_the_key(run):
    number = _number()
    created = await _account(run, accountnumber=number)
    out = await run(
        "dynamics365.update_entity",
        {"entityType": "accounts", "alternateKey": {"accountnumber": number}, "dynamicValues": {"name": "by key", "accountnumber": number}},
    )
    assert out["entityUrl"]
    got = await run("dynamics365.get_entity", {"entityType": "accounts", "entityId": created["id"]})
    assert got["record"]["name"] == "by key"
    with pytest.raises(InputValidationError) as caught:
        await run("dynamics365.update_entity", {"entityType": "accounts", "alternateKey": {"accountnumber": number}, "dynamicValues": {"accountnumber": "other"}})
    assert caught.value.errors[0].pointer == "/dynamicValues/accountnumber"


async def test_delete_with_stale_etag_fails_then_deletes_by_key(run):
    number = _number()
    created = await _account(run, accountnumber=number)
    await run("dynamics365.update_entity", {"entityType": "accounts", "entityId": created["id"], "dynamicValues": {"name": "changed"}})
    with pytest.raises(ConcurrencyError):
        await run("dynamics365.delete_entity", {"entityType": "accounts", "entityId": created["id"], "ifMatchEtag": created["etag"]})
    out = await run("dynamics365.delete_entity", {"entityType": "accounts", "alternateKey": {"accountnumber": number}})
    assert out["deleted"] is True and out["alternateKey"] == {"accountnumber": number}
    with pytest.raises(RecordNotFoundError):
        await run("dynamics365.get_entity", {"entityType": "accounts", "entityId": created["id"]})


# -- upsert -------------------------------------------------------------------------------------


async def test_upsert_modes(run):
    number = _number()
    key = {"accountnumber": number}
    created = await run("dynamics365.upsert_entity", {"entityType": "accounts", "alternateKey": key, "dynamicValues": {"name": "first"}, "upsertBehavior": "createOnly"})
    assert created["created"] is True and created["record"]["accountnumber"] == number
    with pytest.raises(ConcurrencyError):
        await run("dynamics365.upsert_entity", {"entityType": "accounts", "alternateKey": key, "dynamicValues": {"name": "again"}, "upsertBehavior": "createOnly"})
    updated = await run("dynamics365.upsert_entity", {"entityType": "accounts", "alternateKey": key, "dynamicValues": {"name": "second", "accountnumber": number}})
    assert updated["created"] is False and updated["id"] == created["id"] and updated["record"]["name"] == "second"
    only = await run("dynamics365.upsert_entity", {"entityType": "accounts", "alternateKey": key, "dynamicValues": {"name": "third"}, "upsertBehavior": "updateOnly", "returnRepresentation": False})
    assert only["created"] is False
    with pytest.raises(RecordNotFoundError):
        await run("dynamics365.upsert_entity", {"entityType": "accounts", "alternateKey": {"accountnumber": _number()}, "dynamicValues": {"name": "x"}, "upsertBehavior": "updateOnly"})


async def test_upsert_by_id_creates_then_updates(run):
    row_id = str(uuid.uuid4())
    first = await run("dynamics365.upsert_entity", {"entityType": "accounts", "entityId": row_id, "dynamicValues": {"name": "Upserted by id"}})
    assert first["created"] is True and first["id"] == row_id
    second = await run("dynamics365.upsert_entity", {"entityType": "accounts", "entityId": row_id, "dynamicValues": {"name": "Upserted by id again"}})
    assert second["created"] is False


# -- lookups -------------------------------------------------------------------------------------


async def test_lookup_by_pair_guid_alternate_key_and_customer(run):
    number = _number()
    account = await _account(run, accountnumber=number)
    by_pair = await run(
        "dynamics365.create_entity",
        {"entityType": "contacts", "dynamicValues": {"lastname": "Pair", "parentcustomerid": {"table": "accounts", "id": account["id"]}}},
    )
    assert by_pair["record"]["_parentcustomerid_value"] == account["id"]
    by_key = await run(
        "dynamics365.create_entity",
        {"entityType": "contacts", "fieldValues": [{"key": "lastname", "value": "Key"}, {"key": "parentcustomerid", "value": {"table": "account", "key": {"accountnumber": number}}}]},
    )
    assert by_key["record"]["_parentcustomerid_value"] == account["id"]
    # customer lookup to a contact
    child = await run(
        "dynamics365.create_entity",
        {"entityType": "contacts", "dynamicValues": {"lastname": "Child", "parentcustomerid": {"table": "contacts", "id": by_pair["id"]}}},
    )
    assert child["record"]["_parentcustomerid_value"] == by_pair["id"]
    # a bare GUID where the lookup has one target
    updated = await run(
        "dynamics365.update_entity",
        {"entityType": "accounts", "entityId": account["id"], "dynamicValues": {"primarycontactid": by_pair["id"]}, "returnRepresentation": True},
    )
    assert updated["record"]["_primarycontactid_value"] == by_pair["id"]
    # text in the Power Automate style, and clearing with null
    again = await run(
        "dynamics365.update_entity",
        {"entityType": "accounts", "entityId": account["id"], "dynamicValues": {"primarycontactid": f"/contacts({child['id']})"}, "returnRepresentation": True},
    )
    assert again["record"]["_primarycontactid_value"] == child["id"]
    cleared = await run(
        "dynamics365.update_entity",
        {"entityType": "accounts", "entityId": account["id"], "dynamicValues": {"primarycontactid": None}, "returnRepresentation": True},
    )
    assert cleared["record"]["_primarycontactid_value"] is None


async def test_owner_lookup_to_a_team(run, api):
    team = (await api.get("teams", params={"$select": "teamid", "$top": "1"})).json()["value"]
    if not team:
        pytest.skip("the seed has no team")
    out = await run(
        "dynamics365.create_entity",
        {"entityType": "accounts", "dynamicValues": {"name": "Team owned", "ownerid": {"table": "teams", "id": team[0]["teamid"]}}},
    )
    assert out["record"]["_ownerid_value"] == team[0]["teamid"]


async def test_lookup_mistakes_name_the_field(run):
    account = await _account(run)
    with pytest.raises(InputValidationError) as caught:
        await run(
            "dynamics365.create_entity",
            {
                "entityType": "contacts",
                "fieldValues": [{"key": "parentcustomerid", "value": account["id"]}],
                "dynamicValues": {"originatingleadid": {"table": "accounts", "id": account["id"]}, "lastname": {"table": "accounts", "id": account["id"]}},
            },
        )
    errors = {e.pointer: e.message for e in caught.value.errors}
    assert "account or contact" in errors["/fieldValues/0/value"]
    assert "cannot point to accounts" in errors["/dynamicValues/originatingleadid"]
    assert "not a lookup column" in errors["/dynamicValues/lastname"]


# -- associations -----------------------------------------------------------------------------------


async def test_associate_and_disassociate_many_to_many_and_one_to_many(run, api):
    account = await _account(run)
    lead = await run("dynamics365.create_entity", {"entityType": "leads", "dynamicValues": {"lastname": "Linked", "subject": "s"}})
    linked = await run(
        "dynamics365.associate_entities",
        {"entityType": "accounts", "entityId": account["id"], "relationship": "accountleads_association", "relatedEntityId": lead["id"]},
    )
    assert linked["relatedEntityType"] == "leads" and linked["associated"] is True
    refs = (await api.get(f"accounts({account['id']})/accountleads_association/$ref")).json()["value"]
    assert any(lead["id"] in r["@odata.id"] for r in refs)
    await run(
        "dynamics365.disassociate_entities",
        {"entityType": "accounts", "entityId": account["id"], "relationship": "accountleads_association", "relatedEntityId": lead["id"]},
    )
    refs = (await api.get(f"accounts({account['id']})/accountleads_association/$ref")).json()["value"]
    assert not refs

    contact = await run("dynamics365.create_entity", {"entityType": "contacts", "dynamicValues": {"lastname": "Kid"}})
    await run(
        "dynamics365.associate_entities",
        {"entityType": "accounts", "entityId": account["id"], "relationship": "contact_customer_accounts", "relatedEntityId": contact["id"]},
    )
    got = await run("dynamics365.get_entity", {"entityType": "contacts", "entityId": contact["id"]})
    assert got["record"]["_parentcustomerid_value"] == account["id"]
    # single-valued: set and clear the account's primary contact through its navigation property
    await run(
        "dynamics365.associate_entities",
        {"entityType": "accounts", "entityId": account["id"], "relationship": "primarycontactid", "relatedEntityId": contact["id"]},
    )
    got = await run("dynamics365.get_entity", {"entityType": "accounts", "entityId": account["id"]})
    assert got["record"]["_primarycontactid_value"] == contact["id"]
    out = await run("dynamics365.disassociate_entities", {"entityType": "accounts", "entityId": account["id"], "relationship": "primarycontactid"})
    assert out["associated"] is False
    got = await run("dynamics365.get_entity", {"entityType": "accounts", "entityId": account["id"]})
    assert got["record"]["_primarycontactid_value"] is None


async def test_unknown_relationship_is_a_field_error(run):
    account = await _account(run)
    with pytest.raises(InputValidationError) as caught:
        await run("dynamics365.associate_entities", {"entityType": "accounts", "entityId": account["id"], "relationship": "nope", "relatedEntityId": account["id"]})
    assert caught.value.errors[0].pointer == "/relationship"


# -- bad input: every field named, nothing sent --------------------------------------------------------


async def test_bad_inputs_are_all_reported_before_any_request(offline_connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.get_entity", {"entityId": "not-a-guid", "includeFormattedValues": "maybe"}, offline_connection)
    pointers = {e.pointer for e in caught.value.errors}
    assert {"/entityType", "/entityId", "/includeFormattedValues"} <= pointers
    assert offline_connection.sent == []


@pytest.mark.parametrize(
    "key_inputs, words",
    [({}, "exactly one"), ({"entityId": str(uuid.uuid4()), "alternateKey": {"accountnumber": "A"}}, "not both")],
)
async def test_row_needs_id_or_alternate_key_not_both(offline_connection, key_inputs, words):
    for key in ("dynamics365.get_entity", "dynamics365.update_entity", "dynamics365.upsert_entity", "dynamics365.delete_entity"):
        with pytest.raises(InputValidationError) as caught:
            await invoke(key, {"entityType": "accounts", **key_inputs}, offline_connection)
        message = str(caught.value)
        assert "entityId" in message and "alternateKey" in message and words in message
    assert offline_connection.sent == []


async def test_upsert_behavior_must_be_known(offline_connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.upsert_entity", {"entityType": "accounts", "entityId": str(uuid.uuid4()), "upsertBehavior": "merge"}, offline_connection)
    assert caught.value.errors[0].pointer == "/upsertBehavior"


async def test_impersonation_runs_as_the_user(run, api):
    users = (await api.get("systemusers", params={"$select": "systemuserid,azureactivedirectoryobjectid"})).json()["value"]
    me = (await api.get("WhoAmI")).json()["UserId"]
    other = next((u for u in users if u["systemuserid"] != me and u.get("azureactivedirectoryobjectid")), None)
    if other is None:
        pytest.skip("the seed has no second user with an Entra object id")
    out = await run(
        "dynamics365.create_entity",
        {"entityType": "accounts", "dynamicValues": {"name": "As someone"}, "impersonateUserId": other["azureactivedirectoryobjectid"]},
    )
    assert out["record"]["_createdby_value"] == other["systemuserid"]


class _Recording(httpx.AsyncHTTPTransport):
    """A real transport that also keeps every request it sends."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await super().handle_async_request(request)


async def test_duplicate_detection_and_formatted_values_on_write(emulator, run):
    conn = open_connection({"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()})
    transport = _Recording(verify=emulator.ssl_context)
    conn.open_client(transport=transport)
    try:
        out = await run(
            "dynamics365.create_entity",
            {"entityType": "accounts", "dynamicValues": {"name": "Dup check", "revenue": 10}, "detectDuplicates": True, "includeFormattedValues": True},
            connection=conn,
        )
    finally:
        await conn.aclose()
    [post] = [r for r in transport.sent if r.method == "POST" and r.url.path.endswith("/accounts")]
    assert post.headers["MSCRM.SuppressDuplicateDetection"] == "false"
    assert "return=representation" in post.headers["Prefer"]
    assert 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"' in post.headers["Prefer"]
    assert "revenue@OData.Community.Display.V1.FormattedValue" in out["record"]


async def test_lookup_by_read_name_and_by_navigation_property(run):
    account = await _account(run)
    by_read_name = await run(
        "dynamics365.create_entity",
        {"entityType": "contacts", "dynamicValues": {"lastname": "R", "_parentcustomerid_value": {"table": "accounts", "id": account["id"]}}},
    )
    assert by_read_name["record"]["_parentcustomerid_value"] == account["id"]
    by_nav = await run(
        "dynamics365.create_entity",
        {"entityType": "contacts", "dynamicValues": {"lastname": "N", "parentcustomerid_account": account["id"]}},
    )
    assert by_nav["record"]["_parentcustomerid_value"] == account["id"]


async def test_multi_select_choices_may_be_given_as_a_list(run) -> None:
    created = await run("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": {"name": "Multi", "new_channels": [100000000, 100000002]}})
    assert created["record"]["new_channels"] == "100000000,100000002"
