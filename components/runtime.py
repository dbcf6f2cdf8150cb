"""Running definitions: validate raw inputs, open the connection, call the definition, return JSON.

``invoke`` is the async core. Sync hosts and the CLI use :func:`invoke_sync` and friends, which
run the same coroutines on one long-lived event loop in a background thread (a "portal"), so a
connection's pooled client keeps living on the loop it was created on.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from d365_components.definitions import (
    Action,
    Connection,
    Context,
    DataSource,
    Definition,
    PollingTrigger,
    PollResult,
    Trigger,
    WebhookRequest,
    WebhookResponse,
    WebhookTrigger,
)
from d365_components.errors import (
    ConnectionConfigError,
    D365Error,
    FieldError,
    InputValidationError,
    WebhookRejected,
)
from d365_components.inputs import validate_inputs
from d365_components.redaction import get_logger
from d365_components.registry import Registry, get_registry

__all__ = [
    "ConnectionSpec",
    "deploy_webhook",
    "fetch_choices",
    "handle_webhook",
    "invoke",
    "invoke_sync",
    "open_connection",
    "parse_inputs",
    "poll",
    "remove_webhook",
    "run_sync",
    "to_json",
    "verify_webhook",
]

T = TypeVar("T")
#: a connection, or its config: ``{"key": "dynamics365.oauth2_client_credentials", "inputs": {...}}``
ConnectionSpec = Connection | dict[str, Any] | None

log = get_logger("d365_components.runtime")


def parse_inputs(definition: type[Definition], raw: dict[str, Any] | None) -> Any:
    """Validate ``raw`` against the definition's published schema; every bad field is reported."""
    return validate_inputs(definition.input_schema(), definition.Inputs, raw, subject=f"inputs of {definition.key}")


def open_connection(spec: ConnectionSpec, registry: Registry | None = None) -> Connection | None:
    """A Connection from a config dict (validated like any inputs), or ``spec`` itself."""
    if spec is None or isinstance(spec, Connection):
        return spec
    if not isinstance(spec, dict) or "key" not in spec:
        raise InputValidationError(
            [FieldError("/key", "a connection needs the key of its type, e.g. dynamics365.oauth2_client_credentials")],
            subject="connection",
        )
    registry = registry or get_registry()
    definition = registry.get(spec["key"], "connections")
    inputs = validate_inputs(
        definition.input_schema(), definition.Inputs, spec.get("inputs", {}), subject=f"connection {definition.key}"
    )
    return cast(type[Connection], definition)(inputs)


