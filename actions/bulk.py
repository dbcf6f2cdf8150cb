"""Bulk Create and Bulk Upsert: any number of rows, in chunks sent concurrently, resumable.

Rows are cut into chunks of ``chunkSize``; each chunk is one CreateMultiple / UpsertMultiple
request (reference §6), which a standard table runs as one transaction. A table or org that does
not offer the message is detected once (404, 0x8006088a) and served by ``$batch`` change sets
instead, with the same all-or-nothing chunks. At most ``maxConcurrency`` chunks are in flight.

Exactly once through faults: Bulk Create gives every row without one a primary id made on the
client (derived from ``runId`` and the row's position), and Bulk Upsert does the same for rows
addressed by neither key nor id, so every chunk is safe to send again after an ambiguous failure
(a dropped connection after the request was sent). A re-sent create whose first attempt did land
is refused as a duplicate key; the run then reads which of the chunk's ids exist and reports
those rows written ("reconciled"), sending only the missing ones again: never a duplicate row,
never a lost one.

Resuming: the output lists the chunks that are done (``confirmedChunks``) and the first one that is
not (``nextChunk``). Passing ``resumeInputs`` back with the same rows sends exactly the chunks not
yet written, so a failed run can be finished without writing any row twice. ``journalFile``
keeps the same progress in a file after every chunk (see ``actions.journal``), so Ctrl-C, a crash or a
killed worker resumes by running again with the same inputs. With ``continueOnError`` a failed
chunk is retried row by row (it was rolled back, so nothing is doubled) and only the rows
Dataverse refuses are reported failed. The counters always add up: written + failed + notWritten
is total.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from pydantic import model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import (
    COLUMNS,
    ERROR_SCHEMA,
    GUID_PATTERN,
    LOOKUP_FORMS,
    NAMESPACE,
    entity_type_field,
    error_json,
    literal,
    plain_id,
)
from d365_components.actions._lookups import TableInfo, bind_rows, metadata_for
from d365_components.actions.journal import Journal, open_journal, rows_digest
from d365_components.connections.batch import BatchOperation
from d365_components.connections.odata import entity_path, is_guid
from d365_components.connections.retry import Attempts
from d365_components.conventions import NAME
from d365_components.errors import D365Error, DataverseError, FieldError, InputValidationError

_COLUMN = NAME  # whole strings only
_ITEM = re.compile(r"Targets\[(\d+)\]")
#: answers meaning "this table or org has no such message" (not a problem with a row)
UNSUPPORTED_CODES = {"0x8006088a", "0x80060888"}
#: "a row with this primary key exists": after a resend, possibly our own first attempt
DUPLICATE_KEY = "0x80040237"
#: "a record with these alternate key values exists": also possibly our own first attempt
DUPLICATE_ALTERNATE_KEY = "0x80060892"
#: ids per existence query when reconciling (keeps the URL short)
_IDS_PER_QUERY = 50
#: (api url, entity set, message) found without the bulk message, so later runs go straight to $batch
_WITHOUT_MESSAGE: set[tuple[str, str, str]] = set()


# -- inputs shared by both actions ------------------------------------------------------------


def rows_field() -> Any:
    return InputField(
        title="Rows",
        description=(
            "The rows to write: a JSON array of objects of column values (any number of rows). " + LOOKUP_FORMS
        ),
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


def journal_field() -> Any:
    return InputField(
        None, title="Journal file",
        description=("A file that keeps the run's progress after every chunk: run again with the same inputs "
                     "to finish an interrupted run (nothing is written twice). Empty: progress is only in the output."),
        examples=["bulk-accounts.journal.json"], group="Resume", advanced=True, min_length=1,
    )


def run_id_field() -> Any:
    return InputField(
        None, title="Run ID",
        description=("The GUID of the run: the ids Bulk Create gives new rows derive from it, so a resumed run "
                     "recognises the rows it already wrote. From resumeInputs of a failed run; empty for a new run."),
        pattern=GUID_PATTERN, examples=["0f8fad5b-d9cb-469f-a165-70867728950e"], group="Resume", advanced=True,
    )


def skip_field() -> Any:
    return InputField([], title="Chunks already written",
                      description="Chunks after Resume from that a failed run already wrote (from its resumeInputs).",
                      group="Resume", advanced=True)


OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["entityType", "method", "total", "chunks", "written", "alreadyWritten", "failed", "notWritten",
                 "reconciled", "retries", "resends", "runId", "confirmedChunks", "nextChunk", "resumeInputs", "results"],
    "properties": {
        "entityType": {"type": "string", "description": "The table's entity set name."},
        "method": {"type": "string", "description": "CreateMultiple, UpsertMultiple or $batch (the fallback)."},
        "total": {"type": "integer", "description": "Rows given."},
        "chunks": {"type": "integer", "description": "Chunks the rows make."},
        "written": {"type": "integer", "description": "Rows written (by this run, or by an earlier run it resumes)."},
        "alreadyWritten": {"type": "integer", "description": "Of written: rows in chunks an earlier run had done."},
        "failed": {"type": "integer", "description": "Rows Dataverse refused."},
        "notWritten": {"type": "integer",
                       "description": "Rows neither written nor refused: rolled back with a failed chunk, or not sent."},
        "reconciled": {"type": "integer",
                       "description": "Rows found already written after a resend (an earlier attempt had landed)."},
        "retries": {"type": "integer", "description": "Requests tried again (throttling, server errors, network)."},
        "resends": {"type": "integer", "description": "Of retries: writes sent again after an ambiguous failure."},
        "runId": {"type": "string", "description": "The run's id (give it back as runId to resume)."},
        "confirmedChunks": {"type": "array", "items": {"type": "integer"},
                            "description": "Chunks done (this run, or skipped as done before)."},
        "nextChunk": {"type": ["integer", "null"], "description": "First chunk not done; null when all are."},
        "resumeInputs": {
            "type": ["object", "null"],
            "description": "Pass these inputs back (with the same rows and chunk size) to finish a failed run.",
            "properties": {
                "runId": {"type": "string", "description": "The run's id."},
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
    "entityType": "accounts", "method": "UpsertMultiple", "total": 2, "chunks": 1, "written": 2, "alreadyWritten": 0,
    "failed": 0, "notWritten": 0, "reconciled": 0, "retries": 0, "resends": 0,
    "runId": "0f8fad5b-d9cb-469f-a165-70867728950e", "confirmedChunks": [0], "nextChunk": None, "resumeInputs": None,
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
        # lookups as the record actions take them; every bad one named before anything is written
        rows = await bind_rows(metadata_for(ctx.web_api), table, inputs.rows, "/rows", keep=keys)
        digest = rows_digest(self.key, inputs.entity_type, inputs.rows, inputs.chunk_size, keys)
        journal = open_journal(ctx.connection, inputs.journal_file, digest, inputs.run_id)
        run = _Run(ctx, inputs.model_copy(update={"rows": rows}), table, self.message, keys, journal)
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
        run_id: str | None = run_id_field()
        journal_file: str | None = journal_field()

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
        run_id: str | None = run_id_field()
        journal_file: str | None = journal_field()


# -- before any request -------------------------------------------------------------------------


def _check_rows(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Every row must carry the key columns; report the first few offenders by pointer."""
    problems: list[FieldError] = []
    for name in keys:
        if not _COLUMN.fullmatch(name):
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
    table = await metadata_for(ctx.web_api).table(entity_type)
    if table.logical_name is None:
        ctx.log.info("table metadata unreadable; using $batch")
    return table


