"""Records over real HTTPS: create/retrieve/update/upsert/delete, keys, binds, expand, $ref, errors."""

from __future__ import annotations

import re

from d365_components.emulator import defaults
from d365_components.emulator.defaults import TEAM_ID, USD_ID

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REPRESENTATION = {"Prefer": "return=representation"}


def error_of(response) -> tuple[int, str, str]:
    assert response.headers["OData-Version"] == "4.0"
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def entity_id(response) -> str:
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


async def create(api, entity_set: str, body: dict) -> str:
    response = await api.post(entity_set, json=body)
    assert response.status_code == 204, response.text
    return entity_id(response)


# ---- create and retrieve ------------------------------------------------------------------

async def test_create_answers_204_with_the_new_entity_url(api, emulator):
    response = await api.post("accounts", json={"name": "Created", "revenue": 5000000, "creditonhold": False,
                                                "accountcategorycode": 1})
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["OData-Version"] == "4.0"
    assert re.fullmatch(re.escape(emulator.api_url) + r"/accounts\([0-9a-f-]{36}\)", response.headers["OData-EntityId"])


async def test_retrieve_returns_typed_values_stamps_etag_and_owner(api):
    account_id = await create(api, "accounts", {"name": "Typed", "revenue": 12.5, "creditonhold": True,
                                                "numberofemployees": 7, "lastonholdtime": "2024-03-01T10:20:30+02:00"})
    response = await api.get(f"accounts({account_id})")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("/$metadata#accounts/$entity")
    assert body["@odata.etag"] == response.headers["ETag"]
    assert re.fullmatch(r'W/"\d+"', body["@odata.etag"])
    assert (body["name"], body["revenue"], body["creditonhold"], body["numberofemployees"]) == ("Typed", 12.5, True, 7)
    assert body["lastonholdtime"] == "2024-03-01T08:20:30Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["createdon"])
    assert body["_ownerid_value"] == body["_createdby_value"] == defaults.APP_USER_ID
    assert body["_transactioncurrencyid_value"] == USD_ID
    assert body["statecode"] == 0 and body["statuscode"] == 1
    assert body["accountnumber"] is None                      # nulls are returned by OData reads
    assert "owneridtype" not in body


async def test_create_with_representation_honours_select(api):
    response = await api.post("accounts?$select=name,revenue", json={"name": "Rep", "revenue": 10},
                              headers=REPRESENTATION)
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "return=representation"
    body = response.json()
    assert set(body) == {"@odata.context", "@odata.etag", "name", "revenue", "accountid", "_transactioncurrencyid_value"}
    assert GUID.match(body["accountid"])


async def test_client_chosen_id_and_duplicate_id(api, unique):
    chosen = "a1b2c3d4-0000-4000-8000-" + unique.ljust(12, "0")[:12]
    assert await create(api, "contacts", {"contactid": chosen.upper(), "lastname": "Chosen"}) == chosen
    status, code, message = error_of(await api.post("contacts", json={"contactid": chosen, "lastname": "Again"}))
    assert (status, code) == (412, "0x80040237")


async def test_computed_full_name(api):
    contact_id = await create(api, "contacts", {"firstname": "Ada", "lastname": "Lovelace"})
    assert (await api.get(f"contacts({contact_id})?$select=fullname")).json()["fullname"] == "Ada Lovelace"
    await api.patch(f"contacts({contact_id})", json={"lastname": "King"})
    assert (await api.get(f"contacts({contact_id})?$select=fullname")).json()["fullname"] == "Ada King"


async def test_versions_v90_and_v91_are_served_but_not_v8(api, emulator):
    for version in ("v9.0", "v9.1"):
        response = await api.get(emulator.org_url + f"/api/data/{version}/accounts?$top=1&$select=name")
        assert response.status_code == 200
        assert f"/api/data/{version}/$metadata#accounts" in response.json()["@odata.context"]
    status, code, _ = error_of(await api.get(emulator.org_url + "/api/data/v8.2/accounts"))
    assert (status, code) == (404, "0x8006088a")


