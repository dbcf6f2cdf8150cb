"""Perform Bound/Unbound Action and Call Function against the emulator's real messages."""

from __future__ import annotations

import uuid

import pytest

from d365_components.emulator import defaults
from d365_components.emulator.messages import crm  # noqa: F401  (registers the CRM messages)
from d365_components.errors import DataverseError, InputValidationError, RecordNotFoundError
from d365_components.runtime import invoke


def unique() -> str:
    return uuid.uuid4().hex[:8]


async def test_unbound_function_who_am_i(run):
    out = await run("dynamics365.call_function", {"functionName": "WhoAmI"})
    assert out["name"] == "WhoAmI" and out["result"]["UserId"] == defaults.APP_USER_ID


@pytest.mark.parametrize("access", ["Microsoft.Dynamics.CRM.EndpointAccessType'Default'", "Default"])
async def test_function_with_an_enum_parameter(run, access):
    out = await run("dynamics365.call_function", {"functionName": "RetrieveCurrentOrganization",
                                                  "parameters": {"AccessType": access}})
    assert out["result"]["Detail"]["OrganizationId"] == defaults.ORGANIZATION_ID


async def test_function_with_an_entity_parameter(run):
    account = await run("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": {"name": unique()}})
    out = await run("dynamics365.call_function", {"functionName": "CalculateRollupField", "parameters": {
        "Target": {"@odata.id": f"accounts({account['id']})"}, "FieldName": "opendeals"}})
    assert out["result"]["accountid"] == account["id"] and out["result"]["opendeals"] == 0


async def test_unbound_action_wins_an_opportunity(run):
    created = await run("dynamics365.create_entity", {"entityType": "opportunities", "dynamicValues": {"name": unique()}})
    out = await run("dynamics365.perform_unbound_action", {"actionName": "WinOpportunity", "parameters": {
        "Status": 3, "OpportunityClose": {"subject": "Won", "opportunityid@odata.bind": f"/opportunities({created['id']})"}}})
    assert out == {"name": "WinOpportunity", "result": None}
    row = await run("dynamics365.get_entity", {"entityType": "opportunities", "entityId": created["id"]})
    assert row["record"]["statecode"] == 1


async def test_bound_action_on_a_row_and_on_a_table(run):
    lead = await run("dynamics365.create_entity", {"entityType": "leads", "dynamicValues": {"lastname": unique()}})
    out = await run("dynamics365.perform_bound_action", {
        "entityType": "lead", "entityId": lead["id"], "actionName": "QualifyLead",
        "parameters": {"CreateAccount": False, "CreateContact": True, "CreateOpportunity": False, "Status": 3}})
    assert [item["@odata.type"] for item in out["result"]["value"]] == ["#Microsoft.Dynamics.CRM.contact"]
    name = unique()
    bulk = await run("dynamics365.perform_bound_action", {
        "entityType": "accounts", "actionName": "CreateMultiple",
        "parameters": {"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": name}]}})
    assert len(bulk["result"]["Ids"]) == 1


async def test_dataverse_errors_come_back_typed(connection):
    with pytest.raises(RecordNotFoundError):
        await invoke("dynamics365.perform_unbound_action", {"actionName": "NoSuchAction"}, connection)
    with pytest.raises(DataverseError) as caught:
        await invoke("dynamics365.perform_unbound_action", {"actionName": "WinOpportunity", "parameters": {"Status": 3}}, connection)
    assert caught.value.status == 400


@pytest.mark.parametrize(("key", "inputs", "pointer"), [
    ("dynamics365.call_function", {"functionName": "Who Am I"}, "/functionName"),
    ("dynamics365.call_function", {"functionName": "x');DROP"}, "/functionName"),
    ("dynamics365.perform_unbound_action", {"actionName": "../accounts"}, "/actionName"),
    ("dynamics365.perform_bound_action", {"entityType": "leads", "entityId": "nope", "actionName": "QualifyLead"}, "/entityId"),
    ("dynamics365.call_function", {"functionName": "WhoAmI", "entityId": "7eb682f1-ca75-e511-80d4-00155d2a68d1"}, "/entityId"),
])
async def test_names_are_checked_before_any_request(offline_connection, key, inputs, pointer):
    with pytest.raises(InputValidationError) as caught:
        await invoke(key, inputs, offline_connection)
    assert caught.value.errors[0].pointer == pointer
    assert offline_connection.sent == []


async def test_functions_can_run_as_another_user(run) -> None:
    from d365_components.emulator import defaults

    me = await run("dynamics365.call_function", {"functionName": "WhoAmI"})
    assert me["result"]["UserId"] == defaults.APP_USER_ID
    them = await run("dynamics365.call_function", {"functionName": "WhoAmI", "impersonateUserId": defaults.USER_OBJECT_ID})
    assert them["result"]["UserId"] == defaults.USER_ID
