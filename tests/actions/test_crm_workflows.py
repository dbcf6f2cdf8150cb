"""CRM workflow actions against the emulator: leads, opportunities, cases, queues, activities."""

from __future__ import annotations

import uuid

import pytest

from d365_components.actions._lookups import metadata_for
from d365_components.emulator import defaults
from d365_components.emulator.defaults import USD_ID
from d365_components.emulator.messages import crm_tables as crm_messages
from d365_components.errors import DataverseError, InputValidationError
from d365_components.runtime import invoke


@pytest.fixture(scope="module", autouse=True)
def crm_tables(emulator, connection):
    """The close and party tables exist from the start (as when the app adds them on creation)."""
    crm_messages.add_tables(emulator.app.state.store)
    metadata_for(connection.open_client()).forget()          # table lists read earlier lack them


def unique() -> str:
    return uuid.uuid4().hex[:8]


async def create(run, entity_type: str, values: dict) -> str:
    return (await run("dynamics365.create_entity", {"entityType": entity_type, "dynamicValues": values}))["id"]


async def get(run, entity_type: str, row_id: str, *columns: str) -> dict:
    out = await run("dynamics365.get_entity", {"entityType": entity_type, "entityId": row_id, "fieldNames": list(columns)})
    return out["record"]


# ---- leads ----------------------------------------------------------------------------------------

async def test_qualify_lead_creates_linked_rows_and_qualifies(run):
    name = unique()
    lead_id = await create(run, "leads", {"subject": f"Deal {name}", "firstname": "Grace", "lastname": name,
                                          "companyname": f"Co {name}", "estimatedamount": 1200})
    out = await run("dynamics365.qualify_lead", {"leadId": lead_id, "opportunityCurrencyId": USD_ID})
    assert out["leadId"] == lead_id and len(out["created"]) == 3
    account = await get(run, "accounts", out["accountId"], "name", "_originatingleadid_value")
    assert account["name"] == f"Co {name}" and account["_originatingleadid_value"] == lead_id
    contact = await get(run, "contacts", out["contactId"], "fullname", "_parentcustomerid_value")
    assert contact["fullname"] == f"Grace {name}" and contact["_parentcustomerid_value"] == out["accountId"]
    opportunity = await get(run, "opportunities", out["opportunityId"], "name", "_customerid_value", "estimatedvalue")
    assert opportunity["_customerid_value"] == out["accountId"] and opportunity["estimatedvalue"] == 1200
    lead = await get(run, "leads", lead_id, "statecode", "statuscode", "_qualifyingopportunityid_value")
    assert (lead["statecode"], lead["statuscode"]) == (1, 3)
    assert lead["_qualifyingopportunityid_value"] == out["opportunityId"]
    with pytest.raises(DataverseError) as again:
        await run("dynamics365.qualify_lead", {"leadId": lead_id})
    assert again.value.status == 400


async def test_qualify_lead_with_an_existing_contact_as_customer(run):
    contact_id = await create(run, "contacts", {"lastname": unique()})
    lead_id = await create(run, "leads", {"subject": unique(), "lastname": unique()})
    out = await run("dynamics365.qualify_lead", {
        "leadId": lead_id, "createAccount": False, "createContact": False,
        "opportunityCustomerId": contact_id, "opportunityCustomerType": "contacts"})
    assert (out["accountId"], out["contactId"]) == (None, None)
    opportunity = await get(run, "opportunities", out["opportunityId"], "_customerid_value")
    assert opportunity["_customerid_value"] == contact_id


async def test_disqualify_lead(run):
    lead_id = await create(run, "leads", {"lastname": unique()})
    out = await run("dynamics365.disqualify_lead", {"leadId": lead_id, "status": 6})
    assert out == {"leadId": lead_id, "statecode": 2, "statuscode": 6}
    lead = await get(run, "leads", lead_id, "statecode", "statuscode")
    assert (lead["statecode"], lead["statuscode"]) == (2, 6)


# ---- opportunities --------------------------------------------------------------------------------

