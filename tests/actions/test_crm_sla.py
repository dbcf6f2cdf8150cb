"""SLAs against the emulator: KPI instances for a new case, status over time, paused on hold, succeeded."""

from __future__ import annotations

import uuid


def created_id(response) -> str:
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")




async def make_sla(api, *, default: bool = False) -> str:
    sla_id = created_id(await api.post("slas", json={"name": f"Gold {uuid.uuid4().hex[:6]}", "isdefault": default,
                                                     "allowpauseresume": True, "objecttypecode": 112}))
    assert (await api.patch(f"slas({sla_id})", json={"statecode": 1, "statuscode": 2})).status_code == 204
    for sequence, (name, warn, fail, related) in enumerate([("First response", 600, 1200, "firstresponsebykpiid"),
                                                            ("Resolve by", 0, 600, "resolvebykpiid"),
                                                            ("Call back", 0, 0, None)], start=1):
        created_id(await api.post("slaitems", json={"name": name, "warnafter": warn, "failureafter": fail, "sequencenumber": sequence,
                                                    "relatedfield": related, "slaid@odata.bind": f"/slas({sla_id})"}))
    return sla_id


async def test_a_case_under_an_sla_gets_kpis_that_move(api, run):
    sla_id = await make_sla(api)
    case_id = created_id(await api.post("incidents", json={"title": "Printer jam", "slaid@odata.bind": f"/slas({sla_id})"}))
    kpis = (await api.get(f"slakpiinstances?$filter=_regarding_value eq {case_id}&$orderby=name")).json()["value"]
    assert [(k["name"], k["status"]) for k in kpis] == [("Call back", 1), ("First response", 0), ("Resolve by", 2)]
    case = (await api.get(f"incidents({case_id})?$select=_resolvebykpiid_value,_slainvokedid_value")).json()
    assert case["_slainvokedid_value"] == sla_id
    assert case["_resolvebykpiid_value"] == next(k["slakpiinstanceid"] for k in kpis if k["name"] == "Resolve by")

    out = await run("dynamics365.sla_status", {"caseId": case_id})
    assert out["counts"] == {"Noncompliant": 1, "In progress": 1, "Warning": 1}
    first = next(k for k in out["kpis"] if k["name"] == "First response")
    assert first["caseTitle"] == "Printer jam" and first["warningTime"] < first["failureTime"]

    assert (await api.patch(f"incidents({case_id})", json={"statuscode": 2})).status_code == 204     # On Hold
    paused = await run("dynamics365.sla_status", {"caseId": case_id, "statuses": ["Paused"]})
    assert {k["name"] for k in paused["kpis"]} == {"First response", "Resolve by"} and paused["kpis"][0]["pausedOn"]
    assert (await api.patch(f"incidents({case_id})", json={"statuscode": 1})).status_code == 204
    resumed = await run("dynamics365.sla_status", {"caseId": case_id})
    assert resumed["counts"] == {"Noncompliant": 1, "In progress": 1, "Warning": 1}

    await run("dynamics365.resolve_case", {"caseId": case_id, "subject": "Fixed"})
    done = await run("dynamics365.sla_status", {"caseId": case_id})
    assert done["counts"] == {"Noncompliant": 1, "Succeeded": 2}
    every_open = await run("dynamics365.sla_status", {})
    assert case_id not in {k["caseId"] for k in every_open["kpis"]}


async def test_the_default_sla_applies_when_a_case_names_none(api, run):
    sla_id = await make_sla(api, default=True)
    try:
        case_id = created_id(await api.post("incidents", json={"title": "No SLA named"}))
        out = await run("dynamics365.sla_status", {})
        assert {k["name"] for k in out["kpis"] if k["caseId"] == case_id} == {"First response", "Resolve by", "Call back"}
    finally:
        assert (await api.patch(f"slas({sla_id})", json={"isdefault": False})).status_code == 204
