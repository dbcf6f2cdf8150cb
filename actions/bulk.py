"""Bulk Create and Bulk Upsert: any number of rows, in chunks sent concurrently, resumable.

Rows are cut into chunks of ``chunkSize``; each chunk is one CreateMultiple / UpsertMultiple
request (reference §6), which a standard table runs as one transaction. A table or org that does
not offer the message is detected once (404, 0x8006088a) and served by ``$batch`` change sets
instead, with the same all-or-nothing chunks. At most ``maxConcurrency`` chunks are in flight.

Resuming: the output lists the chunks that are done (``confirmedChunks``) and the first one that is
not (``nextChunk``). Passing ``resumeInputs`` back with the same rows sends exactly the chunks not
yet written, so a failed run can be finished without writing any row twice. With
``continueOnError`` a failed chunk is retried row by row (it was rolled back, so nothing is
doubled) and only the rows Dataverse refuses are reported failed.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    COLUMNS,
    ERROR_SCHEMA,
    NAME_PATTERN,
    NAMESPACE,
    entity_type_field,
    error_json,
    literal,
    plain_id,
)
from d365_components.actions._lookups import TableInfo, metadata_for
from d365_components.connections.batch import BatchOperation
from d365_components.connections.odata import entity_path, is_guid
from d365_components.errors import D365Error, DataverseError, FieldError, InputValidationError

_COLUMN = re.compile(NAME_PATTERN)
_ITEM = re.compile(r"Targets\[(\d+)\]")
#: answers meaning "this table or org has no such message" (not a problem with a row)
UNSUPPORTED_CODES = {"0x8006088a", "0x80060888"}
#: (api url, entity set, message) found without the bulk message, so later runs go straight to $batch
_WITHOUT_MESSAGE: set[tuple[str, str, str]] = set()


# -- inputs shared by both actions ------------------------------------------------------------


def rows_field() -> Any:
    return InputField(
        title="Rows",
        description="The rows to write: a JSON array of objects of column values (any number of rows).",
        examples=[[{"name": "Contoso", "accountnumber": "A-100"}, {"name": "Fabrikam", "accountnumber": "A-101"}]],
        widget="code",
        language="json",
        min_length=1,
    )


def chunk_size_field() -> Any:
    return InputField(100, title="Chunk size", description="Rows per request (1-1000); each chunk is all or nothing.",
                      ge=1, le=1000, group="Performance", advanced=True)


def concurrency_field() -> Any:
    return InputField(4, title="Parallel requests", description="Chunks sent at the same time (1-16).",
                      ge=1, le=16, group="Performance", advanced=True)


def continue_field() -> Any:
    return InputField(
        False, title="Continue on error",
        description="Write every row Dataverse accepts and report the others; otherwise stop at the first failed chunk.",
    )


def resume_field() -> Any:
    return InputField(0, title="Resume from chunk",
                      description="Start at this chunk (the nextChunk of a failed run with the same rows and chunk size).",
                      ge=0, group="Resume", advanced=True)


def skip_field() -> Any:
    return InputField([], title="Chunks already written",
                      description="Chunks after Resume from that a failed run already wrote (from its resumeInputs).",
                      group="Resume", advanced=True)


OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["entityType", "method", "total", "chunks", "written", "failed", "notWritten",
                 "confirmedChunks", "nextChunk", "resumeInputs", "results"],
    "properties": {
        "entityType": {"type": "string", "description": "The table's entity set name."},
        "method": {"type": "string", "description": "CreateMultiple, UpsertMultiple or $batch (the fallback)."},
        "total": {"type": "integer", "description": "Rows given."},
        "chunks": {"type": "integer", "description": "Chunks the rows make."},
        "written": {"type": "integer", "description": "Rows written by this run."},
        "failed": {"type": "integer", "description": "Rows Dataverse refused."},
        "notWritten": {"type": "integer", "description": "Rows sent but rolled back with a failed chunk."},
        "confirmedChunks": {"type": "array", "items": {"type": "integer"},
                            "description": "Chunks done (this run, or skipped as done before)."},
        "nextChunk": {"type": ["integer", "null"], "description": "First chunk not done; null when all are."},
        "resumeInputs": {
            "type": ["object", "null"],
            "description": "Pass these inputs back (with the same rows and chunk size) to finish a failed run.",
            "properties": {
                "resumeFrom": {"type": "integer", "description": "The first chunk not written."},
                "skipChunks": {"type": "array", "items": {"type": "integer"}, "description": "Later chunks already written."},
            },
        },
        "results": {
            "type": "array",
            "description": "One result per row sent by this run, in row order.",
            "items": {
                "type": "object",
                "required": ["index", "chunk", "written", "id", "created", "error"],
                "properties": {
                    "index": {"type": "integer", "description": "Position of the row in rows (0-based)."},
                    "chunk": {"type": "integer", "description": "The chunk the row was sent in (0-based)."},
                    "written": {"type": "boolean", "description": "Whether the row was written."},
                    "id": {"type": ["string", "null"], "description": "The row's GUID when Dataverse tells it."},
                    "created": {"type": ["boolean", "null"], "description": "True if created, null when Dataverse does not say."},
                    "error": ERROR_SCHEMA,
                },
            },
        },
    },
}
EXAMPLE = {
    "entityType": "accounts", "method": "UpsertMultiple", "total": 2, "chunks": 1, "written": 2, "failed": 0,
    "notWritten": 0, "confirmedChunks": [0], "nextChunk": None, "resumeInputs": None,
    "results": [
        {"index": 0, "chunk": 0, "written": True, "id": None, "created": None, "error": None},
        {"index": 1, "chunk": 0, "written": True, "id": None, "created": None, "error": None},
    ],
}




class _BulkAction(Action):
    """Shared run of Bulk Create and Bulk Upsert (registered through its subclasses)."""

    message = ""
    output_schema = OUTPUT_SCHEMA
    example = EXAMPLE

    async def perform(self, ctx: Context, inputs: Any) -> dict[str, Any]:
        keys = tuple(getattr(inputs, "alternate_key_columns", ()))
        table = await _table(ctx, inputs.entity_type)
        run = _Run(ctx, inputs, table, self.message, keys)
        return await run.go()


class BulkUpsert(_BulkAction):
    """Create or update any number of rows by key: chunked UpsertMultiple calls in parallel, resumable."""

    key = "dynamics365.bulk_upsert"
    label = "Bulk Upsert"
    group = "Batch"
    message = "UpsertMultiple"
    checks = {"/rows": "every row carries every column named in alternateKeyColumns (a key column)"}

    class Inputs(InputModel):
        entity_type: str = entity_type_field()
        rows: list[dict[str, Any]] = rows_field()
        alternate_key_columns: list[str] = InputField(
            [], title="Key columns",
            description=(
                "Columns of an alternate key that identify each row (accountnumber). Empty: rows with the "
                "primary key column are updated, the others created."
            ),
            examples=[["accountnumber"]], widget="list",
            data_source=COLUMNS, data_source_inputs={"table": "entityType", "purpose": literal("create")},
        )
        chunk_size: int = chunk_size_field()
        max_concurrency: int = concurrency_field()
        continue_on_error: bool = continue_field()
        resume_from: int = resume_field()
        skip_chunks: list[int] = skip_field()

        @model_validator(mode="after")
        def _rows_carry_their_keys(self) -> BulkUpsert.Inputs:
            _check_rows(self.rows, tuple(self.alternate_key_columns))  # raises with /rows/<n>/<column> pointers
            return self


class BulkCreate(_BulkAction):
    """Create any number of rows: chunked CreateMultiple calls in parallel, resumable, with the new ids."""

    key = "dynamics365.bulk_create"
    label = "Bulk Create"
    group = "Batch"
    message = "CreateMultiple"

    class Inputs(InputModel):
        entity_type: str = entity_type_field()
        rows: list[dict[str, Any]] = rows_field()
        chunk_size: int = chunk_size_field()
        max_concurrency: int = concurrency_field()
        continue_on_error: bool = continue_field()
        resume_from: int = resume_field()
        skip_chunks: list[int] = skip_field()


# -- before any request -------------------------------------------------------------------------


def _check_rows(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Every row must carry the key columns; report the first few offenders by pointer."""
    problems: list[FieldError] = []
    for name in keys:
        if not _COLUMN.match(name):
            problems.append(FieldError("/alternateKeyColumns", f"'{name}' is not a column name"))
    if not problems and keys:
        for index, row in enumerate(rows):
            for name in keys:
                if row.get(name) is None:
                    problems.append(FieldError(f"/rows/{index}/{name}", "is required: it is a key column"))
            if len(problems) >= 20:
                break
    if problems:
        raise InputValidationError(problems, subject="inputs of dynamics365.bulk_upsert")