def to_json(value: Any) -> Any:
    """Output as plain JSON data: a pydantic model is dumped by alias; anything else is returned as
    it is, without a walk (outputs are a model or already JSON: a fetch-all result of a million
    rows is not copied again). Definitions that build a dict around models dump them themselves."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value


async def _with_context(
    definition: type[Definition],
    raw_inputs: dict[str, Any] | None,
    connection: ConnectionSpec,
    registry: Registry | None,
    call: Callable[[Any, Context, Any], Awaitable[T]],
    *,
    progress: Callable[[int, int | None], None] | None = None,
    state: dict[str, Any] | None = None,
) -> T:
    inputs = parse_inputs(definition, raw_inputs)  # before any connection or request
    conn = open_connection(connection, registry)
    owned = conn is not None and not isinstance(connection, Connection)
    try:
        ctx = Context(
            client=conn.open_client() if conn is not None else None,
            connection=conn,
            log=get_logger(f"d365_components.run.{definition.key}"),
            progress=progress,
            state=state if state is not None else {},
        )
        return await call(definition(), ctx, inputs)
    finally:
        if owned and conn is not None:
            await conn.aclose()


def _require_connection(key: str, ctx: Context) -> None:
    if ctx.connection is None:
        raise ConnectionConfigError(
            f"{key} needs a connection to Dynamics 365 (CLI: --connection @file; see `d365 describe "
            "dynamics365.oauth2_client_credentials`)."
        )


async def invoke(
    key: str,
    inputs: dict[str, Any] | None = None,
    connection: ConnectionSpec = None,
    *,
    registry: Registry | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Any:
    """Run the action ``key`` and return its JSON output.

    Inputs are validated against the published schema first; on any problem an
    :class:`InputValidationError` lists every field and no request is sent.
    """
    definition = (registry or get_registry()).get(key, "actions")

    async def call(action: Action, ctx: Context, typed: Any) -> Any:
        if action.needs_connection:
            _require_connection(key, ctx)
        log.debug("invoke %s", key)
        return to_json(await action.perform(ctx, typed))

    return await _with_context(definition, inputs, connection, registry, call, progress=progress)


async def fetch_choices(
    key: str, inputs: dict[str, Any] | None = None, connection: ConnectionSpec = None, *, registry: Registry | None = None
) -> list[dict[str, Any]]:
    """Run the data source ``key``: the ``[{label, value}]`` choices of a dropdown."""
    definition = (registry or get_registry()).get(key, "data_sources")

    async def call(source: DataSource, ctx: Context, typed: Any) -> Any:
        if source.needs_connection:
            _require_connection(key, ctx)
        return to_json(await source.fetch(ctx, typed))

    return await _with_context(definition, inputs, connection, registry, call)


def _trigger(key: str, registry: Registry | None, mode: type[T]) -> type[T]:
    definition = cast(type[Trigger], (registry or get_registry()).get(key, "triggers"))
    if not issubclass(definition, mode):
        raise D365Error(f"Trigger '{key}' is a {definition.mode} trigger.")
    return definition


async def handle_webhook(
    key: str, inputs: dict[str, Any] | None, request: WebhookRequest, connection: ConnectionSpec = None,
    *, registry: Registry | None = None, state: dict[str, Any] | None = None,
) -> WebhookResponse:
    """Hand one incoming HTTP request to a webhook trigger; returns the answer and its events."""
    definition = _trigger(key, registry, WebhookTrigger)

    async def call(trigger: WebhookTrigger, ctx: Context, typed: Any) -> WebhookResponse:
        try:
            return await trigger.handle(ctx, typed, request)
        except WebhookRejected as exc:  # a refusal is an answer, not a host failure
            return WebhookResponse(status=exc.status, body={"error": str(exc)})

    return await _with_context(definition, inputs, connection, registry, call, state=state)


async def deploy_webhook(
    key: str, inputs: dict[str, Any] | None, webhook_url: str, connection: ConnectionSpec,
    *, registry: Registry | None = None,
) -> dict[str, Any]:
    """Register a webhook trigger in Dataverse; keep the returned state for :func:`remove_webhook`."""
    definition = _trigger(key, registry, WebhookTrigger)

    async def call(trigger: WebhookTrigger, ctx: Context, typed: Any) -> dict[str, Any]:
        state: dict[str, Any] = to_json(await trigger.deploy(ctx, typed, webhook_url))
        return state

    return await _with_context(definition, inputs, connection, registry, call)


async def remove_webhook(
    key: str, inputs: dict[str, Any] | None, state: dict[str, Any], connection: ConnectionSpec,
    *, registry: Registry | None = None,
) -> None:
    """Remove what :func:`deploy_webhook` registered."""
    definition = _trigger(key, registry, WebhookTrigger)

    async def call(trigger: WebhookTrigger, ctx: Context, typed: Any) -> None:
        await trigger.remove(ctx, typed, state)

    await _with_context(definition, inputs, connection, registry, call)


async def verify_webhook(
    key: str, inputs: dict[str, Any] | None, webhook_url: str, connection: ConnectionSpec,
    *, registry: Registry | None = None,
) -> dict[str, Any]:
    """Whether Dataverse holds exactly the registration :func:`deploy_webhook` would make."""
    definition = _trigger(key, registry, WebhookTrigger)

    async def call(trigger: WebhookTrigger, ctx: Context, typed: Any) -> dict[str, Any]:
        report: dict[str, Any] = to_json(await trigger.verify(ctx, typed, webhook_url))
        return report

    return await _with_context(definition, inputs, connection, registry, call)


async def poll(
    key: str, inputs: dict[str, Any] | None, cursor: Any, connection: ConnectionSpec,
    *, registry: Registry | None = None,
) -> PollResult:
    """One run of a polling trigger: events since ``cursor`` and the next cursor to persist."""
    definition = _trigger(key, registry, PollingTrigger)

    async def call(trigger: PollingTrigger, ctx: Context, typed: Any) -> PollResult:
        result = await trigger.poll(ctx, typed, cursor)
        json.dumps(result.cursor)  # the host must be able to persist it
        return result

    return await _with_context(definition, inputs, connection, registry, call)


class _Portal:
    """One event loop in a daemon thread, shared by every sync call of the process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="d365-portal", daemon=True).start()
                self._loop = loop
            return self._loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure()).result()


_portal = _Portal()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code on the shared portal loop and wait for its result."""
    return _portal.call(coro)


def invoke_sync(key: str, inputs: dict[str, Any] | None = None, connection: ConnectionSpec = None, **kwargs: Any) -> Any:
    """:func:`invoke` for sync hosts."""
    return run_sync(invoke(key, inputs, connection, **kwargs))
