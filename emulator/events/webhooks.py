"""Webhooks out (reference §12): the emulator posts a RemoteExecutionContext to registered endpoints.

Registration is Dataverse's own data: a `serviceendpoint` row (contract 8 = webhook, `url`,
`authtype` 4 WebhookKey -> `?code=`, 5 HttpHeader, 6 HttpQueryString, `authvalue`), an enabled
`sdkmessageprocessingstep` binding it to a message (Create, Update, Delete) and, through its
`sdkmessagefilterid`, a table (no filter: every table), and optional
`sdkmessageprocessingstepimage` rows (pre/post images). emulator/events/webhook_tables.py adds the
image table and `asyncoperation` (system jobs) to the schema.

A store listener turns each committed write into deliveries for the matching steps (`filteringattributes`
skip Updates that changed none of them). Deliveries run on a worker thread with its own event
loop and httpx client: an HTTP POST with the x-ms-dynamics-* headers, one retry on 502/503/504, a
timeout, and a body trimmed (and flagged) above 256 KB.

* Asynchronous steps (mode 1) are delivered off the request path; each delivery becomes an
  `asyncoperation` row (30 Succeeded unless `asyncautodelete`, 31 Failed with the error).
  `await app.state.webhooks.drain()` waits for them.
* Synchronous steps (mode 0) are delivered before the Web API answers (the middleware part of
  this class). If one fails, the request's writes are undone (best effort: compensating writes,
  so versions move on) and the caller gets `webhook_sync_error` instead of the response.

Writes done outside a Web API request (e.g. directly on the store) deliver synchronous steps like
asynchronous ones. Every step is delivered after the write is committed, whatever its stage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from d365_components.emulator import defaults
from d365_components.emulator.events import remote_context
from d365_components.emulator.events.webhook_auth import tls_verify, with_auth, without_secrets
from d365_components.emulator.events.webhook_tables import add_tables
from d365_components.emulator.limits.protection import user_key
from d365_components.emulator.protocol.asgi import buffered
from d365_components.emulator.protocol.errors import error_body

log = logging.getLogger(__name__)

MESSAGES = ("Create", "Update", "Delete")
REGISTRATION = frozenset({"serviceendpoint", "sdkmessageprocessingstep", "sdkmessageprocessingstepimage",
                          "sdkmessage", "sdkmessagefilter"})
SUCCEEDED, FAILED = 30, 31
_STEPS_SQL = """
SELECT s.sdkmessageprocessingstepid AS id, s.name AS name, s.mode AS mode, s.stage AS stage,
       s.filteringattributes AS filteringattributes, s.asyncautodelete AS asyncautodelete,
       e.serviceendpointid AS endpoint_id, e.name AS endpoint_name, e.url AS url,
       e.authtype AS authtype, e.authvalue AS authvalue
FROM sdkmessageprocessingstep AS s
JOIN sdkmessage AS m ON m.sdkmessageid = s.sdkmessageid
JOIN serviceendpoint AS e ON e.serviceendpointid = s.eventhandler
LEFT JOIN sdkmessagefilter AS f ON f.sdkmessagefilterid = s.sdkmessagefilterid
WHERE m.name = ? AND (s.sdkmessagefilterid IS NULL OR f.primaryobjecttypecode = ?)
  AND coalesce(s.statecode, 0) = 0 AND e.contract = 8