async def _table(ctx: Context, entity_type: str) -> TableInfo:
    """Entity set, logical name and primary key of ``entity_type`` (either name works); without
    metadata rights the logical name is None and the run goes through $batch."""
    table = await metadata_for(ctx.client).table(entity_type)
    if table.logical_name is None:
        ctx.log.info("table metadata unreadable; using $batch")
    return table


# -- the run --------------------------------------------------------------------------------------


def _unsupported(exc: DataverseError) -> bool:
    return (exc.code or "").lower() in UNSUPPORTED_CODES or exc.status == 405


class _Run:
    """One run of a bulk action: chunks in flight, their outcome, and the per-row results."""

    def __init__(self, ctx: Context, inputs: Any, table: TableInfo, message: str, keys: tuple[str, ...]) -> None:
        self.ctx, self.inputs, self.table, self.message, self.keys = ctx, inputs, table, message, keys
        self.rows = inputs.rows
        self.size = inputs.chunk_size
        self.count = (len(self.rows) + self.size - 1) // self.size
        self.results: dict[int, dict[str, Any]] = {}
        self.done: set[int] = set(range(min(inputs.resume_from, self.count)))
        self.done |= {i for i in inputs.skip_chunks if 0 <= i < self.count}
        self.method = message
        self.use_message = table.logical_name is not None and self._memo() not in _WITHOUT_MESSAGE
        self.stopped = False
        self.sent_rows = 0

    def _memo(self) -> tuple[str, str, str]:
        return (self.ctx.client.api_url, self.table.entity_set, self.message)

    async def go(self) -> dict[str, Any]:
        todo = iter([i for i in range(self.count) if i not in self.done])
        total_rows = len(self.rows)
        self.ctx.report(0, total_rows)

        async def worker() -> None:
            for index in todo:  # one shared iterator: each chunk is taken by exactly one worker
                if self.stopped:
                    return
                if await self._chunk(index):
                    self.done.add(index)
                elif not self.inputs.continue_on_error:
                    self.stopped = True
                self.sent_rows += len(self._slice(index))
                self.ctx.report(self.sent_rows, total_rows)

        async with asyncio.TaskGroup() as group:
            for _ in range(self.inputs.max_concurrency):
                group.create_task(worker())
        return self._output()

    def _slice(self, index: int) -> list[dict[str, Any]]:
        return self.rows[index * self.size : (index + 1) * self.size]

    async def _chunk(self, index: int) -> bool:
        """Write one chunk; True when it is done (every row written, or reported with continueOnError)."""
        rows = self._slice(index)
        if self.use_message:
            try:
                answer = await self.ctx.client.execute(self.message, {"Targets": self._targets(rows)},
                                                       bound_to=(self.table.entity_set, None))
            except DataverseError as exc:
                if _unsupported(exc):
                    _WITHOUT_MESSAGE.add(self._memo())
                    self.use_message = False
                    self.ctx.log.info("%s not offered for %s; using $batch", self.message, self.table.entity_set)
                elif not self.inputs.continue_on_error:
                    self._chunk_failed(index, exc)
                    return False
                # continueOnError: the chunk rolled back as a whole, so retry it row by row below
            except D365Error as exc:
                self._chunk_failed(index, exc)
                return False
            else:
                ids = (answer or {}).get("Ids") or []
                for offset, row in enumerate(rows):
                    row_id = ids[offset] if offset < len(ids) else self._own_id(row)
                    self._record(index, offset, True, row_id, True if self.message == "CreateMultiple" else None)
                return True
        return await self._batch(index, rows)

    async def _batch(self, index: int, rows: list[dict[str, Any]]) -> bool:
        self.method = "$batch" if not self.use_message else self.method
        one_by_one = self.inputs.continue_on_error
        try:
            answers = await self.ctx.client.batch([self._operation(row) for row in rows],
                                                  atomic=not one_by_one, continue_on_error=one_by_one)
        except D365Error as exc:
            self._chunk_failed(index, exc)
            return False
        failed = [a for a in answers if not a.ok]
        if failed and not one_by_one:
            cause = next((a for a in failed if a.status != 424), failed[0])
            self._chunk_failed(index, cause.error, failed_offset=cause.index)
            return False
        for offset, (row, answer) in enumerate(zip(rows, answers, strict=True)):
            if answer.ok:
                row_id = answer.id if answer.id and is_guid(answer.id) else self._own_id(row)
                created = True if self.message == "CreateMultiple" or not self._key_of(row) else None
                self._record(index, offset, True, row_id, created)
            else:
                self._record(index, offset, False, None, None, error_json(answer.error))
        return True

    def _chunk_failed(self, index: int, exc: Any, failed_offset: int | None = None) -> None:
        """Every row of a rolled-back chunk is reported; the one that caused it gets the real error."""
        if failed_offset is None:
            match = _ITEM.search(str(getattr(exc, "message", "")))
            failed_offset = int(match.group(1)) if match else None
        first = index * self.size
        cause = error_json(exc)
        for offset in range(len(self._slice(index))):
            if offset == failed_offset:
                self._record(index, offset, False, None, None, cause)
            else:
                reason = f"rolled back with chunk {index}" + (
                    f": row {first + failed_offset} failed" if failed_offset is not None else f": {cause['message']}")
                self._record(index, offset, False, None, None, {"status": 424, "code": None, "message": reason,
                                                               "hint": None}, rolled_back=True)

    def _record(self, chunk: int, offset: int, written: bool, row_id: Any, created: bool | None,
                error: dict[str, Any] | None = None, rolled_back: bool = False) -> None:
        index = chunk * self.size + offset
        self.results[index] = {
            "index": index, "chunk": chunk, "written": written,
            "id": plain_id(str(row_id)) if row_id and is_guid(str(row_id)) else None,
            "created": created, "error": error, "_rolled_back": rolled_back,
        }

    # -- request bodies ---------------------------------------------------------------------

    def _key_of(self, row: dict[str, Any]) -> dict[str, Any] | str | None:
        if self.keys:
            return {name: row[name] for name in self.keys}
        own = self._own_id(row)
        return own

    def _own_id(self, row: dict[str, Any]) -> str | None:
        value = row.get(self.table.primary_id) if self.table.primary_id else None
        return str(value) if value and is_guid(str(value)) else None

    def _targets(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        odata_type = NAMESPACE + str(self.table.logical_name)
        if not self.keys:
            return [{"@odata.type": odata_type, **row} for row in rows]
        targets = []
        for row in rows:
            # The key goes in @odata.id and not in the body: Dataverse refuses the create path otherwise.
            body = {k: v for k, v in row.items() if k not in self.keys}
            body["@odata.type"] = odata_type
            body["@odata.id"] = entity_path(self.table.entity_set, self._key_of(row))
            targets.append(body)
        return targets

    def _operation(self, row: dict[str, Any]) -> BatchOperation:
        key = self._key_of(row) if self.message == "UpsertMultiple" else None
        if key is None:
            return BatchOperation("POST", self.table.entity_set, body=row)
        body = {k: v for k, v in row.items() if not (self.keys and k in self.keys)}
        return BatchOperation("PATCH", entity_path(self.table.entity_set, key), body=body)

    # -- output -----------------------------------------------------------------------------

    def _output(self) -> dict[str, Any]:
        results = [self.results[i] for i in sorted(self.results)]
        rolled_back = sum(r.pop("_rolled_back") for r in results)
        written = sum(r["written"] for r in results)
        missing = [i for i in range(self.count) if i not in self.done]
        next_chunk = missing[0] if missing else None
        resume = None
        if next_chunk is not None:
            resume = {"resumeFrom": next_chunk, "skipChunks": sorted(i for i in self.done if i > next_chunk)}
        return {
            "entityType": self.table.entity_set,
            "method": self.method,
            "total": len(self.rows),
            "chunks": self.count,
            "written": written,
            "failed": len(results) - written - rolled_back,
            "notWritten": rolled_back,
            "confirmedChunks": sorted(self.done),
            "nextChunk": next_chunk,
            "resumeInputs": resume,
            "results": results,
        }