async def test_win_opportunity(run):
    opportunity_id = await create(run, "opportunities", {"name": unique(), "estimatedvalue": 700})
    out = await run("dynamics365.win_opportunity", {"opportunityId": opportunity_id, "actualRevenue": 750,
                                                    "closeDate": "2025-06-30", "description": "Signed"})
    assert out == {"opportunityId": opportunity_id, "state": "Won", "statecode": 1, "statuscode": 3,
                   "actualRevenue": 750, "closeDate": "2025-06-30"}
    closes = await run("dynamics365.query_entities", {
        "entityType": "opportunitycloses", "filterExpression": f"_opportunityid_value eq {opportunity_id}"})
    assert [row["description"] for row in closes["value"]] == ["Signed"]


async def test_lose_opportunity(run):
    opportunity_id = await create(run, "opportunities", {"name": unique()})
    out = await run("dynamics365.lose_opportunity", {"opportunityId": opportunity_id, "status": 5})
    assert (out["state"], out["statecode"], out["statuscode"]) == ("Lost", 2, 5)
    with pytest.raises(DataverseError):
        await run("dynamics365.win_opportunity", {"opportunityId": opportunity_id})


# ---- cases ------------------------------------------------------------------------------------------

async def test_resolve_case(run):
    case_id = await create(run, "incidents", {"title": unique()})
    out = await run("dynamics365.resolve_case", {"caseId": case_id, "subject": "Rebooted", "timeSpent": 15})
    assert out == {"caseId": case_id, "state": "Resolved", "statecode": 1, "statuscode": 5}
    resolutions = await run("dynamics365.query_entities", {
        "entityType": "incidentresolutions", "filterExpression": f"_incidentid_value eq {case_id}"})
    assert [(r["subject"], r["timespent"]) for r in resolutions["value"]] == [("Rebooted", 15)]


async def test_cancel_case(run):
    case_id = await create(run, "incidents", {"title": unique()})
    out = await run("dynamics365.cancel_case", {"caseId": case_id})
    assert (out["state"], out["statecode"], out["statuscode"]) == ("Cancelled", 2, 6)


# ---- queues -----------------------------------------------------------------------------------------

async def test_add_to_queue_and_pick(run):
    queue_id = await create(run, "queues", {"name": unique()})
    case_id = await create(run, "incidents", {"title": unique()})
    added = await run("dynamics365.add_to_queue", {"queueId": queue_id, "targetTable": "incidents", "targetId": case_id})
    item = await get(run, "queueitems", added["queueItemId"], "_queueid_value", "_objectid_value")
    assert (item["_queueid_value"], item["_objectid_value"]) == (queue_id, case_id)
    picked = await run("dynamics365.pick_from_queue", {"queueItemId": added["queueItemId"]})
    assert picked == {"queueItemId": added["queueItemId"], "workerId": defaults.APP_USER_ID, "removed": False}
    item = await get(run, "queueitems", added["queueItemId"], "_workerid_value", "statecode")
    assert (item["_workerid_value"], item["statecode"]) == (defaults.APP_USER_ID, 0)
    await run("dynamics365.pick_from_queue", {"queueItemId": added["queueItemId"], "workerId": defaults.USER_ID,
                                              "removeQueueItem": True})
    item = await get(run, "queueitems", added["queueItemId"], "_workerid_value", "statecode")
    assert (item["_workerid_value"], item["statecode"]) == (defaults.USER_ID, 1)


async def test_add_a_task_to_a_queue_by_logical_name(run):
    queue_id = await create(run, "queues", {"name": unique()})
    task_id = await create(run, "tasks", {"subject": unique()})
    added = await run("dynamics365.add_to_queue", {"queueId": queue_id, "targetTable": "task", "targetId": task_id})
    item = await get(run, "queueitems", added["queueItemId"], "objecttypecode")
    assert item["objecttypecode"] == "task"


# ---- activities -------------------------------------------------------------------------------------

