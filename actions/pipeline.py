"""A weighted sales pipeline: open opportunities by owner, stage and close period.

Each group counts its opportunities and sums their estimated value and weighted value
(estimatedvalue x closeprobability / 100). The stage is the active stage of the record's
Opportunity Sales Process flow (opportunitysalesprocess.activestageid -> processstage.stagename),
else the opportunity's ``stepname`` (Pipeline Phase), else its ``salesstage`` label.

Dataverse aggregates at most 50,000 rows per FetchXML aggregate query (error 0x8004E023,
AggregateQueryRecordLimit exceeded). The report first asks for the aggregate (grouped also by
probability, so the weighted value is exact) and, when Dataverse answers that error, streams the
rows page by page and groups them itself: the same rows and totals either way. ``method`` says
which path ran. An extra OData filter cannot be put into FetchXML, so with one the report streams.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import ADVANCED, FORMATTED, GUID_PATTERN, literal, plain_id
from d365_components.conventions import RECORDS
from d365_components.errors import DataverseError

__all__ = ["PipelineReport"]

#: Dataverse's row limit of one aggregate query, and the error it answers beyond it
AGGREGATE_LIMIT = 50_000
AGGREGATE_LIMIT_EXCEEDED = "0x8004e023"
#: opportunity.salesstage labels of a fresh org
SALES_STAGES = {0: "Qualify", 1: "Develop", 2: "Propose", 3: "Close"}
NO_STAGE = "(no stage)"
NO_DATE = "(no close date)"
_COLUMNS = ["_ownerid_value", "estimatedvalue", "closeprobability", "estimatedclosedate", "stepname", "salesstage",
            "opportunityid"]

#: one group: (owner id, stage, period) -> [count, total, weighted]
Groups = dict[tuple[str, str, str], list[float]]


class PipelineReport(Action):
    """Open opportunities grouped by owner, stage and close period, with count, total and weighted value."""

    key = "dynamics365.pipeline_report"
    label = "Pipeline Report"
    group = "Sales"

    class Inputs(InputModel):
        close_period: Literal["month", "quarter"] = InputField(
            "quarter", title="Close period", description="Group the estimated close dates by month (2025-06) or quarter (2025-Q2).",
            examples=["quarter"], enum_labels={"month": "Month", "quarter": "Quarter"},
        )
        owners: list[str] | None = InputField(
            None, title="Owners", description="Only these owners (systemuser or team GUIDs); every owner when empty.",
            examples=[["2138bd90-ec19-ea11-a811-000d3a334e11"]], widget="list", max_length=100,
            schema={"items": {"type": "string", "pattern": GUID_PATTERN, "x-data-source": RECORDS,
                              "x-data-source-inputs": {"table": literal("systemusers")}}},
        )
        close_from: dt.date | None = InputField(
            None, title="Close date from", description="Only opportunities estimated to close on or after this date (YYYY-MM-DD).",
            examples=["2025-01-01"],
        )
        close_to: dt.date | None = InputField(
            None, title="Close date to", description="Only opportunities estimated to close on or before this date (YYYY-MM-DD).",
            examples=["2025-12-31"],
        )
        min_probability: int | None = InputField(
            None, title="Minimum probability", description="Only opportunities whose probability (closeprobability) is at least this percentage.",
            examples=[20], ge=0, le=100,
        )
        odata_filter: str | None = InputField(
            None, title="Extra OData filter", description="A further OData $filter on opportunities, e.g. `_parentaccountid_value eq <id>`; "
            "the report then reads the rows page by page instead of aggregating.",
            examples=["budgetstatus eq 2"], widget="code", language="odata", group=ADVANCED, advanced=True, min_length=1,
        )
        aggregate_limit: int = InputField(
            AGGREGATE_LIMIT, title="Aggregate limit", description="Aggregate at most this many rows (FetchXML aggregatelimit, at most "
            "Dataverse's 50,000); beyond it the report streams the rows instead.",
            examples=[AGGREGATE_LIMIT], ge=1, le=AGGREGATE_LIMIT, group=ADVANCED, advanced=True,
        )
        page_size: int = InputField(
            5000, title="Rows per page", description="Rows per page when streaming.", examples=[5000], ge=1, le=5000,
            group=ADVANCED, advanced=True,
        )

    output_schema = {
        "type": "object",
        "required": ["rows", "totals", "closePeriod", "method"],
        "properties": {
            "rows": {"type": "array", "description": "One row per owner, stage and close period, sorted by owner name, stage, period.",
                     "items": {"type": "object",
                               "required": ["ownerId", "ownerName", "stage", "closePeriod", "count", "totalValue", "weightedValue"],
                               "properties": {
                                   "ownerId": {"type": "string", "description": "The owner (systemuser or team)."},
                                   "ownerName": {"type": ["string", "null"], "description": "The owner's name."},
                                   "stage": {"type": "string", "description": "The active flow stage, else Pipeline Phase, else Sales Stage."},
                                   "closePeriod": {"type": "string", "description": "2025-06 or 2025-Q2 (or '(no close date)')."},
                                   "count": {"type": "integer", "description": "Open opportunities."},
                                   "totalValue": {"type": "number", "description": "Sum of estimated value."},
                                   "weightedValue": {"type": "number", "description": "Sum of estimated value x probability / 100."},
                               }}},
            "totals": {"type": "object", "required": ["count", "totalValue", "weightedValue"], "description": "Over every row.",
                       "properties": {"count": {"type": "integer", "description": "Open opportunities."},
                                      "totalValue": {"type": "number", "description": "Sum of estimated value."},
                                      "weightedValue": {"type": "number", "description": "Sum of weighted value."}}},
            "closePeriod": {"type": "string", "description": "month or quarter."},
            "method": {"type": "string", "enum": ["aggregate", "stream"], "description": "aggregate (FetchXML) or stream (page by page)."},
        },
    }
    example = {
        "rows": [{"ownerId": "2138bd90-ec19-ea11-a811-000d3a334e11", "ownerName": "Nancy Davolio", "stage": "Develop",
                  "closePeriod": "2025-Q2", "count": 3, "totalValue": 300000.0, "weightedValue": 120000.0}],
        "totals": {"count": 3, "totalValue": 300000.0, "weightedValue": 120000.0},
        "closePeriod": "quarter", "method": "aggregate",
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        names: dict[str, str | None] = {}
        method = "stream"
        groups: Groups | None = None
        if not inputs.odata_filter:
            try:
                groups = await _aggregate(ctx, inputs, names)
                method = "aggregate"
            except DataverseError as exc:
                if (exc.code or "").lower() != AGGREGATE_LIMIT_EXCEEDED:
                    raise
        if groups is None:
            groups = await _stream(ctx, inputs, names)
        return _report(groups, names, inputs.close_period, method)


# ---- the aggregate path -------------------------------------------------------------------------

def _condition(attribute: str, operator: str, value: Any = None) -> str:
    text = f"<condition attribute={quoteattr(attribute)} operator={quoteattr(operator)}"
    return text + (f" value={quoteattr(str(value))}/>" if value is not None else "/>")


def _fetch_conditions(inputs: PipelineReport.Inputs) -> str:
    parts = [_condition("statecode", "eq", 0)]
    if inputs.owners:
        values = "".join(f"<value>{plain_id(owner)}</value>" for owner in inputs.owners)
        parts.append(f'<condition attribute="ownerid" operator="in">{values}</condition>')
    if inputs.close_from:
        parts.append(_condition("estimatedclosedate", "on-or-after", inputs.close_from.isoformat()))
    if inputs.close_to:
        parts.append(_condition("estimatedclosedate", "on-or-before", inputs.close_to.isoformat()))
    if inputs.min_probability is not None:
        parts.append(_condition("closeprobability", "ge", inputs.min_probability))
    return f"<filter>{''.join(parts)}</filter>"


def aggregate_fetchxml(inputs: PipelineReport.Inputs) -> str:
    """The FetchXML aggregate: count and sum grouped by owner, stage columns, probability and period."""
    period = inputs.close_period
    return (
        f'<fetch aggregate="true" aggregatelimit="{inputs.aggregate_limit}">'
        '<entity name="opportunity">'
        '<attribute name="opportunityid" alias="count" aggregate="count"/>'
        '<attribute name="estimatedvalue" alias="total" aggregate="sum"/>'
        '<attribute name="ownerid" alias="owner" groupby="true"/>'
        '<attribute name="stepname" alias="step" groupby="true"/>'
        '<attribute name="salesstage" alias="salesstage" groupby="true"/>'
        '<attribute name="closeprobability" alias="probability" groupby="true"/>'
        '<attribute name="estimatedclosedate" alias="year" groupby="true" dategrouping="year"/>'
        f'<attribute name="estimatedclosedate" alias="period" groupby="true" dategrouping="{period}"/>'
        f"{_fetch_conditions(inputs)}"
        '<link-entity name="opportunitysalesprocess" from="opportunityid" to="opportunityid" link-type="outer" alias="flow">'
        f"<filter>{_condition('statecode', 'eq', 0)}</filter>"
        '<link-entity name="processstage" from="processstageid" to="activestageid" link-type="outer" alias="activestage">'
        '<attribute name="stagename" alias="stagename" groupby="true"/>'
        "</link-entity></link-entity></entity></fetch>"
    )


async def _aggregate(ctx: Context, inputs: PipelineReport.Inputs, names: dict[str, str | None]) -> Groups:
    groups: Groups = {}
    async for page in ctx.web_api.fetchxml_pages("opportunities", aggregate_fetchxml(inputs), annotations=FORMATTED):
        for row in page.rows:
            owner = str(row.get("owner") or "")
            names.setdefault(owner, row.get(f"owner@{FORMATTED}"))
            stage = _stage(row.get("stagename"), row.get("step"), row.get("salesstage"))
            period = _period_label(row.get("year"), row.get("period"), inputs.close_period)
            total = float(row.get("total") or 0)
            _add(groups, (owner, stage, period), int(row.get("count") or 0), total, total * float(row.get("probability") or 0) / 100)
    return groups


# ---- the streaming path -------------------------------------------------------------------------

def _odata_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def odata_filter(inputs: PipelineReport.Inputs) -> str:
    """The same conditions as the aggregate's, in OData, plus the extra filter."""
    parts = ["statecode eq 0"]
    if inputs.owners:
        parts.append("(" + " or ".join(f"_ownerid_value eq {plain_id(owner)}" for owner in inputs.owners) + ")")
    if inputs.close_from:
        parts.append(f"estimatedclosedate ge {inputs.close_from.isoformat()}")
    if inputs.close_to:
        parts.append(f"estimatedclosedate lt {(inputs.close_to + dt.timedelta(days=1)).isoformat()}")
    if inputs.min_probability is not None:
        parts.append(f"closeprobability ge {inputs.min_probability}")
    if inputs.odata_filter:
        parts.append(f"({inputs.odata_filter})")
    return " and ".join(parts)


