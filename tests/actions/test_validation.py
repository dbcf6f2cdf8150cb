"""Bad input, as a form or a flow would send it, is refused before any request, on the field it is in:
wrong types, missing fields, numbers out of range, bad GUIDs, JSON text that is not an object, and
rules between fields (which mark every field they name)."""

from __future__ import annotations

import pytest

from d365_components.errors import InputValidationError
from d365_components.runtime import invoke

ID = "7eb682f1-ca75-e511-80d4-00155d2a68d1"

CASES = [
    ("get_entity", {"entityType": 5, "entityId": ID}, {"/entityType"}),
    ("get_entity", {"entityType": "accounts", "entityId": "abc"}, {"/entityId"}),
    ("get_entity", {"entityType": "accounts"}, {"/entityId", "/alternateKey"}),
    ("get_entity", {"entityType": "accounts", "alternateKey": "{not json"}, {"/alternateKey"}),
    ("delete_entity", {"entityType": "accounts", "entityId": ID, "alternateKey": {"accountnumber": "A"}},
     {"/entityId", "/alternateKey"}),
    ("create_entity", {"entityType": "accounts", "dynamicValues": "[1, 2]"}, {"/dynamicValues"}),
    ("create_entity", {"entityType": "accounts", "fieldValues": [{"value": 1}]}, {"/fieldValues/0/key"}),
    ("upsert_entity", {"entityType": "accounts", "entityId": ID, "upsertBehavior": "merge"}, {"/upsertBehavior"}),
    ("query_entities", {"entityType": "accounts", "recordsPerPage": "ten", "maxRows": 0},
     {"/recordsPerPage", "/maxRows"}),
    ("query_entities", {"entityType": "accounts", "fieldNames": ["name", "name,revenue"]}, {"/fieldNames/1"}),
    ("run_fetch_xml_query", {"xmlQuery": "<fetch><entity></fetch>"}, {"/xmlQuery"}),
    ("run_batch_operations", {"actions": [{"collection": "accounts", "action": "update"}]},
     {"/actions/0/key", "/actions/0/data"}),
    ("run_batch_operations", {"actions": [{"collection": "accounts", "action": "create", "data": {}}],
                              "atomic": True, "continueOnError": True}, {"/atomic", "/continueOnError"}),
    ("bulk_create", {"entityType": "accounts", "rows": [{}], "chunkSize": 5000}, {"/chunkSize"}),
    ("associate_entities", {"entityType": "accounts", "entityId": ID, "relationship": "x"},
     {"/relatedEntityId", "/relatedAlternateKey"}),
    ("qualify_lead", {"leadId": ID, "createOpportunity": False, "opportunityCustomerId": ID},
     {"/opportunityCustomerId", "/createOpportunity"}),
    ("win_opportunity", {"opportunityId": ID, "closeDate": "30/06/2025", "actualRevenue": -1},
     {"/closeDate", "/actualRevenue"}),
    ("create_activity", {"activityType": "task", "subject": "x", "parties": [{"role": "to", "address": "a@b.test"}]},
     {"/parties/0/role", "/activityType"}),
    ("complete_activity", {"activityId": "x"}, {"/activityId"}),
    ("pick_from_queue", {"queueItemId": ID, "workerId": "me"}, {"/workerId"}),
    ("raw_request", {"url": "WhoAmI", "data": {"a": 1}, "formData": [{"key": "a", "value": "1"}]},
     {"/data", "/formData"}),
    ("raw_request", {"url": "WhoAmI", "timeout": 0, "maxRetries": 11}, {"/timeout", "/maxRetries"}),
    ("call_function", {"functionName": "WhoAmI", "parameters": "{bad json"}, {"/parameters"}),
    ("call_function", {"functionName": "WhoAmI", "entityId": ID}, {"/entityId", "/entityType"}),
    ("get_entities_metadata", {"tables": ["account", "acc ount"]}, {"/tables/1"}),
    ("get_entity", {"entityType": "accounts", "entityId": ID, "impersonateUserId": "bob"}, {"/impersonateUserId"}),
]


@pytest.mark.parametrize(("action", "inputs", "pointers"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
async def test_bad_input_is_named_by_its_fields_before_any_request(offline_connection, action, inputs, pointers):
    with pytest.raises(InputValidationError) as caught:
        await invoke(f"dynamics365.{action}", inputs, offline_connection)
    assert {e.pointer for e in caught.value.errors} == pointers
    assert all(e.message for e in caught.value.errors)
    assert offline_connection.sent == []


async def test_a_rule_between_fields_names_both_in_its_message(offline_connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.run_batch_operations", {
            "actions": [{"collection": "accounts", "action": "create", "data": {}}], "atomic": True, "continueOnError": True,
        }, offline_connection)
    assert all("atomic" in e.message and "continueOnError" in e.message for e in caught.value.errors)