async def test_create_a_task_regarding_an_account_and_complete_it(run):
    account_id = await create(run, "accounts", {"name": unique()})
    out = await run("dynamics365.create_activity", {
        "activityType": "task", "subject": "Call back", "regarding": {"table": "accounts", "id": account_id},
        "due": "2025-07-01T12:00:00+02:00", "priority": 2})
    task = await get(run, "tasks", out["activityId"], "subject", "_regardingobjectid_value", "scheduledend", "prioritycode")
    assert task["_regardingobjectid_value"] == account_id
    assert (task["scheduledend"], task["prioritycode"]) == ("2025-07-01T10:00:00Z", 2)
    done = await run("dynamics365.complete_activity", {"activityType": "task", "activityId": out["activityId"]})
    assert (done["statecode"], done["statuscode"]) == (1, 5)
    assert (await get(run, "tasks", out["activityId"], "statecode"))["statecode"] == 1


async def test_create_an_email_with_parties(run, api):
    contact_id = await create(run, "contacts", {"lastname": unique()})
    out = await run("dynamics365.create_activity", {
        "activityType": "email", "subject": "Quote", "description": "Attached.",
        "parties": [{"role": "from", "table": "systemusers", "id": defaults.USER_ID},
                    {"role": "to", "table": "contacts", "id": contact_id},
                    {"role": "cc", "address": "someone@example.test"}]})
    response = await api.get(f"emails({out['activityId']})", params={"$expand": "email_activity_parties"})
    parties = response.json()["email_activity_parties"]
    assert sorted((p["participationtypemask"], p["_partyid_value"], p["addressused"]) for p in parties) == [
        (1, defaults.USER_ID, None), (2, contact_id, None), (3, None, "someone@example.test")]
    done = await run("dynamics365.complete_activity", {"activityType": "email", "activityId": out["activityId"]})
    assert done["statuscode"] == 2


async def test_a_phone_call_with_other_columns(run):
    out = await run("dynamics365.create_activity", {
        "activityType": "phonecall", "subject": "Intro", "dynamicValues": {"phonenumber": "+1 555 0100"}})
    call = await get(run, "phonecalls", out["activityId"], "phonenumber")
    assert call["phonenumber"] == "+1 555 0100"


@pytest.mark.parametrize(("key", "inputs", "pointer"), [
    ("dynamics365.create_activity", {"activityType": "task", "subject": "x",
                                     "parties": [{"role": "to", "address": "a@b.test"}]}, "/parties/0/role"),
    ("dynamics365.create_activity", {"activityType": "email", "subject": "x",
                                     "parties": [{"role": "to", "table": "contacts"}]}, "/parties/0"),
    ("dynamics365.qualify_lead", {"leadId": "not-a-guid"}, "/leadId"),
    ("dynamics365.lose_opportunity", {"opportunityId": "7eb682f1-ca75-e511-80d4-00155d2a68d1", "status": 3}, "/status"),
    ("dynamics365.resolve_case", {"caseId": "7eb682f1-ca75-e511-80d4-00155d2a68d1", "status": 6}, "/status"),
    ("dynamics365.add_to_queue", {"queueId": "7eb682f1-ca75-e511-80d4-00155d2a68d1", "targetTable": "incidents"}, "/targetId"),
])
async def test_bad_inputs_fail_before_any_request(offline_connection, key, inputs, pointer):
    with pytest.raises(InputValidationError) as caught:
        await invoke(key, inputs, offline_connection)
    assert caught.value.errors[0].pointer == pointer
    assert offline_connection.sent == []


async def test_an_activity_can_be_created_as_another_user(run, api):
    users = (await api.get("systemusers", params={"$select": "systemuserid,azureactivedirectoryobjectid"})).json()["value"]
    me = (await api.get("WhoAmI")).json()["UserId"]
    other = next((u for u in users if u["systemuserid"] != me and u.get("azureactivedirectoryobjectid")), None)
    if other is None:
        pytest.skip("the seed has no second user with an Entra object id")
    out = await run("dynamics365.create_activity", {
        "subject": "Created as someone else", "impersonateUserId": other["azureactivedirectoryobjectid"]})
    task = await get(run, "tasks", out["id"], "_createdby_value")
    assert task["_createdby_value"] == other["systemuserid"]
