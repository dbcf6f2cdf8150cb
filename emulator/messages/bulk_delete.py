"""`POST BulkDelete`: a system job that deletes the rows its QueryExpressions match.

The action answers at once with `{JobId}` (the asyncoperation's id) after creating the
asyncoperation (operationtype 13, Bulk Delete) and its bulkdeleteoperation, both Ready / Waiting For
Resources. A worker thread then moves them to Locked / In Progress, deletes the matching rows one by
one (each delete fires the usual events) and completes them as Succeeded, or Failed with the error
in `message`. Requests are never blocked by the job: each row's delete takes the store lock briefly.
Recurring jobs (`RecurrencePattern`) are refused: the emulator runs every job once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from d365_components.emulator.messages.registry import Bound, register_action
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    QUERY_NOT_SUPPORTED,
    DataverseError,
    bad_request,
)
from d365_components.emulator.query.query_expression import compile_query
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage import system_jobs
from d365_components.emulator.storage.schema import Table, new_id
from d365_components.emulator.storage.store import Store, q, utc_now

PARAMETERS = {"QuerySet", "JobName", "SendEmailNotification", "ToRecipients", "CCRecipients", "RecurrencePattern",
              "StartDateTime", "RecurrenceStartTime", "SourceImportId", "RunNow"}


def bulk_delete(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    for name in params:
        if name not in PARAMETERS:
            raise bad_request(f"The parameter '{name}' is not a parameter of the action BulkDelete.")
    if not params.get("JobName"):
        raise bad_request("The JobName parameter is required.", INVALID_ARGUMENT)
    query_set = params.get("QuerySet")
    if not isinstance(query_set, list) or not query_set:
        raise bad_request("The QuerySet parameter must contain at least one QueryExpression.", INVALID_ARGUMENT)
    if params.get("RecurrencePattern"):
        raise bad_request("Recurring bulk delete jobs are not supported by the emulator.", QUERY_NOT_SUPPORTED)
    if params.get("SendEmailNotification"):
        raise bad_request("Bulk delete e-mail notifications are not supported by the emulator.", QUERY_NOT_SUPPORTED)
    queries = [compile_query(ctx.schema, query) for query in query_set]   # refuse a bad query before the job exists
    system_jobs.add_tables(ctx.store)
    job_id, operation_id = new_id(), new_id()
    with ctx.store.transaction():
        ctx.store.insert("asyncoperation", {
            "asyncoperationid": job_id, "name": params["JobName"], "operationtype": system_jobs.BULK_DELETE,
            "messagename": "BulkDelete", "data": json.dumps(query_set), "correlationid": new_id(),
            "statecode": system_jobs.READY, "statuscode": system_jobs.WAITING_FOR_RESOURCES,
            "ownerid": ctx.user_id, "owneridtype": "systemuser",
        }, user=ctx.user_id, on_behalf_of=ctx.on_behalf_of)
        ctx.store.insert("bulkdeleteoperation", {
            "bulkdeleteoperationid": operation_id, "name": params["JobName"], "asyncoperationid": job_id,
            "orderedquerysetxml": json.dumps(query_set), "successcount": 0, "failurecount": 0,
            "statecode": system_jobs.READY, "statuscode": system_jobs.WAITING_FOR_RESOURCES,
            "ownerid": ctx.user_id, "owneridtype": "systemuser",
        }, user=ctx.user_id, on_behalf_of=ctx.on_behalf_of)
    worker = threading.Thread(target=run_job, args=(ctx.store, ctx.user_id, job_id, operation_id, queries),
                              name=f"bulkdelete-{job_id}", daemon=True)
    worker.start()
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.BulkDeleteResponse",
                            "JobId": job_id})


def run_job(store: Store, user: str, job_id: str, operation_id: str,
            queries: list[tuple[Table, str, list[Any]]]) -> None:
    """The job itself: In Progress, delete every matching row, then Succeeded (or Failed)."""
    try:
        _run(store, user, job_id, operation_id, queries)
    except sqlite3.ProgrammingError:
        return            # the emulator stopped (its store closed) while the job ran


def _run(store: Store, user: str, job_id: str, operation_id: str, queries: list[tuple[Table, str, list[Any]]]) -> None:
    _advance(store, user, job_id, operation_id, system_jobs.LOCKED, system_jobs.IN_PROGRESS, {"startedon": utc_now()})
    deleted = failed = 0
    error = None
    try:
        for table, where, params in queries:
            rows = store.select(table.logical_name, where, params, columns=f"t0.{q(table.primary_id)} AS id")
            for row in rows:
                try:
                    with store.transaction():
                        gone = store.delete(table.logical_name, row["id"])
                    deleted += gone is not None
                except DataverseError:
                    failed += 1
    except sqlite3.ProgrammingError:
        raise
    except Exception as exc:   # a job reports its failure in its row, as Dataverse's do
        error = str(exc) or type(exc).__name__
    status = system_jobs.FAILED if error else system_jobs.SUCCEEDED
    _advance(store, user, job_id, operation_id, system_jobs.COMPLETED, status,
             {"completedon": utc_now(), **({"message": error, "friendlymessage": error} if error else {})},
             {"successcount": deleted, "failurecount": failed})


def _advance(store: Store, user: str, job_id: str, operation_id: str, state: int, status: int,
             job_values: dict[str, Any], operation_values: dict[str, Any] | None = None) -> None:
    with store.transaction():
        store.update("asyncoperation", job_id, {"statecode": state, "statuscode": status, **job_values}, user=user)
        store.update("bulkdeleteoperation", operation_id,
                     {"statecode": state, "statuscode": status, **(operation_values or {})}, user=user)


register_action("BulkDelete", bulk_delete)
