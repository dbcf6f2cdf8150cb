"""Extract Changes: one page of a table's rows changed since the last run, plus the state to pass next.

The runtime face of ``d365 extract`` (:mod:`d365_components.connections.extract`): a flow loops
while ``hasMore`` is true, feeding each run's ``state`` into the next, and keeps the last
``state`` for its next schedule. The state is the same object the CLI writes, so a flow and
the CLI can take turns on it. Modes: ``incremental`` (by modifiedon, exactly once across runs),
``full`` (every row, page by page) and ``changes`` (change tracking: updates and deletes, a
delete as a tombstone with ``_sdc_deleted_at``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from d365_components.actions._common import entity_type_field
from d365_components.connections.extract import (
    DELETED_AT,
    RateLimiter,
    StreamReader,
    check_state,
    default_anchor,
    describe_tables,
)
from d365_components.connections.extract import Mode as ExtractMode
from d365_components.connections.paging import MAX_PAGE_SIZE
from d365_components.definitions import Action, Context
from d365_components.errors import D365Error, FieldError, InputValidationError
from d365_components.inputs import InputField, InputModel

__all__ = ["ExtractChanges"]

#: the action makes a handful of requests per run; the client's own limiter does the rest
RATE = 50.0


class ExtractChanges(Action):
    """Read one page of a table's new and changed rows (and deletes, with change tracking) since the last run."""

    key = "dynamics365.extract_changes"
    label = "Extract Changes"
    group = "Queries"

    class Inputs(InputModel):
        entity_type: str = entity_type_field(
            description="The table to replicate: its entity set name (accounts) or logical name (account).")
        mode: ExtractMode = InputField(
            "incremental", title="Mode",
            description=("incremental: rows modified since the last run, by modifiedon, each version once; "
                         "full: every row; changes: Dataverse change tracking, deletes included (falls back "
                         "to incremental on tables without it)."),
            enum_labels={"incremental": "Incremental (modifiedon)", "full": "Full refresh",
                         "changes": "Change tracking (with deletes)"},
        )
        anchor_date: datetime | None = InputField(
            None, title="Changes since",
            description="First run: rows modified from this moment on (UTC if no offset). Empty: one year ago.",
            examples=["2024-01-01T00:00:00Z"],
        )
        state: dict[str, Any] | None = InputField(
            None, title="State",
            description="The state output of the previous run (any table's): where to go on from. Empty: start.",
            examples=[{"bookmarks": {"accounts": {"mode": "incremental", "modifiedon": "2024-05-02T09:30:00Z",
                                                  "id": "60c4e274-0d87-e711-80e5-00155db19e6d"}}}],
            widget="code", language="json",
        )
        page_size: int = InputField(
            500, title="Rows per page", description="At most this many rows per run (1 to 5,000).",
            ge=1, le=MAX_PAGE_SIZE, group="Paging",
        )
        settle_seconds: float = InputField(
            0, title="Settle time",
            description=("Incremental: leave rows modified in the last this many seconds for a later run, "
                         "for writes that commit a while after their timestamp."),
            ge=0, le=3600, group="Paging", advanced=True,
        )

    output_schema = {
        "type": "object",
        "required": ["stream", "mode", "records", "state", "hasMore", "warnings"],
        "properties": {
            "stream": {"type": "string", "description": "The table's entity set name."},
            "mode": {"enum": ["incremental", "full", "changes"], "description": "The mode used (after fallbacks)."},
            "records": {"type": "array", "items": {"type": "object"},
                        "description": f"The rows; a deleted row is its id and {DELETED_AT}."},
            "state": {"type": "object", "description": "Pass as State to the next run."},
            "hasMore": {"type": "boolean", "description": "More rows are ready now: run again with the new state."},
            "warnings": {"type": "array", "items": {"type": "string"},
                         "description": "Why a table was skipped or read in another mode than asked."},
        },
    }
    example = {
        "stream": "accounts",
        "mode": "incremental",
        "records": [{"accountid": "60c4e274-0d87-e711-80e5-00155db19e6d", "name": "Contoso",
                     "modifiedon": "2024-05-02T09:30:00Z"}],
        "state": {"version": 1, "bookmarks": {"accounts": {
            "mode": "incremental", "modifiedon": "2024-05-02T09:30:00Z", "id": "60c4e274-0d87-e711-80e5-00155db19e6d"}}},
        "hasMore": False,
        "warnings": [],
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        try:
            state = check_state(inputs.state)
        except D365Error as exc:
            raise InputValidationError([FieldError("/state", str(exc).removeprefix("state: "))]) from None
        if ctx.client is None:
            raise D365Error("Extract Changes needs a Dynamics 365 connection.")
        anchor = inputs.anchor_date or default_anchor()
        anchor = anchor if anchor.tzinfo else anchor.replace(tzinfo=UTC)
        tables, missing = await describe_tables(ctx.client, [inputs.entity_type])
        if missing:
            return {"stream": inputs.entity_type, "mode": inputs.mode, "records": [], "state": state,
                    "hasMore": False, "warnings": [f"There is no table '{inputs.entity_type}': 0 records."]}
        table = tables[0]
        reader = StreamReader(ctx.client, table, inputs.mode, anchor=anchor, limiter=RateLimiter(RATE),
                              page_size=inputs.page_size, settle=inputs.settle_seconds, prefetch=False)
        warnings = []
        if reader.mode != inputs.mode:
            warnings.append(f"{table.name} cannot be read in mode {inputs.mode}; read in mode {reader.mode}.")
        bookmark = state["bookmarks"].get(table.name)
        if bookmark and bookmark.get("mode") != reader.mode:
            warnings.append(f"The state of {table.name} was for mode {bookmark.get('mode')}; started over.")
        records: list[dict[str, Any]] = []
        more = False
        batches = reader.batches(bookmark)
        try:
            async for batch in batches:
                records, more = batch.records, batch.more
                state["bookmarks"][table.name] = batch.bookmark
                break
        finally:
            await batches.aclose()
        ctx.report(len(records))
        return {"stream": table.name, "mode": reader.mode, "records": records, "state": state,
                "hasMore": more, "warnings": warnings}