# -- the run --------------------------------------------------------------------------------------


def _unsupported(exc: DataverseError) -> bool:
    return (exc.code or "").lower() in UNSUPPORTED_CODES or exc.status == 405


class _Run:
    """One run of a bulk action: chunks in flight, their outcome, and the per-row results."""

    def __init__(self, ctx: Context, inputs: Any, table: TableInfo, message: str, keys: tuple[str, ...],
                 journal: Journal) -> None:
        self.ctx, self.inputs, self.table, self.message, self.keys = ctx, inputs, table, message, keys
        self.journal = journal
        self.size = inputs.chunk_size
        self.rows, self.generated = self._with_ids(inputs.rows)
        self.count = (len(self.rows) + self.size - 1) // self.size
        self.results: dict[int, dict[str, Any]] = {}
        done = set(range(min(inputs.resume_from, self.count)))
        done |= {i for i in inputs.skip_chunks if 0 <= i < self.count}
        done |= {i for i in journal.done if 0 <= i < self.count}
        self.before = frozenset(done)
        self.done: set[int] = set(done)
        self.method = message
        self.use_message = table.logical_name is not None and self._memo() not in _WITHOUT_MESSAGE
        self.stopped = False
        self.sent_rows = 0
        self.reconciled = 0
        self.attempts = Attempts()

    def _memo(self) -> tuple[str, str, str]:
        return (self.ctx.web_api.api_url, self.table.entity_set, self.message)

    def _with_ids(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], set[int]]:
        """Rows with a client-assigned primary id where a create could happen without one.

        The id of row ``i`` is ``uuid5(runId, i)``: the same in a resumed run, so a chunk that
        landed before an interruption is refused as a duplicate and reconciled, never doubled.
        """
        column = self.table.primary_id
        if column is None or (self.message == "UpsertMultiple" and self.keys):
            return rows, set()
        namespace = uuid.UUID(self.journal.run_id)
        out, generated = [], set()
        for index, row in enumerate(rows):
            if self._own_id(row) is None and row.get(column) is None:
                row = {**row, column: str(uuid.uuid5(namespace, str(index)))}
                generated.add(index)
            out.append(row)
        return out, generated

    async def go(self) -> dict[str, Any]:
        todo = iter([i for i in range(self.count) if i not in self.done])
        total_rows = len(self.rows)
        self.journal.save()
        self.ctx.report(0, total_rows)

        async def worker() -> None:
            for index in todo:  # one shared iterator: each chunk is taken by exactly one worker
                if self.stopped:
                    return
                if await self._chunk(index):
                    self.done.add(index)
                    self.journal.mark(index)
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

    def _resendable(self, rows: list[dict[str, Any]]) -> bool:
        """Safe to send again after an ambiguous failure: every row is addressed by key or id."""
        if self.message == "UpsertMultiple" and self.keys:
            return True
        return all(self._own_id(row) is not None for row in rows)

    def _ours(self, index: int, trace: Attempts) -> bool:
        """Whether a duplicate key answer for chunk ``index`` can be our own earlier attempt."""
        first = index * self.size
        generated = all(i in self.generated for i in range(first, first + len(self._slice(index))))
        return trace.ambiguous > 0 or generated

    async def _chunk(self, index: int) -> bool:
        """Write one chunk; True when it is done (every row written, or reported with continueOnError)."""
        rows = self._slice(index)
        if self.use_message:
            trace = Attempts()
            try:
                answer = await self.ctx.web_api.execute(
                    self.message, {"Targets": self._targets(rows)}, bound_to=(self.table.entity_set, None),
                    idempotent=self._resendable(rows), trace=trace)
            except DataverseError as exc:
                self._count(trace)
                if _duplicate(exc) and self._resendable(rows) and self._ours(index, trace):
                    return await self._reconcile(index, list(enumerate(rows)), exc)
                if _unsupported(exc):
                    _WITHOUT_MESSAGE.add(self._memo())
                    self.use_message = False
                    self.ctx.log.info("%s not offered for %s; using $batch", self.message, self.table.entity_set)
                elif not self.inputs.continue_on_error:
                    self._chunk_failed(index, exc)
                    return False
                # continueOnError: the chunk rolled back as a whole, so retry it row by row below
            except D365Error as exc:
                self._count(trace)
                self._chunk_failed(index, exc)
                return False
            else:
                self._count(trace)
                ids = (answer or {}).get("Ids") or []
                for offset, row in enumerate(rows):
                    row_id = ids[offset] if offset < len(ids) else self._own_id(row)
                    self._record(index, offset, True, row_id, self._created(index, offset))
                return True
        return await self._batch(index, list(enumerate(rows)))

    async def _batch(self, index: int, rows: list[tuple[int, dict[str, Any]]]) -> bool:
        """Write ``rows`` (offsets in chunk ``index`` and rows) through ``$batch``."""
        self.method = "$batch" if not self.use_message else self.method
        one_by_one = self.inputs.continue_on_error
        plain = [row for _, row in rows]
        trace = Attempts()
        try:
            answers = await self.ctx.web_api.batch([self._operation(row) for row in plain],
                                                  atomic=not one_by_one, continue_on_error=one_by_one,
                                                  resendable=self._resendable(plain), trace=trace)
        except D365Error as exc:
            self._count(trace)
            self._chunk_failed(index, exc)
            return False
        self._count(trace)
        failed = [a for a in answers if not a.ok]
        mine = self._resendable(plain) and self._ours(index, trace)
        if failed and not one_by_one:
            cause = next((a for a in failed if a.status != 424), failed[0])
            if mine and _duplicate(cause.error):
                return await self._reconcile(index, rows, cause.error)
            self._chunk_failed(index, cause.error, failed_offset=rows[cause.index][0])
            return False
        duplicates = [(offset, row) for (offset, row), answer in zip(rows, answers, strict=True)
                      if mine and not answer.ok and _duplicate(answer.error)]
        for (offset, row), answer in zip(rows, answers, strict=True):
            if answer.ok:
                row_id = answer.id if answer.id and is_guid(answer.id) else self._own_id(row)
                self._record(index, offset, True, row_id, self._created(index, offset))
            elif not (mine and _duplicate(answer.error)):
                self._record(index, offset, False, None, None, error_json(answer.error))
        if duplicates:
            duplicate = next(a.error for a in failed if _duplicate(a.error))
            return await self._reconcile(index, duplicates, duplicate, atomic=False)
        return True

    async def _reconcile(self, index: int, rows: list[tuple[int, dict[str, Any]]], cause: Any,
                         *, atomic: bool = True) -> bool:
        """A resent create was refused as a duplicate: the rows whose ids exist are written (by
        the earlier attempt); the others are sent again, row by row. ``atomic``: ``rows`` are the
        whole chunk, rolled back together; otherwise they are single rows of a continueOnError run."""
        ids = [str(self._own_id(row)).lower() for _, row in rows]
        try:
            existing = await self._existing(ids)
        except D365Error as exc:
            existing, cause = set(), exc
        missing = [(offset, row) for offset, row in rows if str(self._own_id(row)).lower() not in existing]
        if len(missing) == len(rows):  # none of them exists (or it cannot be told): the duplicate is not ours
            if atomic:
                self._chunk_failed(index, cause)
                return False
            for offset, _ in rows:
                self._record(index, offset, False, None, None, error_json(cause))
            return True
        for offset, row in rows:
            if str(self._own_id(row)).lower() in existing:
                self._record(index, offset, True, self._own_id(row), self._created(index, offset))
                self.reconciled += 1
        if not missing:
            return True
        self.ctx.log.info("chunk %d: %d rows written before a resend, %d sent again", index,
                          len(rows) - len(missing), len(missing))
        answers = await self.ctx.web_api.batch([self._operation(row) for _, row in missing], continue_on_error=True,
                                              resendable=True)
        for (offset, row), answer in zip(missing, answers, strict=True):
            self._record(index, offset, answer.ok, self._own_id(row) if answer.ok else None,
                         True if answer.ok else None, None if answer.ok else error_json(answer.error))
        return all(a.ok for a in answers) or bool(self.inputs.continue_on_error)

    async def _existing(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are rows of the table (read in groups, to keep URLs short)."""
        column = str(self.table.primary_id)
        found: set[str] = set()
        for start in range(0, len(ids), _IDS_PER_QUERY):
            group = ids[start : start + _IDS_PER_QUERY]
            condition = " or ".join(f"{column} eq {row_id}" for row_id in group)
            async for row in self.ctx.web_api.rows(self.table.entity_set, params={"$select": column, "$filter": condition}):
                value = row.get(column)
                if isinstance(value, str):
                    found.add(value.lower())
        return found

    def _created(self, chunk: int, offset: int) -> bool | None:
        """True for a create (or an upsert of a row given a new id here); None when Dataverse does not say."""
        return True if self.message == "CreateMultiple" or chunk * self.size + offset in self.generated else None

    def _count(self, trace: Attempts) -> None:
        self.attempts.retries += trace.retries
        self.attempts.ambiguous += trace.ambiguous

    def _chunk_failed(self, index: int, exc: Any, failed_offset: int | None = None) -> None:
        """Every row of a rolled-back chunk is reported; the one that caused it gets the real error."""
        if failed_offset is None:
            match = _ITEM.search(str(getattr(exc, "message", "")))
            failed_offset = int(match.group(1)) if match else None
        first = index * self.size
        cause = error_json(exc) or {"status": None, "code": None, "message": "failed", "hint": None}
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
        written_now = sum(r["written"] for r in results)
        failed = len(results) - written_now - rolled_back
        already = sum(len(self._slice(i)) for i in self.before)
        written = written_now + already
        missing = [i for i in range(self.count) if i not in self.done]
        next_chunk = missing[0] if missing else None
        resume = None
        if next_chunk is not None:
            resume = {"runId": self.journal.run_id, "resumeFrom": next_chunk,
                      "skipChunks": sorted(i for i in self.done if i > next_chunk)}
        return {
            "entityType": self.table.entity_set,
            "method": self.method,
            "total": len(self.rows),
            "chunks": self.count,
            "written": written,
            "alreadyWritten": already,
            "failed": failed,
            "notWritten": len(self.rows) - written - failed,
            "reconciled": self.reconciled,
            "retries": self.attempts.retries,
            "resends": self.attempts.ambiguous,
            "runId": self.journal.run_id,
            "confirmedChunks": sorted(self.done),
            "nextChunk": next_chunk,
            "resumeInputs": resume,
            "results": results,
        }


def _duplicate(error: Any) -> bool:
    """A duplicate primary key, or a duplicate alternate key (Dataverse may check the alternate
    key first): either may be our own earlier attempt, which reconciling verifies by id."""
    return isinstance(error, DataverseError) and (error.code or "").lower() in (DUPLICATE_KEY, DUPLICATE_ALTERNATE_KEY)