# ---- errors ---------------------------------------------------------------------------------

async def test_segments_are_case_sensitive(api):
    assert error_of(await api.get("Accounts")) == (404, "0x8006088a", "Resource not found for the segment 'Accounts'.")


async def test_not_found_names_table_and_id(api):
    missing = "5b4ced1c-88e1-ee11-904c-6045bd05e9d4"
    assert error_of(await api.get(f"accounts({missing})")) == (
        404, "0x80040217", f"Entity 'account' With Id = {missing} Does Not Exist")
    assert error_of(await api.delete(f"accounts({missing})"))[:2] == (404, "0x80040217")


async def test_validation_errors(api):
    cases = [
        ({"Name": "x"}, 400, "0x0", "The property 'Name' does not exist on type 'Microsoft.Dynamics.CRM.account'. "
                                   "Make sure to only use property names that are defined by the type."),
        ({"numberofemployees": "many"}, 400, "0x0", "Cannot convert the literal 'many' to the expected type 'Edm.Int32'."),
        ({"creditonhold": 1}, 400, "0x0", "Cannot convert the literal '1' to the expected type 'Edm.Boolean'."),
        ({"name": "x" * 161}, 400, "0x80044331", "A validation error occurred.  The length of the 'name' attribute of "
                                                 "the 'account' entity exceeded the maximum allowed length of '160'."),
        ({"accountcategorycode": 99}, 400, "0x8004431a", None),
        ({"_primarycontactid_value": "5b4ced1c-88e1-ee11-904c-6045bd05e9d4"}, 400, "0x0",
         "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead."),
        ({"statecode": 0, "statuscode": 2}, 400, "0x80048408", None),
        ({"numberofemployees": 99999999999999999999}, 400, "0x80044331", None),
        ({"revenue": 99999999999999999999999}, 400, "0x80044331", None),
        ({"revenue": "1e400"}, 400, "0x0", "Cannot convert the literal '1e400' to the expected type 'Edm.Decimal'."),
    ]
    for body, status, code, message in cases:
        got = error_of(await api.post("accounts", json=body))
        assert got[:2] == (status, code), (body, got)
        if message:
            assert got[2] == message
    assert "Accepted Values: 1,2" in error_of(await api.post("accounts", json={"accountcategorycode": 99}))[2]
    infinite = await api.post("accounts", content=b'{"revenue": Infinity}', headers={"Content-Type": "application/json"})
    assert error_of(infinite)[:2] == (400, "0x0")


async def test_bad_json_and_bad_keys_are_400(api):
    response = await api.post("accounts", content=b"{not json", headers={"Content-Type": "application/json"})
    assert error_of(response)[:2] == (400, "0x0")
    assert error_of(await api.get("accounts(not-a-guid)"))[:2] == (400, "0x0")
    status, code, message = error_of(await api.get("accounts(telephone1='1')"))
    assert (status, code) == (400, "0x0")
    assert message.startswith("The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.account'.")


async def test_wrong_method_on_a_collection_is_405(api):
    assert (await api.patch("accounts", json={})).status_code == 405
    assert (await api.delete("accounts")).status_code == 405


async def test_missing_token_is_401_with_a_challenge(emulator):
    import httpx
    async with httpx.AsyncClient(verify=emulator.ssl_context) as client:
        response = await client.get(emulator.api_url + "/accounts")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


# ---- update, upsert, delete, concurrency ----------------------------------------------------