async def _active_stages(ctx: Context, page_size: int) -> dict[str, str]:
    """opportunity id -> the name of its active Opportunity Sales Process stage."""
    stage_names: dict[str, str] = {}
    async for row in ctx.web_api.rows("processstages", params={"$select": "processstageid,stagename"}, page_size=page_size):
        stage_names[str(row["processstageid"])] = str(row.get("stagename") or "")
    stages: dict[str, str] = {}
    params = {"$select": "_opportunityid_value,_activestageid_value", "$filter": "statecode eq 0"}
    async for row in ctx.web_api.rows("opportunitysalesprocesses", params=params, page_size=page_size):
        opportunity, stage = row.get("_opportunityid_value"), row.get("_activestageid_value")
        if opportunity and stage in stage_names:
            stages[str(opportunity)] = stage_names[str(stage)]
    return stages


async def _stream(ctx: Context, inputs: PipelineReport.Inputs, names: dict[str, str | None]) -> Groups:
    stages = await _active_stages(ctx, inputs.page_size)
    groups: Groups = {}
    params = {"$select": ",".join(c for c in _COLUMNS), "$filter": odata_filter(inputs)}
    async for row in ctx.web_api.rows("opportunities", params=params, page_size=inputs.page_size, annotations=FORMATTED):
        owner = str(row.get("_ownerid_value") or "")
        names.setdefault(owner, row.get(f"_ownerid_value@{FORMATTED}"))
        stage = _stage(stages.get(str(row.get("opportunityid"))), row.get("stepname"), row.get("salesstage"))
        close = row.get("estimatedclosedate")
        year, period = (None, None) if not close else _date_parts(str(close), inputs.close_period)
        total = float(row.get("estimatedvalue") or 0)
        _add(groups, (owner, stage, _period_label(year, period, inputs.close_period)), 1, total,
             total * float(row.get("closeprobability") or 0) / 100)
    return groups


