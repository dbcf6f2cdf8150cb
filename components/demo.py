"""``d365 demo``: a sales day against the embedded emulator, through the public runtime.

Everything goes through :func:`d365_components.runtime.invoke` with a real client-credentials
connection over HTTPS, exactly as a host would run the actions; nothing is faked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from d365_components.extras import require
from d365_components.runtime import invoke, open_connection

__all__ = ["run_demo"]

LEADS = 2_000
COMPANIES = ["Contoso", "Fabrikam", "Northwind", "Adventure Works", "Tailspin", "Litware", "Proseware"]


class _Day:
    """Runs the steps, times them, and keeps the summary."""

    def __init__(self, out: Console, connection: Any) -> None:
        self.out = out
        self.connection = connection
        self.summary: list[tuple[str, str, str, str]] = []

    async def step(
        self, title: str, key: str, inputs: dict[str, Any], describe: Callable[[Any], str], **kwargs: Any
    ) -> Any:
        self.out.rule(f"[bold]{title}[/bold]  [dim]{key}[/dim]")
        started = time.perf_counter()
        result = await invoke(key, inputs, self.connection, **kwargs)
        elapsed = f"{(time.perf_counter() - started) * 1000:,.0f} ms"
        self.summary.append((title, key, describe(result), elapsed))
        return result

    def table(self, title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
        table = Table(*columns, title=title, title_justify="left")
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        self.out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


async def _sales_day(out: Console, emulator: Any) -> None:
    connection = open_connection(
        {"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()}
    )
    assert connection is not None  # a config dict always opens a connection
    day = _Day(out, connection)
    try:
        me = await connection.test()
        out.print(f"Connected to [bold]{emulator.api_url}[/bold] as user {me.get('userId')}")

        accounts = []
        for name in COMPANIES[:3]:
            created = await day.step(
                f"Create account {name}",
                "dynamics365.create_entity",
                {"entityType": "accounts", "dynamicValues": {"name": name, "revenue": 1_250_000, "numberofemployees": 120}},
                lambda r: f"id {r.get('id')}",
            )
            accounts.append(created["id"])
        await day.step(
            "Create a contact linked to Contoso",
            "dynamics365.create_entity",
            {
                "entityType": "contacts",
                "fieldValues": [{"key": "firstname", "value": "Dana"}, {"key": "lastname", "value": "Reyes"}],
                "dynamicValues": {"parentcustomerid": {"table": "accounts", "id": accounts[0]}},
            },
            lambda r: f"id {r.get('id')}",
        )

        with Progress(TextColumn("bulk-loading leads"), BarColumn(), MofNCompleteColumn(), console=out, transient=True) as bar:
            task = bar.add_task("leads", total=LEADS)
            await day.step(
                f"Bulk-load {LEADS:,} leads",
                "dynamics365.bulk_create",
                {
                    "entityType": "leads",
                    "rows": [
                        {
                            "subject": f"Interested in {('licenses', 'services', 'support')[i % 3]}",
                            "firstname": f"Lead{i}",
                            "lastname": "Prospect",
                            "companyname": COMPANIES[i % len(COMPANIES)],
                            # distinct amounts (7919 is prime to LEADS), so "top leads" has no ties
                            "estimatedamount": 1000 + (i * 7919 % LEADS) * 5,
                        }
                        for i in range(LEADS)
                    ],
                    "chunkSize": 200,
                },
                lambda r: f"{r['written']:,} written, {r['failed']} failed",
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

        queried = await day.step(
            "Query leads from Contoso",
            "dynamics365.query_entities",
            {
                "entityType": "leads",
                "fieldNames": ["fullname", "companyname", "estimatedamount"],
                "filterExpression": "companyname eq 'Contoso' and estimatedamount ge 10000",
                "orderByFieldNames": ["estimatedamount desc", "fullname"],
                "recordsPerPage": 5,
                "includeCount": True,
            },
            lambda r: f"first {len(r['value'])} of {r['count']} matching rows",
        )
        day.table("Top Contoso leads", queried["value"], ["fullname", "companyname", "estimatedamount"])

        fetched = await day.step(
            "FetchXML: every lead, paged 500 at a time",
            "dynamics365.run_fetch_xml_query",
            {
                "entityType": "leads",
                "xmlQuery": "<fetch><entity name='lead'><attribute name='leadid'/><attribute name='companyname'/>"
                "<order attribute='leadid'/></entity></fetch>",
                "fetchAll": True,
                "recordsPerPage": 500,
            },
            lambda r: f"{len(r['value']):,} rows, {len({row['leadid'] for row in r['value']}):,} distinct",
        )
        by_company = await day.step(
            "FetchXML aggregate: pipeline per company",
            "dynamics365.run_fetch_xml_query",
            {
                "entityType": "leads",
                "xmlQuery": "<fetch aggregate='true'><entity name='lead'>"
                "<attribute name='companyname' groupby='true' alias='company'/>"
                "<attribute name='estimatedamount' aggregate='sum' alias='pipeline'/>"
                "<attribute name='leadid' aggregate='count' alias='leads'/>"
                "<order alias='pipeline' descending='true'/></entity></fetch>",
            },
            lambda r: f"{len(r['value'])} groups",
        )
        day.table("Pipeline by company", by_company["value"], ["company", "leads", "pipeline"])

        ids = [row["leadid"] for row in fetched["value"][:25]]
        await day.step(
            "Batch-update 25 leads to 'hot' in one change set",
            "dynamics365.run_batch_operations",
            {
                "actions": [
                    {"collection": "leads", "action": "update", "key": lead_id, "data": {"leadqualitycode": 1}}
                    for lead_id in ids
                ],
                "atomic": True,
            },
            lambda r: f"{r.get('succeeded')} succeeded, {r.get('failed')} failed",
        )

        await day.step(
            "Read the lead table's metadata",
            "dynamics365.get_entity_metadata",
            {"table": "lead"},
            lambda r: f"{r.get('DisplayName', {}).get('UserLocalizedLabel', {}).get('Label', 'lead')}, entity set {r.get('EntitySetName')}",
        )
        await day.step(
            "Options of the lead rating column",
            "dynamics365.get_choice_options",
            {"table": "lead", "column": "leadqualitycode"},
            lambda r: ", ".join(o["label"] for o in r.get("options", [])),
        )

        await day.step(
            "Raw request: WhoAmI",
            "dynamics365.raw_request",
            {"url": "/api/data/v9.2/WhoAmI", "method": "GET"},
            lambda r: f"status {r.get('status')}",
        )

        qualified = await day.step(
            "Qualify the first lead into an account, contact and opportunity",
            "dynamics365.qualify_lead",
            {"leadId": ids[0], "createAccount": True, "createContact": True, "createOpportunity": True},
            lambda r: ", ".join(sorted(k for k, v in r.items() if v and k.endswith("Id"))) or "qualified",
        )
        opportunity = qualified.get("opportunityId")
        if opportunity:
            moved = await day.step(
                "Move the opportunity's sales process to Develop",
                "dynamics365.move_process_stage",
                {"entityType": "opportunities", "entityId": opportunity},
                lambda r: " -> ".join(h["name"] for h in r["history"]),
            )
            out.print(f"{moved['processName']}: active stage {moved['activeStage']['name']}")
            await day.step(
                "Open 12 more opportunities across the pipeline",
                "dynamics365.bulk_create",
                {"entityType": "opportunities", "rows": [
                    {"name": f"{COMPANIES[i % len(COMPANIES)]} renewal {i + 1}", "estimatedvalue": 10_000 * (i % 4 + 1),
                     "closeprobability": (20, 40, 60, 80)[i % 4], "stepname": ("1-Qualify", "2-Develop", "3-Propose")[i % 3],
                     "estimatedclosedate": f"2025-{3 * (i % 4) + 1:02d}-15"} for i in range(12)]},
                lambda r: f"{r['written']} written",
            )
            pipeline = await day.step(
                "Weighted pipeline by owner, stage and quarter",
                "dynamics365.pipeline_report",
                {"closePeriod": "quarter"},
                lambda r: f"{r['totals']['count']} open, weighted {r['totals']['weightedValue']:,.0f} ({r['method']})",
            )
            day.table("Pipeline", pipeline["rows"], ["ownerName", "stage", "closePeriod", "count", "totalValue", "weightedValue"])
            await day.step(
                "Win the opportunity",
                "dynamics365.win_opportunity",
                {"opportunityId": opportunity, "subject": "Signed!", "actualRevenue": 48_000},
                lambda r: f"{r['state']}, actual revenue {r['actualRevenue']:,.0f}",
            )
        await _service_check(day)
    finally:
        await connection.aclose()

    summary = Table("step", "result", "time", title="What ran", title_justify="left")
    for title, _key, result, elapsed in day.summary:
        summary.add_row(title, result, elapsed)
    out.print(summary)
    out.print(f"[green]Done:[/green] {len(day.summary)} steps against the embedded emulator at {emulator.org_url}.")


async def _service_check(day: _Day) -> None:
    """A case under a four-hour SLA, and its KPIs."""
    sla = await day.step(
        "Create a four-hour SLA", "dynamics365.create_entity",
        {"entityType": "slas", "dynamicValues": {"name": "Standard support", "objecttypecode": 112, "allowpauseresume": True}},
        lambda r: "created",
    )
    await day.step(
        "Add its Resolve by KPI", "dynamics365.create_entity",
        {"entityType": "slaitems", "dynamicValues": {"name": "Resolve by", "warnafter": 180, "failureafter": 240,
                                                      "relatedfield": "resolvebykpiid", "slaid@odata.bind": f"/slas({sla['id']})"}},
        lambda r: "warn after 3 h, fail after 4 h",
    )
    case = await day.step(
        "Open a case under the SLA", "dynamics365.create_entity",
        {"entityType": "incidents", "dynamicValues": {"title": "Printer jam at reception", "slaid@odata.bind": f"/slas({sla['id']})"}},
        lambda r: "created",
    )
    status = await day.step(
        "Check the case's SLA", "dynamics365.sla_status", {"caseId": case["id"]},
        lambda r: ", ".join(f"{k['name']}: {k['status']}" for k in r["kpis"]) or "no KPIs",
    )
    day.table("SLA KPIs", status["kpis"], ["name", "status", "warningTime", "failureTime"])


def run_demo(out: Console | None = None) -> None:
    """Start the emulator, run the sales day, stop the emulator (needs the ``emulator`` extra)."""
    require("emulator", "d365 demo")
    # optional dependency (the `emulator` extra), checked just above
    from d365_components.emulator.server import Emulator

    out = out or Console()
    out.print("Starting the embedded Dataverse emulator...")
    with Emulator(seed="demo") as emulator:
        asyncio.run(_sales_day(out, emulator))