ORDER BY coalesce(s.stage, 40), coalesce(s.rank, 1)
"""


class WebhookSettings(Protocol):
    """The webhook settings of `EmulatorFeatures` (emulator/extensions.py)."""

    webhook_timeout: float
    webhook_verify: bool | str
    webhook_max_payload: int
    webhook_retry_statuses: tuple[int, ...]
    webhook_sync_error: tuple[int, str, str]


@dataclass
class _Request:
    """What one Web API request collects: its writes (to undo) and its synchronous deliveries.
    Who sent it and its ids are worked out only when a step needs them (most writes have none)."""

    scope: Scope
    writes: list[tuple[Any, ...]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    holding: bool = False          # the response waits for synchronous deliveries
    undoing: bool = False

    @functools.cached_property
    def oid(self) -> str:
        return user_key(self.scope)

    @functools.cached_property
    def request_id(self) -> str:
        return str(uuid.uuid4())

    @functools.cached_property
    def correlation_id(self) -> str:
        for name, value in self.scope.get("headers", ()):
            if name.lower() == b"x-ms-correlation-request-id" and value:
                text: str = value.decode("latin-1")
                return text
        return str(uuid.uuid4())


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("d365_webhook_request", default=None)


@dataclass
class Delivery:
    step: dict[str, Any] = field(repr=False)            # holds the endpoint's authvalue
    message: str
    table: str
    payload: bytes = field(repr=False)
    trimmed: bool
    headers: dict[str, str] = field(repr=False)
    operation_id: str
    correlation_id: str
    primary_id: str


@dataclass
class Outcome:
    """What happened to one delivery (kept in `Webhooks.log`)."""

    step_id: str
    url: str
    message: str
    table: str
    status: int | None
    attempts: int
    error: str | None
    trimmed: bool
    mode: int

    @property
    def ok(self) -> bool:
        return self.error is None


class Webhooks:
    """Store listener + ASGI middleware + delivery worker; `app.state.webhooks` is this object."""

    def __init__(self, app: ASGIApp, state: State, settings: WebhookSettings) -> None:
        self.app = app
        self.state = state
        self.store = state.store
        self.timeout = settings.webhook_timeout
        self.max_payload = settings.webhook_max_payload
        self.retry_statuses = tuple(settings.webhook_retry_statuses)
        self.sync_error = settings.webhook_sync_error
        self.verify = tls_verify(settings.webhook_verify)
        self.log: deque[Outcome] = deque(maxlen=1000)
        self._steps: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._has_sync: bool | None = None
        self._users: dict[str, dict[str, Any]] = {}
        self._pending: set[concurrent.futures.Future[Outcome]] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        add_tables(self.store)
        self.store.listeners.append(self.on_change)

    # ---- the store listener ------------------------------------------------------------------

    def on_change(self, message: str, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if table in REGISTRATION:
            self._steps.clear()
            self._has_sync = None
        request = _current.get()
        if request is not None and request.undoing:
            return
        if message not in MESSAGES:
            return
        holding = request is not None and request.holding
        if holding:
            assert request is not None
            request.writes.append((message, table, before, after))
        for step in self.steps_for(message, table):
            if message == "Update" and not passes_filter(step, before, after):
                continue
            delivery = self._prepare(step, message, table, before, after, request)
            if step["mode"] == 0 and holding:
                assert request is not None
                request.deliveries.append(delivery)
            else:
                self.submit(delivery)

    def steps_for(self, message: str, table: str) -> list[dict[str, Any]]:
        key = (message, table)
        steps = self._steps.get(key)
        if steps is None:
            steps = self.store.execute(_STEPS_SQL, (message, table)) if "sdkmessage" in self.store.schema.tables else []
            for step in steps:
                step["mode"] = step["mode"] or 0
                step["images"] = self.store.select(
                    "sdkmessageprocessingstepimage", "t0.sdkmessageprocessingstepid = ?", [step["id"]],
                    columns="t0.entityalias AS entityalias, t0.name AS name, t0.imagetype AS imagetype, "
                            "t0.attributes AS attributes")
            self._steps[key] = steps
        return steps

    def has_sync_steps(self) -> bool:
        if self._has_sync is None:
            self._has_sync = bool(self.store.execute(
                "SELECT 1 FROM sdkmessageprocessingstep WHERE mode = 0 AND coalesce(statecode, 0) = 0 LIMIT 1"))
        return self._has_sync

    def _prepare(self, step: dict[str, Any], message: str, table_name: str, before: dict[str, Any] | None, after: dict[str, Any] | None, request: _Request | None) -> Delivery:
        table = self.store.schema.tables[table_name]
        row = after if after is not None else before
        assert row is not None, "a write has a before or an after image"
        acting = (after or {}).get("modifiedby") if message != "Delete" else None
        oid = request.oid if request else None
        user = self._user(acting) if acting else self._user_by_oid(oid)
        correlation_id = request.correlation_id if request else str(uuid.uuid4())
        operation_id = str(uuid.uuid4()) if step["mode"] == 1 else "00000000-0000-0000-0000-000000000000"
        org = self._organization()
        context = remote_context.build(
            message=message, table=table, before=before, after=after, mode=step["mode"],
            stage=step["stage"] or 40, step_id=step["id"], images=step["images"], user=user, initiating_user=user,
            organization_id=org["id"], organization_name=org["name"], correlation_id=correlation_id,
            operation_id=operation_id, request_id=request.request_id if request else None,
            created_on=datetime.now(UTC))
        payload = remote_context.dumps(context)
        trimmed = len(payload) > self.max_payload
        if trimmed:
            payload = remote_context.dumps(remote_context.trim(context))
        headers = {
            "Content-Type": "application/json",
            "x-ms-dynamics-organization": urlsplit(self.state.org_url).netloc,
            "x-ms-dynamics-entity-name": table_name,
            "x-ms-dynamics-request-name": message,
            "x-ms-correlation-request-id": correlation_id,
            "x-request-id": str(uuid.uuid4()),
        }
        if trimmed:
            headers["x-ms-dynamics-msg-size-exceeded"] = "true"
        return Delivery(step, message, table_name, payload, trimmed, headers, operation_id, correlation_id,
                        row[table.primary_id])

    def _user(self, systemuserid: str) -> dict[str, Any]:
        hit = self._users.get(systemuserid)
        if hit is None:
            rows = self.store.select("systemuser", "t0.systemuserid = ?", [systemuserid], limit=1,
                                     columns="t0.businessunitid AS bu, t0.azureactivedirectoryobjectid AS oid")
            row = rows[0] if rows else {}
            hit = self._users[systemuserid] = {"id": systemuserid, "oid": row.get("oid"),
                                               "business_unit": row.get("bu") or defaults.BUSINESS_UNIT_ID}
        return hit

    def _user_by_oid(self, oid: str | None) -> dict[str, Any]:
        rows = self.store.select("systemuser", "t0.azureactivedirectoryobjectid = ?", [oid.lower()], limit=1,
                                 columns="t0.systemuserid AS id") if oid else []
        return self._user(rows[0]["id"] if rows else defaults.APP_USER_ID)

    def _organization(self) -> dict[str, Any]:
        rows = self.store.select("organization", limit=1, columns="t0.organizationid AS id, t0.uniquename AS u, t0.name AS n")
        row = rows[0] if rows else {}
        return {"id": row.get("id") or defaults.ORGANIZATION_ID, "name": row.get("u") or row.get("n") or "emulatedorg"}

    # ---- the worker ----------------------------------------------------------------------------

    def submit(self, delivery: Delivery) -> concurrent.futures.Future[Outcome]:
        """Deliver on the worker thread; the future gives the `Outcome`."""
        future = asyncio.run_coroutine_threadsafe(self._run(delivery), self._worker())
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _worker(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="emulator-webhooks", daemon=True)
                self._thread.start()
            return self._loop

    async def _run(self, delivery: Delivery) -> Outcome:
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self.verify, follow_redirects=False)
        outcome = await self._post(delivery)
        self.log.append(outcome)
        if delivery.step["mode"] == 1:
            try:
                self._record_job(delivery, outcome)
            except Exception:
                log.exception("could not record the system job of a webhook delivery")
        return outcome

    async def _post(self, d: Delivery) -> Outcome:
        step = d.step
        url, headers = step["url"] or "", dict(d.headers)
        status, error, attempts = None, None, 0
        try:
            url = with_auth(url, step["authtype"], step["authvalue"], headers)
            assert self._client is not None, "deliveries run on the started worker"
            for attempt in (1, 2):
                attempts = attempt
                response = await self._client.post(url, content=d.payload, headers=headers, timeout=self.timeout)
                status = response.status_code
                if 200 <= status < 300:
                    error = None
                    break
                error = f"The webhook answered HTTP {status}."
                if status not in self.retry_statuses:
                    break
        except httpx.TimeoutException:
            error = f"The webhook did not answer within {self.timeout:g} seconds."
        except (httpx.HTTPError, ValueError) as exc:
            error = f"The webhook could not be reached: {type(exc).__name__}: {without_secrets(str(exc), step)}"
        return Outcome(step["id"], without_secrets(url.split("?")[0], step), d.message, d.table, status, max(attempts, 1),
                       error, d.trimmed, step["mode"])

    def _record_job(self, d: Delivery, outcome: Outcome) -> None:
        if outcome.ok and d.step["asyncautodelete"]:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        values = {
            "asyncoperationid": d.operation_id, "name": d.step["name"] or f"{d.message} of {d.table}",
            "operationtype": 1, "owningextensionid": d.step["id"], "correlationid": d.correlation_id,
            "primaryentitytype": d.table, "messagename": d.message, "regardingobjectid": d.primary_id,
            "depth": 1, "retrycount": outcome.attempts - 1, "startedon": now, "completedon": now,
            "statecode": 3, "statuscode": SUCCEEDED if outcome.ok else FAILED,
        }
        if not outcome.ok:
            values.update(errorcode=-2147204735, message=outcome.error, friendlymessage=outcome.error)
        token = _current.set(None)
        try:
            self.store.insert("asyncoperation", values, user=defaults.APP_USER_ID)
        finally:
            _current.reset(token)

    async def drain(self, timeout: float = 30.0) -> list[Outcome]:
        """Wait until every delivery handed to the worker so far has finished."""
        with self._lock:
            pending = list(self._pending)
        if pending:
            await asyncio.wait([asyncio.wrap_future(f) for f in pending], timeout=timeout)
        return list(self.log)

    def wait(self, timeout: float = 30.0) -> list[Outcome]:
        """`drain` for synchronous callers."""
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending, timeout=timeout)
        return list(self.log)

    def close(self) -> None:
        """Stop the worker (pending deliveries are dropped) and stop listening to the store."""
        if self.on_change in self.store.listeners:
            self.store.listeners.remove(self.on_change)
        loop, thread, client = self._loop, self._thread, self._client
        self._loop = self._thread = self._client = None
        if loop is None:
            return
        if client is not None:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)

    # ---- the middleware: synchronous steps before the response ---------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "GET" or not scope["path"].startswith("/api/data/"):
            return await self.app(scope, receive, send)
        request = _Request(scope)
        token = _current.set(request)
        try:
            if not self.has_sync_steps():
                return await self.app(scope, receive, send)
            request.holding = True
            status, headers, body = await buffered(self.app, scope, receive)
            for delivery in request.deliveries:
                outcome = await asyncio.wrap_future(self.submit(delivery))
                if not outcome.ok:
                    self._undo(request)
                    status, headers, body = self._sync_failure(delivery, outcome)
                    break
        finally:
            _current.reset(token)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _sync_failure(self, delivery: Delivery, outcome: Outcome) -> tuple[int, list[Any], bytes]:
        status, code, message = self.sync_error
        endpoint = delivery.step["endpoint_name"] or outcome.url
        body = error_body(code, message.format(endpoint=endpoint, status=outcome.status or "no response"))
        headers = [(b"content-type", b"application/json; odata.metadata=minimal"), (b"odata-version", b"4.0"),
                   (b"content-length", str(len(body)).encode())]
        return status, headers, body

    def _undo(self, request: _Request) -> None:
        """Compensate the request's writes, newest first, without firing webhooks again."""
        request.undoing = True
        store = self.store
        with store.transaction():
            for message, table_name, before, after in reversed(request.writes):
                table = store.schema.tables[table_name]
                pk = table.primary_id
                try:
                    if message == "Create":
                        store.delete(table_name, after[pk])
                    elif message == "Update":
                        restore = {c: before.get(c) for c in remote_context.changed_columns(table, before, after)}
                        for col in list(restore):
                            if table.columns[col].type_column:
                                restore[table.columns[col].type_column] = before.get(table.columns[col].type_column)
                        store.update(table_name, after[pk], restore, user=before.get("modifiedby") or defaults.APP_USER_ID)
                    elif message == "Delete":
                        store.insert(table_name, {k: v for k, v in before.items() if v is not None},
                                     user=before.get("createdby") or defaults.APP_USER_ID)
                except Exception:
                    log.exception("could not undo %s of %s after a failed synchronous webhook", message, table_name)


def passes_filter(step: dict[str, Any], before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    wanted = {a.strip().lower() for a in (step.get("filteringattributes") or "").split(",") if a.strip()}
    if not wanted or before is None or after is None:
        return True
    return any(before.get(a) != after.get(a) for a in wanted)
