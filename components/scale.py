"""Bulk loads fanned out over many worker processes with Celery (Redis as broker and backend).

The driver (:func:`run_bulk`, or ``d365 bulk``) cuts the rows into chunks, keeps the run's
description and each chunk's rows in Redis, and sends one Celery task per chunk; the message
carries only the run id and the chunk number (no rows, no secrets). Workers started with

    D365_SCALE_REDIS_URL=redis://127.0.0.1:6379/0 celery -A d365_components.scale worker

write each chunk with Bulk Create / Bulk Upsert through a pool of connections (several app
users of one org, chunk ``n`` through connection ``n mod pool``). Every connection shares its
service-protection budget and token cache on the same Redis (``sharedStateUrl``), so the fleet
spends each app user's budget once and asks for one token per lifetime per app user.

Exactly once: tasks are acknowledged late and re-queued when their worker dies, so a chunk runs
again after a crash. Its rows carry ids derived from the run and chunk (``runId`` of the chunk
is ``uuid5(run, chunk)``) or are addressed by alternate key, so the second run recognises what
the first wrote (a duplicate key is reconciled, an upsert writes the same row again): no row is
lost, none is doubled. A chunk is marked done in Redis only once wholly written, and a chunk done
is never run again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
from celery import Celery

from d365_components.errors import ConnectionConfigError, D365Error
from d365_components.runtime import invoke, open_connection

__all__ = ["ACTIONS", "BulkRun", "app", "run_bulk", "start_run", "write_chunk"]

#: what ``--action`` names, and the action that does it
ACTIONS = {"create": "dynamics365.bulk_create", "upsert": "dynamics365.bulk_upsert"}
DEFAULT_URL = "redis://127.0.0.1:6379/0"
_PREFIX = "d365:run:"


def redis_url() -> str:
    return os.environ.get("D365_SCALE_REDIS_URL", DEFAULT_URL)


def make_app(url: str) -> Celery:
    """The Celery app: late acks and re-queue on a lost worker (a chunk is never dropped)."""
    visibility = float(os.environ.get("D365_SCALE_VISIBILITY_TIMEOUT", "300"))
    celery = Celery("d365_components.scale", broker=url, backend=url)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        # a message taken by a worker that died is delivered again after this many seconds (the
        # workers look for such messages every few seconds)
        broker_transport_options={"visibility_timeout": visibility, "unacked_restore_throttle": 1,
                                  "unacked_restore_interval": max(1, min(10, int(visibility / 3)))},
        worker_hijack_root_logger=False,
    )
    return celery


app = make_app(redis_url())


# -- the worker side ----------------------------------------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None
_CONNECTIONS: dict[str, Any] = {}
_REDIS: dict[str, redis.Redis] = {}


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop per worker process: its connections (pools, tokens) live on it."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def _redis(url: str) -> redis.Redis:
    client = _REDIS.get(url)
    if client is None:
        client = _REDIS[url] = redis.Redis.from_url(url)
    return client


def _connection(spec: dict[str, Any]) -> Any:
    """The worker's connection for ``spec`` (kept: one token per app user, one pool per process)."""
    name = json.dumps(spec, sort_keys=True)
    conn = _CONNECTIONS.get(name)
    if conn is None:
        conn = _CONNECTIONS[name] = open_connection(spec)
    return conn


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@app.task(name="d365.bulk_chunk", acks_late=True, reject_on_worker_lost=True)
def write_chunk(run_id: str, chunk: int) -> dict[str, Any]:
    """Write chunk ``chunk`` of run ``run_id`` (its rows and settings are in Redis)."""
    store = _redis(redis_url())
    key = _PREFIX + run_id
    if store.sismember(key + ":done", str(chunk)):
        return {"chunk": chunk, "skipped": True}
    raw_spec, raw_rows = store.get(key), store.get(f"{key}:chunk:{chunk}")
    if raw_spec is None or raw_rows is None:
        raise ValueError(f"run {run_id} has no chunk {chunk} in Redis (expired or removed)")
    spec, rows = json.loads(_text(raw_spec)), json.loads(_text(raw_rows))
    pool = spec["connections"]
    connection = _connection(pool[chunk % len(pool)])
    inputs: dict[str, Any] = {
        "entityType": spec["table"], "rows": rows, "chunkSize": spec["requestSize"],
        "maxConcurrency": spec["concurrency"], "runId": str(uuid.uuid5(uuid.UUID(run_id), str(chunk))),
        "continueOnError": spec["continueOnError"],
    }
    if spec["action"] == ACTIONS["upsert"]:
        inputs["alternateKeyColumns"] = spec["keys"]
    try:
        output = _loop().run_until_complete(invoke(spec["action"], inputs, connection))
    except D365Error as exc:  # the chunk is left undone: running the run again retries it
        summary = {"chunk": chunk, "written": 0, "failed": 0, "notWritten": len(rows), "reconciled": 0,
                   "retries": 0, "errors": [{"message": str(exc)}]}
        _record(store, key, chunk, summary, done=False)
        return summary
    summary = {name: output[name] for name in ("written", "failed", "notWritten", "reconciled", "retries")}
    summary["chunk"] = chunk
    summary["errors"] = [r["error"] for r in output["results"] if r.get("error")][:5]
    _record(store, key, chunk, summary, done=output["nextChunk"] is None)
    return summary