async def test_patch_updates_and_bumps_the_etag(api):
    account_id = await create(api, "accounts", {"name": "Before"})
    first = (await api.get(f"accounts({account_id})?$select=name")).json()["@odata.etag"]
    response = await api.patch(f"accounts({account_id})", json={"name": "After"}, headers={"If-Match": "*"})
    assert response.status_code == 204
    assert response.headers["OData-EntityId"].endswith(f"/accounts({account_id})")
    after = (await api.get(f"accounts({account_id})?$select=name")).json()
    assert after["name"] == "After" and after["@odata.etag"] != first
    response = await api.patch(f"accounts({account_id})?$select=name", json={"name": "Third"}, headers=REPRESENTATION)
    assert response.status_code == 200 and response.json()["name"] == "Third"


async def test_stale_etag_is_412_on_patch_and_delete(api):
    account_id = await create(api, "accounts", {"name": "Concurrency"})
    etag = (await api.get(f"accounts({account_id})?$select=name")).json()["@odata.etag"]
    assert (await api.patch(f"accounts({account_id})", json={"name": "v2"}, headers={"If-Match": etag})).status_code == 204
    expected = (412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided.")
    assert error_of(await api.patch(f"accounts({account_id})", json={"name": "v3"}, headers={"If-Match": etag})) == expected
    assert error_of(await api.delete(f"accounts({account_id})", headers={"If-Match": etag})) == expected


async def test_conditional_get_returns_304_when_unchanged(api):
    account_id = await create(api, "accounts", {"name": "Cached"})
    etag = (await api.get(f"accounts({account_id})")).headers["ETag"]
    response = await api.get(f"accounts({account_id})", headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.content == b""
    annotated = await api.get(f"accounts({account_id})", headers={"If-None-Match": etag,
                                                                   "Prefer": 'odata.include-annotations="*"'})
    assert annotated.status_code == 200


async def test_upsert_semantics(api, unique):
    """The seven rows of the upsert table (reference §2.4), by alternate key."""
    url = f"accounts(accountnumber='U-{unique}')"
    assert error_of(await api.patch(url, json={"name": "no"}, headers={"If-Match": "*"}))[:2] == (404, "0x80040217")
    created = await api.patch(url, json={"name": "created"}, headers={"If-None-Match": "*", **REPRESENTATION})
    assert created.status_code == 201
    assert created.json()["accountnumber"] == f"U-{unique}"
    assert error_of(await api.patch(url, json={"name": "x"}, headers={"If-None-Match": "*"})) == (
        412, "0x80040237", "A record with matching key values already exists.")
    updated = await api.patch(url, json={"name": "updated", "accountnumber": "ignored"}, headers=REPRESENTATION)
    assert updated.status_code == 200
    assert (updated.json()["name"], updated.json()["accountnumber"]) == ("updated", f"U-{unique}")
    plain = await api.patch(url, json={"name": "again"}, headers={"If-Match": "*"})
    assert plain.status_code == 204
    assert plain.headers["OData-EntityId"].endswith(f"/accounts(accountnumber='U-{unique}')")
    assert error_of(await api.patch(url, json={"name": "x"}, headers={"If-Match": 'W/"1"'}))[:2] == (412, "0x80060882")
    by_id = f"accounts({created.json()['accountid'][:-4]}abcd)"
    assert (await api.patch(by_id, json={"name": "upsert by id"})).status_code == 204
    assert (await api.get(by_id + "?$select=name")).json()["name"] == "upsert by id"


async def test_alternate_keys_and_duplicates(api, unique):
    account_id = await create(api, "accounts", {"name": "Keyed", "accountnumber": f"K-{unique}"})
    body = (await api.get(f"accounts(accountnumber='K-{unique}')?$select=name")).json()
    assert body["accountid"] == account_id
    status, code, message = error_of(await api.post("accounts", json={"name": "Dup", "accountnumber": f"K-{unique}"}))
    assert (status, code) == (412, "0x80060892")
    assert "accountnumber" in message and "accountnumber_key" in message
    assert (await api.get(f"accounts(accountid={account_id})?$select=name")).status_code == 200
    quoted = await create(api, "accounts", {"name": "Quote", "accountnumber": f"O'B-{unique}"})
    assert (await api.get(f"accounts(accountnumber='O''B-{unique}')")).json()["accountid"] == quoted


async def test_delete(api):
    account_id = await create(api, "accounts", {"name": "Doomed"})
    assert (await api.delete(f"accounts({account_id})")).status_code == 204
    assert (await api.get(f"accounts({account_id})")).status_code == 404


async def test_single_property_read_write_and_clear(api):
    account_id = await create(api, "accounts", {"name": "Props", "telephone1": "555"})
    response = await api.get(f"accounts({account_id})/telephone1")
    assert response.json() == {"@odata.context": response.json()["@odata.context"], "value": "555"}
    assert (await api.put(f"accounts({account_id})/telephone1", json={"value": "777"})).status_code == 204
    assert (await api.get(f"accounts({account_id})/telephone1")).json()["value"] == "777"
    assert (await api.delete(f"accounts({account_id})/telephone1")).status_code == 204
    assert (await api.get(f"accounts({account_id})/telephone1")).status_code == 204


# ---- lookups, binds, expand -----------------------------------------------------------------

async def test_binds_relative_absolute_alternate_key_and_null(api, emulator, unique):
    contact_id = await create(api, "contacts", {"lastname": "Bound"})
    parent_id = await create(api, "accounts", {"name": "Parent", "accountnumber": f"P-{unique}"})
    account_id = await create(api, "accounts", {
        "name": "Child", "primarycontactid@odata.bind": f"/contacts({contact_id})",
        "parentaccountid@odata.bind": f"{emulator.api_url}/accounts(accountnumber='P-{unique}')"})
    body = (await api.get(f"accounts({account_id})?$select=_primarycontactid_value,parentaccountid")).json()
    assert body["_primarycontactid_value"] == contact_id
    assert body["_parentaccountid_value"] == parent_id
    await api.patch(f"accounts({account_id})", json={"primarycontactid@odata.bind": None, "parentaccountid": None})
    body = (await api.get(f"accounts({account_id})?$select=primarycontactid,parentaccountid")).json()
    assert body["_primarycontactid_value"] is None and body["_parentaccountid_value"] is None


async def test_polymorphic_binds_customer_and_owner(api):
    account_id = await create(api, "accounts", {"name": "Customer"})
    contact_id = await create(api, "contacts", {"lastname": "Employee", "parentcustomerid_account@odata.bind": f"accounts({account_id})",
                                                "ownerid@odata.bind": f"/teams({TEAM_ID})"})
    response = await api.get(f"contacts({contact_id})?$select=parentcustomerid,ownerid",
                             headers={"Prefer": 'odata.include-annotations="*"'})
    body = response.json()
    assert body["_parentcustomerid_value"] == account_id
    assert body["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert body["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "parentcustomerid_account"
    assert body["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] == "Customer"
    assert body["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "team"
    assert body["_ownerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "ownerid"
    wrong = await api.post("contacts", json={"lastname": "x", "parentcustomerid_account@odata.bind": f"contacts({contact_id})"})
    assert error_of(wrong)[0] == 400
    missing = await api.post("contacts", json={"lastname": "x", "parentcustomerid_account@odata.bind":
                                               "accounts(00000000-0000-0000-0000-000000000009)"})
    assert error_of(missing)[:2] == (404, "0x80040217")


async def test_formatted_values_only_when_asked(api):
    account_id = await create(api, "accounts", {"name": "Fmt", "accountcategorycode": 1, "revenue": 20000,
                                                "creditonhold": False, "numberofemployees": 1200,
                                                "lastonholdtime": "2023-04-07T14:59:00Z"})
    url = f"accounts({account_id})?$select=accountcategorycode,revenue,creditonhold,numberofemployees,lastonholdtime,statecode"
    plain = (await api.get(url)).json()
    assert not [k for k in plain if "@OData.Community" in k]
    response = await api.get(url, headers={"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'})
    assert response.headers["Preference-Applied"] == 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
    body = response.json()
    fv = "@OData.Community.Display.V1.FormattedValue"
    assert body["accountcategorycode" + fv] == "Preferred Customer"
    assert body["revenue" + fv] == "$20,000.00"
    assert body["creditonhold" + fv] == "No"
    assert body["numberofemployees" + fv] == "1,200"
    assert body["lastonholdtime" + fv] == "4/7/2023 2:59 PM"
    assert body["statecode" + fv] == "Active"
    assert "_transactioncurrencyid_value@Microsoft.Dynamics.CRM.lookuplogicalname" not in body
    wildcard = (await api.get(url, headers={"Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.*"'})).json()
    assert wildcard["_transactioncurrencyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "transactioncurrency"
    assert "revenue" + fv not in wildcard


async def test_expand_single_collection_ref_and_nested(api):
    contact_id = await create(api, "contacts", {"firstname": "Nancy", "lastname": "Expand"})
    account_id = await create(api, "accounts", {"name": "Expanded", "primarycontactid@odata.bind": f"/contacts({contact_id})"})
    for subject in ("Task 1", "Task 2", "Other"):
        await create(api, "tasks", {"subject": subject, "regardingobjectid_account_task@odata.bind": f"/accounts({account_id})"})
    response = await api.get(f"accounts({account_id})?$select=name&$expand=primarycontactid($select=contactid,fullname),"
                             "Account_Tasks($select=subject;$filter=contains(subject,'Task');$orderby=subject desc)")
    body = response.json()
    assert body["@odata.context"].endswith("#accounts(name,primarycontactid(contactid,fullname),Account_Tasks(subject))/$entity")
    assert body["primarycontactid"]["fullname"] == "Nancy Expand"
    assert "@odata.etag" in body["primarycontactid"]
    assert [t["subject"] for t in body["Account_Tasks"]] == ["Task 2", "Task 1"]
    assert all(GUID.match(t["activityid"]) for t in body["Account_Tasks"])
    ref = (await api.get(f"accounts({account_id})?$select=name&$expand=primarycontactid/$ref")).json()
    assert ref["primarycontactid"] == {"@odata.id": f"{str(api.base_url).rstrip('/')}/contacts({contact_id})"}
    nested = (await api.get(f"tasks?$select=subject&$filter=_regardingobjectid_value eq {account_id}&$expand="
                            "regardingobjectid_account_task($select=name;$expand=primarycontactid($select=fullname))")).json()
    assert nested["value"][0]["regardingobjectid_account_task"]["primarycontactid"]["fullname"] == "Nancy Expand"
    status, code, _ = error_of(await api.get(f"accounts({account_id})?$expand=Account_Tasks/$ref"))
    assert (status, code) == (400, "0x80060888")
    status, code, _ = error_of(await api.get(f"accounts({account_id})?$expand=primarycontactid($top=1)"))
    assert (status, code) == (400, "0x80060888")


async def test_navigation_reads(api):
    contact_id = await create(api, "contacts", {"lastname": "Nav"})
    account_id = await create(api, "accounts", {"name": "Navigated", "primarycontactid@odata.bind": f"contacts({contact_id})"})
    await create(api, "contacts", {"lastname": "Member", "parentcustomerid_account@odata.bind": f"/accounts({account_id})"})
    related = (await api.get(f"accounts({account_id})/primarycontactid?$select=lastname")).json()
    assert related["lastname"] == "Nav"
    members = (await api.get(f"accounts({account_id})/contact_customer_accounts?$select=lastname")).json()
    assert [m["lastname"] for m in members["value"]] == ["Member"]
    assert (await api.get(f"accounts({account_id})/contact_customer_accounts/$count")).text == "1"
    refs = (await api.get(f"accounts({account_id})/contact_customer_accounts/$ref")).json()
    assert refs["@odata.context"].endswith("$metadata#Collection($ref)") and len(refs["value"]) == 1


async def test_deep_insert(api):
    response = await api.post("accounts?$select=name&$expand=primarycontactid($select=fullname),opportunity_customer_accounts($select=name)", json={
        "name": "Deep", "primarycontactid": {"firstname": "John", "lastname": "Smith"},
        "opportunity_customer_accounts": [{"name": "Opp 1", "Opportunity_Tasks": [{"subject": "Task for opp"}]}],
    }, headers=REPRESENTATION)
    assert response.status_code == 201
    body = response.json()
    assert body["primarycontactid"]["fullname"] == "John Smith"
    assert [o["name"] for o in body["opportunity_customer_accounts"]] == ["Opp 1"]
    opp_id = body["opportunity_customer_accounts"][0]["opportunityid"]
    tasks = (await api.get(f"opportunities({opp_id})/Opportunity_Tasks?$select=subject")).json()["value"]
    assert [t["subject"] for t in tasks] == ["Task for opp"]


async def test_failed_deep_insert_leaves_nothing_behind(api, unique):
    response = await api.post("accounts", json={"name": f"Atomic {unique}",
                                                "contact_customer_accounts": [{"lastname": "ok"}, {"lastname": 5}]})
    assert error_of(response)[0] == 400
    found = (await api.get(f"accounts?$select=name&$filter=name eq 'Atomic {unique}'")).json()["value"]
    assert found == []


async def test_associate_and_disassociate(api, emulator):
    account_id = await create(api, "accounts", {"name": "Assoc"})
    opp_id = await create(api, "opportunities", {"name": "Opp"})
    lead_id = await create(api, "leads", {"lastname": "Lead", "subject": "Interested"})
    base = emulator.api_url
    add = await api.post(f"accounts({account_id})/opportunity_customer_accounts/$ref",
                         json={"@odata.id": f"{base}/opportunities({opp_id})"})
    assert add.status_code == 204
    opp = (await api.get(f"opportunities({opp_id})?$select=customerid")).json()
    assert opp["_customerid_value"] == account_id
    removed = await api.delete(f"accounts({account_id})/opportunity_customer_accounts/$ref?$id={base}/opportunities({opp_id})")
    assert removed.status_code == 204
    assert (await api.get(f"opportunities({opp_id})?$select=customerid")).json()["_customerid_value"] is None
    assert (await api.put(f"opportunities({opp_id})/customerid_account/$ref",
                          json={"@odata.id": f"accounts({account_id})"})).status_code == 204
    assert (await api.get(f"opportunities({opp_id})/customerid_account/$ref")).json()["@odata.id"].endswith(f"accounts({account_id})")
    assert (await api.delete(f"opportunities({opp_id})/customerid_account/$ref")).status_code == 204
    assert (await api.get(f"opportunities({opp_id})?$select=customerid")).json()["_customerid_value"] is None

    n_to_n = f"accounts({account_id})/accountleads_association"
    assert (await api.post(f"{n_to_n}/$ref", json={"@odata.id": f"{base}/leads({lead_id})"})).status_code == 204
    assert error_of(await api.post(f"{n_to_n}/$ref", json={"@odata.id": f"{base}/leads({lead_id})"}))[:2] == (412, "0x80040237")
    from_lead = (await api.get(f"leads({lead_id})/accountleads_association?$select=name")).json()["value"]
    assert [a["accountid"] for a in from_lead] == [account_id]
    assert (await api.delete(f"{n_to_n}({lead_id})/$ref")).status_code == 204
    assert (await api.get(f"{n_to_n}?$select=subject")).json()["value"] == []


async def test_collection_bind_on_create(api):
    tasks = [await create(api, "tasks", {"subject": f"t{i}"}) for i in range(2)]
    account_id = await create(api, "accounts", {"name": "Binder", "Account_Tasks@odata.bind": [f"/tasks({t})" for t in tasks]})
    linked = (await api.get(f"accounts({account_id})/Account_Tasks?$select=subject&$orderby=subject")).json()["value"]
    assert [t["subject"] for t in linked] == ["t0", "t1"]


async def test_impersonation_records_both_users(api):
    for header, value in (("CallerObjectId", defaults.USER_OBJECT_ID), ("MSCRMCallerID", defaults.USER_ID)):
        response = await api.post("accounts?$select=name,createdby,createdonbehalfby,ownerid", json={"name": "Impersonated"},
                                  headers={header: value, **REPRESENTATION})
        body = response.json()
        assert body["_createdby_value"] == body["_ownerid_value"] == defaults.USER_ID
        assert body["_createdonbehalfby_value"] == defaults.APP_USER_ID
        who = (await api.get("WhoAmI", headers={header: value})).json()
        assert who["UserId"] == defaults.USER_ID


# ---- messages and documents ------------------------------------------------------------------

async def test_who_am_i_and_current_organization(api, emulator):
    who = (await api.get("WhoAmI")).json()
    assert who == {"@odata.context": f"{emulator.api_url}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                   "BusinessUnitId": defaults.BUSINESS_UNIT_ID, "UserId": defaults.APP_USER_ID,
                   "OrganizationId": defaults.ORGANIZATION_ID}
    assert (await api.get("WhoAmI()")).json()["UserId"] == defaults.APP_USER_ID
    org = await api.get("RetrieveCurrentOrganization(AccessType=@p1)?@p1=Microsoft.Dynamics.CRM.EndpointAccessType'Default'")
    detail = org.json()["Detail"]
    assert detail["OrganizationId"] == defaults.ORGANIZATION_ID
    assert detail["Endpoints"]["Values"][0] == emulator.org_url + "/"
    assert (await api.get("RetrieveCurrentOrganization(AccessType='Default')")).status_code == 200
    assert error_of(await api.post("WhoAmI", json={}))[0] == 405


async def test_service_document_and_csdl(api):
    doc = (await api.get("")).json()
    assert {"name": "accounts", "kind": "EntitySet", "url": "accounts"} in doc["value"]
    csdl = await api.get("$metadata")
    assert csdl.headers["Content-Type"].startswith("application/xml")
    assert '<EntitySet Name="accounts" EntityType="Microsoft.Dynamics.CRM.account"/>' in csdl.text
    assert '<NavigationProperty Name="contact_customer_accounts" Type="Collection(mscrm.contact)"/>' in csdl.text


async def test_activities_are_listed_as_activity_pointers(api):
    account_id = await create(api, "accounts", {"name": "Busy"})
    task_id = await create(api, "tasks", {"subject": "Follow up", "regardingobjectid_account_task@odata.bind": f"/accounts({account_id})"})
    call_id = await create(api, "phonecalls", {"subject": "Call", "regardingobjectid_account_phonecall@odata.bind": f"/accounts({account_id})"})
    url = f"accounts({account_id})/Account_ActivityPointers?$select=subject,activitytypecode,statecode&$orderby=subject"
    listed = (await api.get(url)).json()["value"]
    assert [(a["activityid"], a["activitytypecode"]) for a in listed] == [(call_id, "phonecall"), (task_id, "task")]
    await api.patch(f"tasks({task_id})", json={"statecode": 1, "statuscode": 5})
    assert (await api.get(f"activitypointers({task_id})?$select=statecode")).json()["statecode"] == 1
    await api.delete(f"phonecalls({call_id})")
    assert [a["activityid"] for a in (await api.get(url)).json()["value"]] == [task_id]


async def test_unexpected_errors_are_500_with_a_dataverse_body(api):
    from d365_components.emulator.messages import registry as messages

    def broken(ctx, params, bound):
        raise RuntimeError("secret internals")

    messages.register_function("BrokenForTest", broken)
    try:
        response = await api.get("BrokenForTest()")
    finally:
        messages.unregister("BrokenForTest")
    assert error_of(response) == (500, "0x80040216", "An unexpected error occurred.")
    assert "secret" not in response.text and "Traceback" not in response.text


def test_store_transactions_and_listeners(store):
    events = []
    store.listeners.append(lambda *event: events.append(event))
    try:
        with store.transaction():
            row = store.insert("account", {"name": "Listened"}, user=defaults.APP_USER_ID)
            store.update("account", row["accountid"], {"name": "Listened 2"}, user=defaults.APP_USER_ID)
            assert events == []                                   # wait for the commit
        assert [e[0] for e in events] == ["Create", "Update"]
        assert events[1][2]["name"] == "Listened" and events[1][3]["name"] == "Listened 2"
        events.clear()
        try:
            with store.transaction():
                store.delete("account", row["accountid"])
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert events == [] and store.get("account", row["accountid"]) is not None
    finally:
        store.listeners.clear()


async def test_paths_outside_the_web_api_answer_in_dataverse_shape(api, emulator):
    response = await api.get(emulator.org_url + "/api/data")
    assert error_of(response)[:2] == (404, "0x8006088a")


def test_random_bodies_never_cause_a_500(emulator):
    import json as _json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    dispatch = emulator.app.state.dispatch
    caller = {"oid": defaults.APP_USER_OBJECT_ID, "appid": defaults.CLIENT_ID}
    keys = st.sampled_from(["name", "revenue", "numberofemployees", "creditonhold", "accountcategorycode", "new_channels",
                            "lastonholdtime", "accountid", "primarycontactid", "primarycontactid@odata.bind",
                            "Account_Tasks", "Account_Tasks@odata.bind", "_ownerid_value", "statecode", "statuscode",
                            "@odata.type", "nosuch", "ownerid@odata.bind"])
    values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3), max_leaves=6)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(keys, values, max_size=5), st.sampled_from(["POST", "PATCH"]))
    def check(body, method):
        url = "/api/data/v9.2/accounts" if method == "POST" else "/api/data/v9.2/accounts(accountnumber='FUZZ')"
        status, _, payload = dispatch(method, url, {"content-type": "application/json"}, _json.dumps(body).encode(),
                                      caller=caller)
        assert status in (200, 201, 204, 400, 404, 412), (body, payload)

    check()


def test_random_urls_never_cause_a_500(emulator):
    from urllib.parse import quote as q

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    dispatch = emulator.app.state.dispatch
    caller = {"oid": defaults.APP_USER_OBJECT_ID, "appid": defaults.CLIENT_ID}
    parts = st.sampled_from([
        "accounts", "contacts", "tasks", "(", ")", "'", "''", "/", "$ref", "$count", "$metadata", "$batch",
        "00000000-0000-0000-0000-000000000001", "accountnumber=", "'A-1'", ",", "name", "primarycontactid",
        "contact_customer_accounts", "accountleads_association", "Microsoft.Dynamics.CRM.", "WhoAmI", "()",
        "EntityDefinitions", "Attributes", "LogicalName=", "RelationshipDefinitions", "GlobalOptionSetDefinitions",
        "OptionSet", "Microsoft.Dynamics.CRM.PicklistAttributeMetadata", "@p1", "=", "?$id=", "Keys", "x", "%", " "])

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(parts, min_size=1, max_size=8), st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE"]))
    def check(pieces, method):
        path = q("".join(pieces), safe="/$()',=?@")
        status, _, payload = dispatch(method, f"/api/data/v9.2/{path}", {}, b"{}", caller=caller)
        assert status != 500 and status < 600, (method, path, payload)

    check()


async def test_key_values_can_be_parameter_aliases(api, unique):
    account_id = await create(api, "accounts", {"name": "Aliased", "accountnumber": f"AL-{unique}"})
    response = await api.get(f"accounts(accountnumber=@key)?$select=name&@key='AL-{unique}'")
    assert response.json()["accountid"] == account_id
