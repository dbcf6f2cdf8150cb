"""SLA Status: the SLA KPI instances of a case, or of every open case, with their warning and failure times.

Dataverse creates a KPI instance (slakpiinstance) per SLA item when a case under an SLA is created
and moves its status with time: In progress, Warning (Nearing Noncompliance), Noncompliant, Paused
(case on hold), Succeeded (resolved in time), Canceled. This action reads them with one FetchXML
query joined to the case (so "every open case" is one query, page by page).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import FORMATTED, plain_id, record_id_field

__all__ = ["SlaStatus"]

#: slakpiinstance.status -> the label this action reports
STATUSES = {0: "In progress", 1: "Noncompliant", 2: "Warning", 3: "Paused", 4: "Succeeded", 5: "Canceled"}
_KPI_COLUMNS = ("slakpiinstanceid", "name", "status", "warningtime", "failuretime", "succeededon", "pausedon", "regarding")


def sla_fetchxml(case_id: str | None, statuses: Sequence[str]) -> str:
    conditions = ""
    if statuses:
        codes = "".join(f"<value>{code}</value>" for code, label in STATUSES.items() if label in statuses)
        conditions = f'<filter><condition attribute="status" operator="in">{codes}</condition></filter>'
    case_filter = (f'<condition attribute="incidentid" operator="eq" value={quoteattr(plain_id(case_id))}/>' if case_id
                   else '<condition attribute="statecode" operator="eq" value="0"/>')
    attributes = "".join(f'<attribute name="{c}"/>' for c in _KPI_COLUMNS)
    return (f'<fetch><entity name="slakpiinstance">{attributes}<order attribute="failuretime"/>{conditions}'
            '<link-entity name="incident" from="incidentid" to="regarding" alias="case">'
            '<attribute name="title"/><attribute name="ticketnumber"/><attribute name="statecode"/>'
            f"<filter>{case_filter}</filter></link-entity></entity></fetch>")


class SlaStatus(Action):
    """The SLA KPIs of a case (or of every open case): status, warning and failure times."""

    key = "dynamics365.sla_status"
    label = "SLA Status"
    group = "Service"

    class Inputs(InputModel):
        case_id: str | None = record_id_field("Case ID", "incidents", "The GUID of the case (incident) to check; every open case when empty.", None)
        statuses: list[Literal["In progress", "Noncompliant", "Warning", "Paused", "Succeeded", "Canceled"]] = InputField(
            [], title="Only statuses", description="Only KPIs in these statuses (e.g. Warning and Noncompliant for an escalation list); all when empty.",
            examples=[["Warning", "Noncompliant"]], widget="list", schema={"uniqueItems": True},
            enum_labels={label: label for label in STATUSES.values()},
        )

    output_schema = {
        "type": "object",
        "required": ["kpis", "counts"],
        "properties": {
            "kpis": {"type": "array", "description": "The KPI instances, soonest failure first.", "items": {
                "type": "object",
                "required": ["kpiInstanceId", "name", "caseId", "caseTitle", "ticketNumber", "status", "statusCode", "warningTime",
                             "failureTime", "succeededOn", "pausedOn"],
                "properties": {
                    "kpiInstanceId": {"type": "string", "description": "The KPI instance (slakpiinstance)."}, "name": {"type": ["string", "null"], "description": "The SLA item (KPI) name."},
                    "caseId": {"type": "string", "description": "The case."}, "caseTitle": {"type": ["string", "null"], "description": "The case title."},
                    "ticketNumber": {"type": ["string", "null"], "description": "The case number."},
                    "status": {"type": "string", "enum": list(STATUSES.values()) + ["Unknown"], "description": "The KPI status."},
                    "statusCode": {"type": ["integer", "null"], "description": "slakpiinstance.status."},
                    "warningTime": {"type": ["string", "null"], "description": "When it turns Warning."},
                    "failureTime": {"type": ["string", "null"], "description": "When it turns Noncompliant."},
                    "succeededOn": {"type": ["string", "null"], "description": "When it succeeded."},
                    "pausedOn": {"type": ["string", "null"], "description": "When it was paused (case on hold)."},
                }}},
            "counts": {"type": "object", "description": "KPIs per status.", "additionalProperties": {"type": "integer"}},
        },
    }
    example = {
        "kpis": [{"kpiInstanceId": "5aae8258-4878-eb11-a812-000d3a8b3ec6", "name": "Resolve by", "caseId": "59ae8258-4878-eb11-a812-000d3a8b3ec6",
                  "caseTitle": "Printer jam", "ticketNumber": "CAS-01001-A1B2C3", "status": "Warning", "statusCode": 2,
                  "warningTime": "2025-06-30T13:00:00Z", "failureTime": "2025-06-30T17:00:00Z", "succeededOn": None, "pausedOn": None}],
        "counts": {"Warning": 1},
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        kpis: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        async for page in ctx.web_api.fetchxml_pages("slakpiinstances", sla_fetchxml(inputs.case_id, inputs.statuses),
                                                     annotations=FORMATTED):
            for row in page.rows:
                code = row.get("status")
                status = STATUSES.get(code, "Unknown") if isinstance(code, int) else "Unknown"
                counts[status] = counts.get(status, 0) + 1
                kpis.append({"kpiInstanceId": row["slakpiinstanceid"], "name": row.get("name"), "caseId": row.get("_regarding_value"),
                             "caseTitle": row.get("case.title"), "ticketNumber": row.get("case.ticketnumber"),
                             "status": status, "statusCode": code, "warningTime": row.get("warningtime"),
                             "failureTime": row.get("failuretime"), "succeededOn": row.get("succeededon"), "pausedOn": row.get("pausedon")})
        return {"kpis": kpis, "counts": counts}
