"""BulkDelete over HTTPS: a system job (asyncoperation + bulkdeleteoperation) that advances to
Completed/Succeeded as it deletes exactly the rows its QueryExpression matches; bad queries are
refused before any job exists; DeleteMultiple keeps Dataverse's answer for non-elastic tables."""

from __future__ import annotations

import asyncio

import pytest

from d365_components.emulator import defaults


def query_set(entity: str, conditions: list[dict], operator: str = "And") -> list[dict]:
    return [{"@odata.type": "Microsoft.Dynamics.CRM.QueryExpression", "EntityName": entity,
             "ColumnSet": {"AllColumns": False, "Columns": []},
             "Criteria": {"FilterOperator": operator, "Conditions": conditions}}]


def bulk_delete_body(queries: list[dict]) -> dict:
    return {"JobName": "Bulk delete test", "SendEmailNotification": False, "ToRecipients": [], "CCRecipients": [],
            "RecurrencePattern": "", "StartDateTime": "2026-01-01T00:00:00Z", "QuerySet": queries}


async def wait_completed(api, job_id: str) -> dict:
    for _ in range(200):
        job = (await api.get(f"asyncoperations({job_id})")).json()
        if job["statecode"] == 3:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the job never completed")


async def test_bulk_delete_runs_a_job_that_deletes_the_matching_rows(api, store, unique):
    ids = [store.insert("account", {"name": f"{unique} {n}", "numberofemployees": n}, user=defaults.USER_ID)["accountid"]
           for n in (1, 2, 3)]
    body = bulk_delete_body(query_set("account", [
        {"AttributeName": "accountid", "Operator": "In",
         "Values": [{"Value": i.upper(), "Type": "System.Guid"} for i in ids[:2]]},
    ]))
    response = await api.post("BulkDelete", json=body)
    assert response.status_code == 200, response.text
    job_id = response.json()["JobId"]
    assert response.json()["@odata.context"].endswith("#Microsoft.Dynamics.CRM.BulkDeleteResponse")
    job = await wait_completed(api, job_id)
    assert (job["operationtype"], job["statuscode"], job["name"]) == (13, 30, "Bulk delete test")
    assert job["completedon"]
    operations = (await api.get(f"bulkdeleteoperations?$filter=_asyncoperationid_value eq {job_id}")).json()["value"]
    assert [(o["statecode"], o["statuscode"], o["successcount"], o["failurecount"]) for o in operations] == [(3, 30, 2, 0)]
    left = (await api.get(f"accounts?$select=name&$filter=startswith(name,'{unique}')")).json()["value"]
    assert [r["name"] for r in left] == [f"{unique} 3"]


async def test_bulk_delete_with_nested_filters_and_operators(api, store, unique):
    for n in (5, 50, 500):
        store.insert("account", {"name": f"{unique} {n}", "numberofemployees": n}, user=defaults.USER_ID)
    queries = query_set("account", [{"AttributeName": "name", "Operator": "BeginsWith", "Values": [{"Value": unique}]},
                                    {"AttributeName": "numberofemployees", "Operator": "GreaterThan",
                                     "Values": [{"Value": 10, "Type": "System.Int32"}]}])
    response = await api.post("BulkDelete", json=bulk_delete_body(queries))
    job = await wait_completed(api, response.json()["JobId"])
    assert job["statuscode"] == 30
    left = (await api.get(f"accounts?$select=name&$filter=startswith(name,'{unique}')")).json()["value"]
    assert [r["name"] for r in left] == [f"{unique} 5"]


@pytest.mark.parametrize(("queries", "code"), [
    (query_set("nosuchtable", []), "0x80040203"),
    (query_set("account", [{"AttributeName": "nosuchcolumn", "Operator": "Equal", "Values": [{"Value": 1}]}]), "0x80040203"),
    (query_set("account", [{"AttributeName": "name", "Operator": "Under", "Values": [{"Value": "x"}]}]), "0x80060888"),
    ([], "0x80040203"),
])
async def test_bad_bulk_delete_queries_are_refused_before_any_job(api, queries, code):
    before = len((await api.get("asyncoperations?$select=asyncoperationid")).json()["value"])
    response = await api.post("BulkDelete", json=bulk_delete_body(queries))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert len((await api.get("asyncoperations?$select=asyncoperationid")).json()["value"]) == before


async def test_recurring_jobs_and_unknown_parameters_are_refused(api, unique):
    body = bulk_delete_body(query_set("account", [{"AttributeName": "name", "Operator": "Equal", "Values": [{"Value": unique}]}]))
    response = await api.post("BulkDelete", json={**body, "RecurrencePattern": "FREQ=DAILY;INTERVAL=1"})
    assert response.status_code == 400
    response = await api.post("BulkDelete", json={**body, "Nonsense": 1})
    assert response.status_code == 400


async def test_delete_multiple_is_refused_for_standard_tables(api):
    response = await api.post("accounts/Microsoft.Dynamics.CRM.DeleteMultiple", json={"Targets": []})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80040315"