def _record(store: redis.Redis, key: str, chunk: int, summary: dict[str, Any], *, done: bool) -> None:
    """Keep a chunk's outcome, unless a second delivery of it (its first worker was presumed
    dead) has already finished it: a done chunk's outcome is final."""
    if store.sismember(key + ":done", str(chunk)):
        return
    store.hset(key + ":results", str(chunk), json.dumps(summary))
    if done:
        store.sadd(key + ":done", str(chunk))


# -- the driver side ----------------------------------------------------------------------------


class BulkRun:
    """A run sent to the workers: its id, its chunks, and what Redis says of them."""

    def __init__(self, store: redis.Redis, run_id: str, total: int, chunks: int) -> None:
        self.store, self.run_id, self.total, self.chunks = store, run_id, total, chunks
        self.key = _PREFIX + run_id

    def results(self) -> dict[int, dict[str, Any]]:
        raw = self.store.hgetall(self.key + ":results")
        return {int(_text(k)): json.loads(_text(v)) for k, v in raw.items()}

    def done(self) -> int:
        return int(self.store.scard(self.key + ":done"))

    def finished(self) -> int:
        """Chunks that need nothing more: done, or stopped with rows refused or not written."""
        done = {int(_text(c)) for c in self.store.smembers(self.key + ":done")}
        stopped = {c for c, r in self.results().items() if r["failed"] or r["notWritten"]}
        return len(done | stopped)

    def summary(self, seconds: float) -> dict[str, Any]:
        results = self.results()
        totals = {name: sum(r[name] for r in results.values()) for name in ("written", "failed", "reconciled", "retries")}
        done = self.done()
        return {"runId": self.run_id, "total": self.total, "chunks": self.chunks, "chunksDone": done,
                **totals, "notWritten": self.total - totals["written"] - totals["failed"],
                "seconds": round(seconds, 3), "rowsPerSecond": round(totals["written"] / seconds, 1) if seconds else None,
                "errors": [e for r in results.values() for e in r["errors"]][:10]}


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def start_run(
    connections: list[dict[str, Any]],
    rows: Iterable[dict[str, Any]],
    *,
    table: str,
    action: str = "upsert",
    alternate_key_columns: Iterable[str] = (),
    chunk_size: int = 500,
    request_size: int = 100,
    concurrency: int = 4,
    continue_on_error: bool = False,
    run_id: str | None = None,
    url: str | None = None,
) -> BulkRun:
    """Put the run in Redis and send one task per chunk not done yet (a known ``run_id`` resumes)."""
    if action not in ACTIONS:
        raise ConnectionConfigError(f"action: must be one of {', '.join(ACTIONS)}")
    if not connections:
        raise ConnectionConfigError("connections: give at least one connection")
    url = url or redis_url()
    pool = [_shared(spec, url) for spec in connections]
    for spec in pool:
        open_connection(spec)  # every connection is checked before any chunk is sent
    run_id = str(uuid.UUID(run_id)) if run_id else str(uuid.uuid4())
    store = _redis(url)
    key = _PREFIX + run_id
    spec = {"action": ACTIONS[action], "table": table, "keys": list(alternate_key_columns), "connections": pool,
            "requestSize": request_size, "concurrency": concurrency, "continueOnError": continue_on_error}
    store.set(key, json.dumps(spec))
    total = chunks = 0
    done = {int(_text(c)) for c in store.smembers(key + ":done")}
    for index, batch in enumerate(_chunks(rows, chunk_size)):
        total += len(batch)
        chunks += 1
        if index in done:
            continue
        store.set(f"{key}:chunk:{index}", json.dumps(batch, default=str))
        write_chunk.apply_async((run_id, index))
    return BulkRun(store, run_id, total, chunks)


def _shared(spec: dict[str, Any], url: str) -> dict[str, Any]:
    """The connection sharing its budget and tokens on the run's Redis (unless it names its own)."""
    inputs = dict(spec.get("inputs", {}))
    inputs.setdefault("sharedStateUrl", url)
    return {**spec, "inputs": inputs}


def run_bulk(
    connections: list[dict[str, Any]],
    rows: Iterable[dict[str, Any]],
    *,
    table: str,
    progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Write ``rows`` through the workers and wait for the run; returns its summary.

    ``options`` are those of :func:`start_run` (action, alternate_key_columns, chunk_size...).
    Raises :class:`TimeoutError` when ``timeout`` passes first (the run goes on; run again with
    its ``run_id`` to wait for it or finish it).
    """
    started = time.monotonic()
    run = start_run(connections, rows, table=table, **options)
    deadline = None if timeout is None else started + timeout
    while True:
        if progress is not None:
            progress(sum(r["written"] + r["failed"] for r in run.results().values()), run.total)
        if run.finished() >= run.chunks:
            return run.summary(time.monotonic() - started)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run.run_id}: {run.done()} of {run.chunks} chunks done")
        time.sleep(0.05)

