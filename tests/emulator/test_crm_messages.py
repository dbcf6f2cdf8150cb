"""CRM messages over real HTTPS: QualifyLead, Win/LoseOpportunity, CloseIncident, AddToQueue,
PickFromQueue, ReleaseToQueue and CalculateRollupField change state and link rows as Dataverse does."""

from __future__ import annotations

from d365_components.emulator import defaults
from d365_components.emulator.defaults import USD_ID
from d365_components.emulator.messages import crm  # noqa: F401  (registers the messages)

NS = "Microsoft.Dynamics.CRM."


async def create(api, entity_set: str, body: dict) -> str:
    response = await api.post(entity_set, json=body)
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def error_of(response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


# ---- QualifyLead ----------------------------------------------------------------------------------

async def test_qualify_lead_creates_linked_account_contact_and_opportunity(api, unique):
    lead_id = await create(api, "leads", {
        "subject": f"Deal {unique}", "firstname": "Ada", "lastname": f"Lovelace {unique}",
        "companyname": f"Engines {unique}", "emailaddress1": f"ada-{unique}@example.test", "estimatedamount": 5000})
    response = await api.post(f"leads({lead_id})/{NS}QualifyLead", json={
        "CreateAccount": True, "CreateContact": True, "CreateOpportunity": True, "Status": 3,
        "OpportunityCurrencyId@odata.bind": f"/transactioncurrencies({USD_ID})"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith(f"$metadata#Collection({NS}crmbaseentity)")
    refs = {item["@odata.type"].removeprefix("#" + NS): item for item in body["value"]}
    assert set(refs) == {"account", "contact", "opportunity"}
    account_id, contact_id = refs["account"]["accountid"], refs["contact"]["contactid"]
    opportunity_id = refs["opportunity"]["opportunityid"]

    account = (await api.get(f"accounts({account_id})")).json()
    assert account["name"] == f"Engines {unique}" and account["_originatingleadid_value"] == lead_id
    assert account["_primarycontactid_value"] == contact_id
    contact = (await api.get(f"contacts({contact_id})")).json()
    assert contact["fullname"] == f"Ada Lovelace {unique}"
    assert contact["_parentcustomerid_value"] == account_id
    opportunity = (await api.get(f"opportunities({opportunity_id})")).json()
    assert opportunity["name"] == f"Deal {unique}" and opportunity["estimatedvalue"] == 5000
    assert opportunity["_customerid_value"] == account_id and opportunity["_parentcontactid_value"] == contact_id
    assert opportunity["_transactioncurrencyid_value"] == USD_ID
    lead = (await api.get(f"leads({lead_id})")).json()
    assert (lead["statecode"], lead["statuscode"]) == (1, 3)
    assert lead["_qualifyingopportunityid_value"] == opportunity_id
    assert lead["_parentaccountid_value"] == account_id and lead["_parentcontactid_value"] == contact_id


async def test_qualifying_twice_or_with_a_wrong_status_is_refused(api, unique):
    lead_id = await create(api, "leads", {"subject": unique, "lastname": unique})
    flags = {"CreateAccount": False, "CreateContact": True, "CreateOpportunity": False}
    wrong = await api.post(f"leads({lead_id})/{NS}QualifyLead", json={**flags, "Status": 4})
    assert error_of(wrong)[:2] == (400, "0x80048408")
    first = await api.post(f"leads({lead_id})/{NS}QualifyLead", json={**flags, "Status": 3})
    assert first.status_code == 200 and len(first.json()["value"]) == 1
    again = await api.post(f"leads({lead_id})/{NS}QualifyLead", json={**flags, "Status": 3})
    status, code, message = error_of(again)
    assert (status, code) == (400, "0x8004023b") and "Qualified" in message
    contacts = (await api.get("contacts", params={"$filter": f"_originatingleadid_value eq {lead_id}"})).json()
    assert len(contacts["value"]) == 1                      # the refused call created nothing


async def test_qualify_lead_checks_its_parameters(api, unique):
    lead_id = await create(api, "leads", {"subject": unique, "lastname": unique})
    missing = await api.post(f"leads({lead_id})/{NS}QualifyLead", json={"CreateAccount": True, "Status": 3})
    assert error_of(missing)[0] == 400 and "CreateContact" in error_of(missing)[2]
    no_company = await api.post(f"leads({lead_id})/{NS}QualifyLead", json={
        "CreateAccount": True, "CreateContact": False, "CreateOpportunity": False, "Status": 3})
    assert error_of(no_company)[0] == 400 and "company" in error_of(no_company)[2]
    unbound = await api.post("QualifyLead", json={})
    assert unbound.status_code == 404


async def test_qualify_lead_falls_back_to_the_leads_parent_account(api, unique):
    account_id = await create(api, "accounts", {"name": unique})
    lead_id = await create(api, "leads", {"subject": unique, "lastname": unique,
                                          "parentaccountid@odata.bind": f"/accounts({account_id})"})
    response = await api.post(f"leads({lead_id})/{NS}QualifyLead", json={
        "CreateAccount": False, "CreateContact": False, "CreateOpportunity": True, "Status": 3})
    opportunity_id = response.json()["value"][0]["opportunityid"]
    opportunity = (await api.get(f"opportunities({opportunity_id})")).json()
    assert opportunity["_customerid_value"] == account_id


async def test_qualify_lead_with_an_existing_customer(api, unique):
    account_id = await create(api, "accounts", {"name": unique})
    lead_id = await create(api, "leads", {"subject": unique, "lastname": unique})
    response = await api.post(f"leads({lead_id})/{NS}QualifyLead", json={
        "CreateAccount": False, "CreateContact": False, "CreateOpportunity": True, "Status": 3,
        "OpportunityCustomerId": {"@odata.type": f"{NS}account", "accountid": account_id}})
    opportunity_id = response.json()["value"][0]["opportunityid"]
    opportunity = (await api.get(f"opportunities({opportunity_id})")).json()
    assert opportunity["_customerid_value"] == account_id and opportunity["_parentaccountid_value"] == account_id


# ---- opportunities ---------------------------------------------------------------------------------

async def test_win_opportunity_records_the_close_and_sets_won(api, unique):
    opportunity_id = await create(api, "opportunities", {"name": unique, "estimatedvalue": 900})
    response = await api.post("WinOpportunity", json={"Status": 3, "OpportunityClose": {
        "subject": f"Won {unique}", "actualrevenue": 1000, "actualend": "2025-05-04T10:00:00Z",
        "opportunityid@odata.bind": f"/opportunities({opportunity_id})"}})
    assert response.status_code == 204, response.text
    opportunity = (await api.get(f"opportunities({opportunity_id})")).json()
    assert (opportunity["statecode"], opportunity["statuscode"]) == (1, 3)
    assert opportunity["actualvalue"] == 1000 and opportunity["actualclosedate"] == "2025-05-04"
    closes = (await api.get("opportunitycloses", params={"$filter": f"_opportunityid_value eq {opportunity_id}"})).json()
    [close] = closes["value"]
    assert close["subject"] == f"Won {unique}" and close["statecode"] == 1
    again = await api.post("WinOpportunity", json={"Status": 3, "OpportunityClose": {
        "opportunityid@odata.bind": f"/opportunities({opportunity_id})"}})
    assert error_of(again)[:2] == (400, "0x8004023b")


async def test_lose_opportunity_checks_the_status_reason(api, emulator, unique):
    opportunity_id = await create(api, "opportunities", {"name": unique})
    close = {"subject": "Lost", "opportunityid@odata.bind": f"{emulator.api_url}/opportunities({opportunity_id})"}
    wrong = await api.post("LoseOpportunity", json={"Status": 3, "OpportunityClose": close})
    assert error_of(wrong)[:2] == (400, "0x80048408")
    response = await api.post("LoseOpportunity", json={"Status": 5, "OpportunityClose": close})
    assert response.status_code == 204
    opportunity = (await api.get(f"opportunities({opportunity_id})")).json()
    assert (opportunity["statecode"], opportunity["statuscode"]) == (2, 5)
    missing = await api.post("LoseOpportunity", json={"Status": 5, "OpportunityClose": {"subject": "x"}})
    assert error_of(missing)[0] == 400 and "opportunityid@odata.bind" in error_of(missing)[2]
    unknown = await api.post("LoseOpportunity", json={"Status": 5, "OpportunityClose": {
        "opportunityid@odata.bind": "/opportunities(00000000-0000-0000-0000-000000000001)"}})
    assert error_of(unknown)[:2] == (404, "0x80040217")


# ---- cases ------------------------------------------------------------------------------------------

async def test_close_incident_resolves_the_case(api, unique):
    incident_id = await create(api, "incidents", {"title": unique})
    response = await api.post("CloseIncident", json={"Status": 5, "IncidentResolution": {
        "@odata.type": f"{NS}incidentresolution", "subject": f"Fixed {unique}", "timespent": 30,
        "incidentid@odata.bind": f"/incidents({incident_id})"}})
    assert response.status_code == 204, response.text
    incident = (await api.get(f"incidents({incident_id})")).json()
    assert (incident["statecode"], incident["statuscode"]) == (1, 5)
    [resolution] = (await api.get("incidentresolutions", params={
        "$filter": f"_incidentid_value eq {incident_id}"})).json()["value"]
    assert resolution["subject"] == f"Fixed {unique}" and resolution["timespent"] == 30
    again = await api.post("CloseIncident", json={"Status": 5, "IncidentResolution": {
        "incidentid@odata.bind": f"/incidents({incident_id})"}})
    assert error_of(again)[:2] == (400, "0x8004023b")


# ---- queues -----------------------------------------------------------------------------------------

async def test_add_to_queue_pick_and_release(api, unique):
    queue_id = await create(api, "queues", {"name": f"Support {unique}"})
    other_queue = await create(api, "queues", {"name": f"Escalations {unique}"})
    incident_id = await create(api, "incidents", {"title": f"Broken {unique}"})
    target = {"@odata.type": f"{NS}incident", "incidentid": incident_id}
    response = await api.post(f"queues({queue_id})/{NS}AddToQueue", json={"Target": target})
    assert response.status_code == 200, response.text
    assert response.json()["@odata.context"].endswith(f"$metadata#{NS}AddToQueueResponse")
    item_id = response.json()["QueueItemId"]
    item = (await api.get(f"queueitems({item_id})")).json()
    assert item["_queueid_value"] == queue_id and item["_objectid_value"] == incident_id
    assert item["title"] == f"Broken {unique}" and item["objecttypecode"] == "incident"

    moved = await api.post(f"queues({other_queue})/{NS}AddToQueue", json={"Target": target})
    assert moved.json()["QueueItemId"] == item_id            # an item waits in one queue at a time
    assert (await api.get(f"queueitems({item_id})")).json()["_queueid_value"] == other_queue

    picked = await api.post("PickFromQueue", json={"QueueItemId": item_id, "WorkerId": defaults.USER_ID,
                                                   "RemoveQueueItem": False})
    assert picked.status_code == 204, picked.text
    assert (await api.get(f"queueitems({item_id})")).json()["_workerid_value"] == defaults.USER_ID
    released = await api.post(f"queueitems({item_id})/{NS}ReleaseToQueue", json={})
    assert released.status_code == 204
    assert (await api.get(f"queueitems({item_id})")).json()["_workerid_value"] is None
    removed = await api.post("PickFromQueue", json={"QueueItemId": item_id, "WorkerId": defaults.USER_ID,
                                                    "RemoveQueueItem": True})
    assert removed.status_code == 204
    assert (await api.get(f"queueitems({item_id})")).json()["statecode"] == 1


async def test_queue_messages_refuse_bad_targets(api, unique):
    queue_id = await create(api, "queues", {"name": unique})
    account_id = await create(api, "accounts", {"name": unique})
    wrong_type = await api.post(f"queues({queue_id})/{NS}AddToQueue", json={
        "Target": {"@odata.type": f"{NS}account", "accountid": account_id}})
    assert error_of(wrong_type)[0] == 400
    untyped = await api.post(f"queues({queue_id})/{NS}AddToQueue", json={"Target": {"activityid": account_id}})
    assert "EdmEntityObject" in error_of(untyped)[2]
    unknown = await api.post("PickFromQueue", json={"QueueItemId": account_id, "WorkerId": defaults.USER_ID})
    assert error_of(unknown)[:2] == (404, "0x80040217")
    task_id = await create(api, "tasks", {"subject": unique})
    response = await api.post(f"queues({queue_id})/{NS}AddToQueue", json={
        "Target": {"@odata.type": f"{NS}task", "activityid": task_id},
        "QueueItemProperties": {"title": f"Custom {unique}"}})
    assert (await api.get(f"queueitems({response.json()['QueueItemId']})")).json()["title"] == f"Custom {unique}"


# ---- rollups -------------------------------------------------------------------------------------------

async def test_calculate_rollup_field_counts_open_deals(api, unique):
    account_id = await create(api, "accounts", {"name": unique})
    for value in (100, 250):
        await create(api, "opportunities", {"name": unique, "estimatedvalue": value,
                                            "parentaccountid@odata.bind": f"/accounts({account_id})"})
    target = {"@p1": f"{{'@odata.id':'accounts({account_id})'}}"}
    deals = await api.get("CalculateRollupField(Target=@p1,FieldName=@p2)", params={**target, "@p2": "'opendeals'"})
    assert deals.status_code == 200, deals.text
    body = deals.json()
    assert body["accountid"] == account_id and body["name"] == unique
    assert body["opendeals"] == 2 and body["opendeals_state"] == 1 and body["opendeals_date"]
    revenue = await api.get("CalculateRollupField(Target=@p1,FieldName=@p2)", params={**target, "@p2": "'openrevenue'"})
    assert revenue.json()["openrevenue"] == 350
    plain = await api.get("CalculateRollupField(Target=@p1,FieldName=@p2)", params={**target, "@p2": "'name'"})
    assert plain.status_code == 200 and plain.json()["name"] == unique
    unknown = await api.get("CalculateRollupField(Target=@p1,FieldName=@p2)", params={**target, "@p2": "'nope'"})
    assert error_of(unknown)[0] == 400


# ---- states only a message may set ----------------------------------------------------------------

async def test_patch_cannot_win_lose_or_resolve(api, unique):
    """Won, Lost and Resolved come only from WinOpportunity, LoseOpportunity and CloseIncident."""
    opportunity_id = await create(api, "opportunities", {"name": unique})
    incident_id = await create(api, "incidents", {"title": unique})
    for url, body, message in ((f"opportunities({opportunity_id})", {"statecode": 1, "statuscode": 3}, "WinOpportunity"),
                               (f"opportunities({opportunity_id})", {"statecode": 2}, "LoseOpportunity"),
                               (f"incidents({incident_id})", {"statecode": 1, "statuscode": 5}, "CloseIncident")):
        status, code, text = error_of(await api.patch(url, json=body))
        assert (status, code) == (400, "0x80040203") and message in text, text
    assert (await api.get(f"opportunities({opportunity_id})")).json()["statecode"] == 0
    cancelled = await api.patch(f"incidents({incident_id})", json={"statecode": 2, "statuscode": 6})
    assert cancelled.status_code == 204, cancelled.text
    renamed = await api.patch(f"opportunities({opportunity_id})", json={"name": f"{unique} renamed", "statecode": 0})
    assert renamed.status_code == 204, renamed.text
