"""Routing, queue items and rollups against the emulator: ApplyRoutingRule, Release/Remove, CalculateRollupField."""

from __future__ import annotations

import uuid

from d365_components.runtime import fetch_choices


def created_id(response) -> str:
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


async def test_apply_routing_rule_routes_by_the_first_matching_item(api, run):
    tag = uuid.uuid4().hex[:6]
    urgent = created_id(await api.post("queues", json={"name": f"Urgent {tag}"}))
    general = created_id(await api.post("queues", json={"name": f"General {tag}"}))
    rule = created_id(await api.post("routingrules", json={"name": f"Rules {tag}"}))
    high = ('<fetch><entity name="incident"><filter><condition attribute="prioritycode" operator="eq" value="1"/>'
            '</filter></entity></fetch>')
    created_id(await api.post("routingruleitems", json={"name": "High priority", "sequencenumber": 1, "conditionxml": high,
                                                        "routingruleid@odata.bind": f"/routingrules({rule})",
                                                        "routedqueueid@odata.bind": f"/queues({urgent})"}))
    created_id(await api.post("routingruleitems", json={"name": "Everything else", "sequencenumber": 2,
                                                        "routingruleid@odata.bind": f"/routingrules({rule})",
                                                        "routedqueueid@odata.bind": f"/queues({general})"}))
    assert (await api.patch(f"routingrules({rule})", json={"statecode": 1, "statuscode": 2})).status_code == 204

    hot = created_id(await api.post("incidents", json={"title": f"Down {tag}", "prioritycode": 1}))
    routed = await api.post("ApplyRoutingRule", json={"Target": {"@odata.type": "Microsoft.Dynamics.CRM.incident", "incidentid": hot}})
    assert routed.status_code == 204, routed.text
    items = (await api.get(f"queueitems?$filter=_objectid_value eq {hot} and statecode eq 0")).json()["value"]
    assert [i["_queueid_value"] for i in items] == [urgent]

    cold = created_id(await api.post("incidents", json={"title": f"Question {tag}", "prioritycode": 3}))
    out = await run("dynamics365.apply_routing_rule", {"caseId": cold})
    assert out["queueId"] == general and out["queueName"] == f"General {tag}" and out["queueItemId"]

    picked = await run("dynamics365.pick_from_queue", {"queueItemId": out["queueItemId"]})
    assert picked["workerId"]
    await run("dynamics365.release_queue_item", {"queueItemId": out["queueItemId"]})
    item = (await api.get(f"queueitems({out['queueItemId']})?$select=_workerid_value,statecode")).json()
    assert item["_workerid_value"] is None and item["statecode"] == 0
    await run("dynamics365.remove_queue_item", {"queueItemId": out["queueItemId"]})
    item = (await api.get(f"queueitems({out['queueItemId']})?$select=statecode")).json()
    assert item["statecode"] == 1
    assert (await api.patch(f"routingrules({rule})", json={"statecode": 0, "statuscode": 1})).status_code == 204


async def test_apply_routing_rule_without_an_active_rule_set(api):
    case = created_id(await api.post("incidents", json={"title": "Nowhere"}))
    refused = await api.post("ApplyRoutingRule", json={"Target": {"@odata.type": "Microsoft.Dynamics.CRM.incident", "incidentid": case}})
    assert refused.status_code == 400 and "routing rule" in refused.json()["error"]["message"]


async def test_recalculate_rollup_with_its_dropdown(api, run, connection):
    choices = await fetch_choices("dynamics365.rollup_columns", {"table": "accounts"}, connection)
    assert {c["value"] for c in choices} == {"opendeals", "openrevenue"}
    account = created_id(await api.post("accounts", json={"name": uuid.uuid4().hex[:8]}))
    for value in (100, 250):
        created_id(await api.post("opportunities", json={"name": "deal", "estimatedvalue": value,
                                                         "parentaccountid@odata.bind": f"/accounts({account})"}))
    out = await run("dynamics365.recalculate_rollup", {"entityType": "accounts", "entityId": account, "column": "openrevenue"})
    assert out["value"] == 350.0 and out["state"] == 1 and out["calculatedOn"]