def _date_parts(text: str, close_period: str) -> tuple[int, int]:
    day = dt.date.fromisoformat(text[:10])
    return day.year, day.month if close_period == "month" else (day.month + 2) // 3


# ---- grouping ---------------------------------------------------------------------------------

def _stage(flow_stage: Any, step: Any, sales_stage: Any) -> str:
    if flow_stage:
        return str(flow_stage)
    if step:
        return str(step)
    if isinstance(sales_stage, int):
        return SALES_STAGES.get(sales_stage, str(sales_stage))
    return NO_STAGE


def _period_label(year: Any, period: Any, close_period: str) -> str:
    if year is None or period is None:
        return NO_DATE
    return f"{int(year):04d}-{int(period):02d}" if close_period == "month" else f"{int(year):04d}-Q{int(period)}"


def _add(groups: Groups, key: tuple[str, str, str], count: int, total: float, weighted: float) -> None:
    group = groups.setdefault(key, [0, 0.0, 0.0])
    group[0] += count
    group[1] += total
    group[2] += weighted


def _report(groups: Groups, names: dict[str, str | None], close_period: str, method: str) -> dict[str, Any]:
    rows = [{"ownerId": owner, "ownerName": names.get(owner), "stage": stage, "closePeriod": period,
             "count": int(count), "totalValue": round(total, 2), "weightedValue": round(weighted, 2)}
            for (owner, stage, period), (count, total, weighted) in groups.items()]
    rows.sort(key=lambda r: (str(r["ownerName"] or ""), str(r["ownerId"]), str(r["stage"]), str(r["closePeriod"])))
    return {"rows": rows, "totals": _totals(rows), "closePeriod": close_period, "method": method}


def _totals(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    count, total, weighted = 0, 0.0, 0.0
    for row in rows:
        count += row["count"]
        total += row["totalValue"]
        weighted += row["weightedValue"]
    return {"count": count, "totalValue": round(total, 2), "weightedValue": round(weighted, 2)}
