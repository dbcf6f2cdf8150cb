"""Pipeline Report against its own fresh emulator: the aggregate path and the streaming path agree."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from d365_components.definitions import Connection
from d365_components.emulator import Emulator, defaults
from d365_components.errors import DataverseError
from d365_components.runtime import invoke, open_connection
from tests.actions.conftest import CONNECTION_KEY, check_output

KEY = "dynamics365.pipeline_report"
APP, USER = defaults.APP_USER_ID, defaults.USER_ID


@pytest.fixture(scope="module")
def fresh() -> Iterator[Emulator]:
    """An org of its own, so the report sees only this module's opportunities."""
    with Emulator(seed="fresh") as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def conn(fresh: Emulator) -> AsyncIterator[Connection]:
    connection = open_connection({"key": CONNECTION_KEY, "inputs": fresh.connection_inputs()})
    client = connection.open_client()
    flow = (await client.get_json("workflows", params={"$filter": "uniquename eq 'opportunitysalesprocess'"}))["value"][0]
    stages = (await client.get_json("processstages", params={"$filter": f"_processid_value eq {flow['workflowid']}"}))["value"]
    propose = next(s["processstageid"] for s in stages if s["stagename"] == "Propose")
    rows: list[tuple[str, dict[str, Any]]] = [
        (APP, {"name": "A", "estimatedvalue": 1000, "closeprobability": 50, "estimatedclosedate": "2025-02-10", "stepname": "1-Qualify"}),
        (APP, {"name": "B", "estimatedvalue": 3000, "closeprobability": 20, "estimatedclosedate": "2025-03-31", "stepname": "1-Qualify"}),
        (APP, {"name": "C", "estimatedvalue": 500, "closeprobability": 100, "estimatedclosedate": "2025-04-01", "salesstage": 1}),
        (USER, {"name": "D", "estimatedvalue": 2000, "closeprobability": 70, "estimatedclosedate": "2025-05-15", "stepname": "2-Develop"}),
        (USER, {"name": "E", "estimatedvalue": 800, "closeprobability": 10}),
        (USER, {"name": "F", "estimatedvalue": 4000, "closeprobability": 40, "estimatedclosedate": "2025-06-30", "stepname": "ignored"}),
    ]
    ids = {}
    for owner, values in rows:
        ids[values["name"]] = (await client.create("opportunities", {**values, "ownerid@odata.bind": f"/systemusers({owner})"}))["id"]
    await client.create("opportunitysalesprocesses", {     # F's flow is at Propose: the flow stage wins over stepname
        "name": "F flow", "opportunityid@odata.bind": f"/opportunities({ids['F']})",
        "processid@odata.bind": f"/workflows({flow['workflowid']})", "activestageid@odata.bind": f"/processstages({propose})"})
    won = (await client.create("opportunities", {"name": "won", "estimatedvalue": 99999, "closeprobability": 100}))["id"]
    await client.execute("WinOpportunity", {"Status": 3, "OpportunityClose": {
        "subject": "won", "opportunityid@odata.bind": f"/opportunities({won})"}})
    yield connection
    await connection.aclose()


async def report(conn: Connection, inputs: dict[str, Any]) -> Any:
    return check_output(KEY, await invoke(KEY, inputs, conn))


def brief(out: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {(r["ownerId"], r["stage"], r["closePeriod"], r["count"], r["totalValue"], r["weightedValue"]) for r in out["rows"]}


async def test_report_by_quarter_aggregates(conn: Connection) -> None:
    out = await report(conn, {})
    assert out["method"] == "aggregate" and out["closePeriod"] == "quarter"
    assert brief(out) == {
        (APP, "1-Qualify", "2025-Q1", 2, 4000.0, 1100.0),
        (APP, "Develop", "2025-Q2", 1, 500.0, 500.0),
        (USER, "2-Develop", "2025-Q2", 1, 2000.0, 1400.0),
        (USER, "Propose", "2025-Q2", 1, 4000.0, 1600.0),
        (USER, "(no stage)", "(no close date)", 1, 800.0, 80.0),
    }
    assert out["totals"] == {"count": 6, "totalValue": 11300.0, "weightedValue": 4680.0}
    assert {r["ownerName"] for r in out["rows"]} == {"# emulator-app", defaults.USER_NAME}


@pytest.mark.parametrize("inputs", [
    {}, {"closePeriod": "month"}, {"owners": [USER]}, {"minProbability": 40},
    {"closeFrom": "2025-03-31", "closeTo": "2025-05-15"},
])
async def test_streaming_gives_the_same_report(conn: Connection, inputs: dict[str, Any]) -> None:
    aggregated = await report(conn, inputs)
    streamed = await report(conn, {**inputs, "aggregateLimit": 2, "pageSize": 2})
    assert (aggregated["method"], streamed["method"]) == ("aggregate", "stream")
    assert aggregated["rows"] == streamed["rows"] and aggregated["totals"] == streamed["totals"]


async def test_filters(conn: Connection) -> None:
    out = await report(conn, {"closeFrom": "2025-03-31", "closeTo": "2025-05-15", "minProbability": 50, "closePeriod": "month"})
    assert brief(out) == {(APP, "Develop", "2025-04", 1, 500.0, 500.0), (USER, "2-Develop", "2025-05", 1, 2000.0, 1400.0)}
    extra = await report(conn, {"odataFilter": "estimatedvalue gt 1500"})
    assert extra["method"] == "stream" and extra["totals"] == {"count": 3, "totalValue": 9000.0, "weightedValue": 3600.0}


async def test_bad_extra_filter_is_dataverse_error(conn: Connection) -> None:
    with pytest.raises(DataverseError):
        await report(conn, {"odataFilter": "nosuchcolumn eq 1"})


async def test_the_emulator_refuses_an_aggregate_over_the_limit(conn: Connection) -> None:
    client = conn.open_client()
    fetch = ('<fetch aggregate="true" aggregatelimit="3"><entity name="opportunity">'
             '<attribute name="opportunityid" alias="n" aggregate="count"/></entity></fetch>')
    with pytest.raises(DataverseError) as refused:
        async for _ in client.fetchxml_pages("opportunities", fetch):
            pass
    assert refused.value.code.lower() == "0x8004e023" and "AggregateQueryRecordLimit exceeded" in str(refused.value)
