"""Business process flows against the emulator: list, read, move (with required fields), finish, abandon."""

from __future__ import annotations

import uuid

import pytest

from d365_components.errors import D365Error


async def new_opportunity(run, **values) -> str:
    out = await run("dynamics365.create_entity", {"entityType": "opportunities", "dynamicValues": {"name": uuid.uuid4().hex[:8], **values}})
    return out["id"]


async def test_list_flows_of_a_table(run):
    out = await run("dynamics365.list_process_flows", {"entityType": "opportunities"})
    (flow,) = out["flows"]
    assert (flow["name"], flow["uniqueName"], flow["instanceEntitySet"]) == (
        "Opportunity Sales Process", "opportunitysalesprocess", "opportunitysalesprocesses")
    assert [s["name"] for s in flow["stages"]] == ["Qualify", "Develop", "Propose", "Close"]
    develop = flow["stages"][1]
    assert {f["attribute"] for f in develop["fields"] if f["required"]} == {"customerneed", "proposedsolution"}
    leads = await run("dynamics365.list_process_flows", {"entityType": "lead"})
    assert [f["uniqueName"] for f in leads["flows"]] == ["leadtoopportunitysalesprocess"]


async def test_a_record_without_an_instance_is_not_started(run):
    opportunity = await new_opportunity(run)
    out = await run("dynamics365.get_process_flow", {"entityType": "opportunities", "entityId": opportunity})
    assert out["status"] == "Not started" and out["instanceId"] is None and out["activeStage"] is None
    assert out["processName"] == "Opportunity Sales Process" and len(out["stages"]) == 4


async def test_move_through_the_stages_with_required_fields(run, api):
    opportunity = await new_opportunity(run)
    moved = await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity})
    assert moved["status"] == "Active" and moved["activeStage"]["name"] == "Develop"     # started at Qualify, then moved
    assert [h["name"] for h in moved["history"]] == ["Qualify", "Develop"]
    assert [s["passed"] for s in moved["stages"]] == [True, False, False, False]
    with pytest.raises(D365Error) as refused:
        await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity})
    assert "customerneed" in str(refused.value) and "proposedsolution" in str(refused.value)
    await api.patch(f"opportunities({opportunity})", json={"customerneed": "Faster invoicing", "proposedsolution": "Our suite"})
    to_close = await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity,
                                                            "direction": "stage", "stageName": "close"})
    assert to_close["activeStage"]["name"] == "Close"
    assert [h["name"] for h in to_close["history"]] == ["Qualify", "Develop", "Propose", "Close"]
    back = await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity, "direction": "previous"})
    assert back["activeStage"]["name"] == "Propose" and [h["name"] for h in back["history"]] == ["Qualify", "Develop", "Propose"]
    record = (await api.get(f"opportunities({opportunity})?$select=stageid,traversedpath,processid")).json()
    assert record["stageid"] == back["activeStage"]["stageId"] and record["processid"] == back["processId"]
    await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity})
    with pytest.raises(D365Error, match="finaldecisiondate"):
        await run("dynamics365.set_process_flow_status", {"entityType": "opportunities", "entityId": opportunity})
    await api.patch(f"opportunities({opportunity})", json={"finaldecisiondate": "2025-07-01"})
    done = await run("dynamics365.set_process_flow_status", {"entityType": "opportunities", "entityId": opportunity})
    assert done["status"] == "Finished"
    with pytest.raises(D365Error, match="Finished"):
        await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity, "direction": "previous"})


async def test_abandon_and_reactivate(run):
    opportunity = await new_opportunity(run)
    await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity, "direction": "stage",
                                                 "stageName": "Qualify"})
    abandoned = await run("dynamics365.set_process_flow_status", {"entityType": "opportunities", "entityId": opportunity,
                                                                  "flowStatus": "abandoned"})
    assert abandoned["status"] == "Aborted"
    active = await run("dynamics365.set_process_flow_status", {"entityType": "opportunities", "entityId": opportunity, "flowStatus": "active"})
    assert active["status"] == "Active" and active["activeStage"]["name"] == "Qualify"


async def test_unknown_stage_and_first_stage(run):
    opportunity = await new_opportunity(run)
    with pytest.raises(D365Error, match="no stage 'Negotiate'"):
        await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity, "direction": "stage",
                                                     "stageName": "Negotiate"})
    with pytest.raises(D365Error, match="first stage"):
        await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": opportunity, "direction": "previous"})


async def test_named_stage_needs_a_name(run, offline_connection):
    with pytest.raises(D365Error, match="stage"):
        await run("dynamics365.move_process_stage", {"entityType": "opportunities", "entityId": str(uuid.uuid4()), "direction": "stage"},
                  connection=offline_connection)


async def test_emulator_creates_an_instance_at_the_first_stage(api):
    flow = (await api.get("workflows?$filter=uniquename eq 'phonetocaseprocess'")).json()["value"][0]
    case = await api.post("incidents", json={"title": "Printer jam"})
    case_id = case.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    created = await api.post("phonetocaseprocesses", json={
        "incidentid@odata.bind": f"/incidents({case_id})", "processid@odata.bind": f"/workflows({flow['workflowid']})"})
    assert created.status_code == 204
    answer = (await api.get(f"RetrieveProcessInstances(EntityId=@p1,EntityLogicalName=@p2)?@p1={case_id}&@p2='incident'")).json()
    (instance,) = answer["Processes"]
    path = (await api.get(f"RetrieveActivePath(ProcessInstanceId=@p1)?@p1={instance['businessprocessflowinstanceid']}")).json()
    assert [s["stagename"] for s in path["value"]] == ["Identify", "Research", "Resolve"]
    assert instance["processstageid"] == path["value"][0]["processstageid"] == instance["traversedpath"]
    assert instance["name"] == "Phone to Case Process" and instance["statecode"] == 0


async def test_lead_to_opportunity_flow_checks_the_opportunity_stage_fields(run):
    lead = (await run("dynamics365.create_entity", {"entityType": "leads", "dynamicValues": {"lastname": uuid.uuid4().hex[:8]}}))["id"]
    moved = await run("dynamics365.move_process_stage", {"entityType": "leads", "entityId": lead})
    assert moved["processName"] == "Lead to Opportunity Sales Process" and moved["activeStage"]["table"] == "opportunity"
    with pytest.raises(D365Error, match="customerneed"):         # Develop's fields live on the (not yet created) opportunity
        await run("dynamics365.move_process_stage", {"entityType": "leads", "entityId": lead})
