"""Service level agreements on cases: a KPI instance per SLA item when a case is created, its status
moving with time, paused while the case is on hold, succeeded or canceled when the case closes.
`install(store)` adds the listener; importing this module registers the read hooks.

The SLA of a new case is `incident.slaid`, else the active default SLA (`sla.isdefault`, statecode
1). Each of its `slaitem` rows (by `sequencenumber`) becomes a `slakpiinstance` regarding the case:
warning and failure times are the case's creation plus the item's `warnafter` / `failureafter`
minutes; an item whose `relatedfield` names a case lookup (`resolvebykpiid`, `firstresponsebykpiid`)
gets that lookup set. Item conditions (`applicablewhenxml`, `successconditionsxml`) are not
evaluated: every item applies, and success is the case being resolved.

Status (slakpiinstance.status): 0 In Progress, 2 Nearing Noncompliance once the warning time has
passed, 1 Noncompliant once the failure time has passed (recomputed before each read of
slakpiinstances or incidents), 3 Paused while the case's statuscode is On Hold (2) unless the SLA
sets `allowpauseresume` false — resuming pushes both times back by the time paused and adds it to
`elapsedtime` (minutes) — 4 Succeeded when the case is resolved before failing, 5 Canceled when it
is canceled.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from d365_components.emulator import defaults
from d365_components.emulator.records.read_hooks import before_read
from d365_components.emulator.storage.store import Store, utc_now

IN_PROGRESS, NONCOMPLIANT, WARNING, PAUSED, SUCCEEDED, CANCELED = 0, 1, 2, 3, 4, 5
ON_HOLD = 2
_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _parse(text: str) -> datetime:
    return datetime.strptime(text[:19] + "Z", _FORMAT).replace(tzinfo=UTC)


def _plus(text: str, minutes: float) -> str:
    return (_parse(text) + timedelta(minutes=minutes)).strftime(_FORMAT)


def _update(store: Store, row_id: str, values: dict[str, Any]) -> None:
    store.update("slakpiinstance", row_id, values, user=defaults.APP_USER_ID)


def install(store: Store) -> None:
    """Listen for case writes (once per store)."""
    if "sla" in store.installed or "slakpiinstance" not in store.schema.tables:
        return

    def on_write(message: str, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if table != "incident" or after is None:
            return
        if message == "Create":
            _start(store, after)
        elif message == "Update" and before is not None and (before.get("statuscode"), before.get("statecode")) != (
                after.get("statuscode"), after.get("statecode")):
            _case_status_changed(store, before, after)

    store.listeners.append(on_write)
    store.installed.add("sla")


def _sla_of(store: Store, case: dict[str, Any]) -> dict[str, Any] | None:
    if case.get("slaid"):
        return store.get("sla", case["slaid"])
    found = store.select("sla", "t0.isdefault = 1 AND t0.statecode = 1", order="t0.createdon", limit=1)
    return found[0] if found else None


def _start(store: Store, case: dict[str, Any]) -> None:
    sla = _sla_of(store, case)
    if sla is None:
        return
    start = case.get("createdon") or utc_now()
    case_changes: dict[str, Any] = {"slainvokedid": sla["slaid"]}
    for item in store.select("slaitem", "t0.slaid = ?", [sla["slaid"]], order="t0.sequencenumber, t0.createdon"):
        warning, failure = _plus(start, item.get("warnafter") or 0), _plus(start, item.get("failureafter") or 0)
        kpi = store.insert("slakpiinstance", {
            "name": item.get("name"), "regarding": case["incidentid"], "regardingobjecttypecode": "incident",
            "regardingidname": case.get("title"), "status": IN_PROGRESS, "applicablefromvalue": start,
            "warningtime": warning, "computedwarningtime": warning, "failuretime": failure, "computedfailuretime": failure,
            "warningtimereached": 0, "elapsedtime": 0, "terminalstatereached": False,
            "ownerid": case.get("ownerid"), "owneridtype": case.get("owneridtype")}, user=defaults.APP_USER_ID)
        related = item.get("relatedfield")
        if related and related in store.schema.tables["incident"].columns:
            case_changes[related] = kpi["slakpiinstanceid"]
    store.update("incident", case["incidentid"], case_changes, user=defaults.APP_USER_ID)
    refresh(store)


def _open_kpis(store: Store, case_id: str) -> list[dict[str, Any]]:
    return store.select("slakpiinstance", "t0.regarding = ? AND t0.status IN (0, 1, 2, 3)", [case_id])


def _case_status_changed(store: Store, before: dict[str, Any], after: dict[str, Any]) -> None:
    now = utc_now()
    sla = _sla_of(store, after)
    pausable = sla is None or sla.get("allowpauseresume") is not False and sla.get("allowpauseresume") != 0
    for kpi in _open_kpis(store, after["incidentid"]):
        if after.get("statecode") == 1:
            done = NONCOMPLIANT if kpi["status"] == NONCOMPLIANT else SUCCEEDED
            _update(store, kpi["slakpiinstanceid"], {"status": done, "succeededon": now if done == SUCCEEDED else None,
                                                     "terminalstatereached": True, "terminalstatetime": now, "pausedon": None})
        elif after.get("statecode") == 2:
            _update(store, kpi["slakpiinstanceid"], {"status": CANCELED, "terminalstatereached": True, "terminalstatetime": now})
        elif after.get("statuscode") == ON_HOLD and pausable and kpi["status"] in (IN_PROGRESS, WARNING):
            _update(store, kpi["slakpiinstanceid"], {"status": PAUSED, "pausedon": now})
        elif kpi["status"] == PAUSED and after.get("statuscode") != ON_HOLD:
            _resume(store, kpi, now)
    refresh(store)


def _resume(store: Store, kpi: dict[str, Any], now: str) -> None:
    paused = (_parse(now) - _parse(kpi.get("pausedon") or now)).total_seconds() / 60
    _update(store, kpi["slakpiinstanceid"], {
        "status": IN_PROGRESS, "pausedon": None, "lastresumetime": now,
        "warningtime": _plus(kpi["warningtime"], paused), "failuretime": _plus(kpi["failuretime"], paused),
        "elapsedtime": int((kpi.get("elapsedtime") or 0) + paused)})


def refresh(store: Store) -> None:
    """Move running KPIs whose warning or failure time has passed."""
    if "slakpiinstance" not in store.schema.tables:
        return
    now = utc_now()
    for kpi in store.select("slakpiinstance", "t0.status IN (0, 2) AND (t0.failuretime <= ? OR t0.warningtime <= ?)", [now, now]):
        if kpi.get("failuretime") and kpi["failuretime"] <= now:
            _update(store, kpi["slakpiinstanceid"], {"status": NONCOMPLIANT, "warningtimereached": 1})
        elif kpi["status"] == IN_PROGRESS:
            _update(store, kpi["slakpiinstanceid"], {"status": WARNING, "warningtimereached": 1})


before_read("slakpiinstance", refresh)
before_read("incident", refresh)
