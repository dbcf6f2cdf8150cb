"""A small ASGI host for webhook triggers: for local runs (``d365 serve-trigger``) and end-to-end tests.

Each hosted trigger owns a path. A request is read (never more than the trigger's
``maxBodyBytes``), handed to :func:`d365_components.runtime.handle_webhook`, and every event
it yields goes to the trigger's ``on_event`` callback before Dataverse gets its answer — so a
200 means the flow has the event. A callback that fails answers 503, which Dataverse retries once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from d365_components.definitions import DEFAULT_MAX_BODY, Connection, WebhookRequest
from d365_components.redaction import get_logger, redact
from d365_components.registry import get_registry
from d365_components.runtime import (
    ConnectionSpec,
    deploy_webhook,
    handle_webhook,
    open_connection,
    parse_inputs,
    remove_webhook,
)

__all__ = ["HostedTrigger", "create_trigger_app", "event_line", "serve"]

log = get_logger("d365_components.webhook_host")
EventCallback = Callable[[dict[str, Any]], Awaitable[None] | None]
#: every method reaches the trigger, which answers 405 itself to what it does not take
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class HostedTrigger:
    """One webhook trigger served at ``path``; ``on_event`` gets each event it yields."""

    path: str
    key: str
    inputs: dict[str, Any]
    connection: ConnectionSpec = None
    on_event: EventCallback | None = None
    #: state a host keeps for the deployed flow (handed to the trigger as ``ctx.state``)
    state: dict[str, Any] = field(default_factory=dict)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past ``limit`` (a huge upload is never buffered)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _log_failure(message: str, *args: Any) -> None:
    """``log.exception`` with the traceback redacted too: logging filters see only the message,
    and an exception's text may quote a URL with its key. Never raises, and lone surrogates in
    the text are escaped (a stderr handler could not write them): logging a failure must not
    turn into another one."""
    try:
        text = _printable(redact(traceback.format_exc()))
        log.error(message + "\n%s", *(_printable(str(a)) for a in args), text)
    except Exception:  # the answer to Dataverse matters more than the log line
        pass


def _printable(text: str) -> str:
    """``text`` with lone surrogates (which no encoder takes) as ``\\udxxx`` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _endpoint(hosted: HostedTrigger, connection: Connection | None, limit: int) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await _read_body(request, limit)
        except ClientDisconnect:  # the caller left mid-body: nobody to answer, nothing to report
            return Response(status_code=400)
        if body is None:
            return JSONResponse({"error": f"The body is larger than {limit} bytes."}, status_code=413)
        incoming = WebhookRequest(
            method=request.method,
            headers=dict(request.headers),
            query=dict(request.query_params),
            body=body,
        )
        try:  # a trigger's refusal (WebhookRejected) comes back as an answer from the runtime
            answer = await handle_webhook(hosted.key, hosted.inputs, incoming, connection, state=hosted.state)
        except Exception:
            _log_failure("trigger %s failed on a request", hosted.key)
            return JSONResponse({"error": "The trigger failed on this request."}, status_code=500)
        for event in answer.events:
            try:
                if hosted.on_event is not None:
                    result = hosted.on_event(event)
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                _log_failure("the flow of %s could not take an event", hosted.key)
                return JSONResponse({"error": "The flow could not take the event; try again."}, status_code=503)
        if answer.body is None:
            return Response(status_code=answer.status, headers=answer.headers)
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    return endpoint


def create_trigger_app(triggers: list[HostedTrigger]) -> Starlette:
    """An ASGI app serving each trigger at its path.

    Inputs are validated here, so a bad configuration fails before serving (the runtime checks
    them again on each request, as for any invocation). Connections are opened once here and
    closed when the app stops.
    """
    registry = get_registry()
    routes, opened = [], []
    for hosted in triggers:
        definition = registry.get(hosted.key, "triggers")
        typed = parse_inputs(definition, hosted.inputs)
        limit = getattr(typed, "max_body_bytes", DEFAULT_MAX_BODY)
        connection = open_connection(hosted.connection)
        if connection is not None and connection is not hosted.connection:
            opened.append(connection)
        routes.append(Route(hosted.path, _endpoint(hosted, connection, limit), methods=_ALL_METHODS))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for connection in opened:
                await connection.aclose()

    return Starlette(routes=routes, lifespan=lifespan)


def event_line(event: dict[str, Any], encoding: str | None) -> str:
    """``event`` as one line of JSON that ``encoding`` can write: readable text when it can,
    otherwise (lone surrogates such as ``"\\ud800"`` from a delivery, or a console that is not
    UTF-8) with ``\\uXXXX`` escapes, which read back as the same JSON."""
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(event, ensure_ascii=True, separators=(",", ":"))
    return text


def _print_event(event: dict[str, Any]) -> None:
    print(event_line(event, getattr(sys.stdout, "encoding", None)), flush=True)


def serve(
    key: str,
    inputs: dict[str, Any],
    connection: dict[str, Any] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    deploy: bool = False,
    public_url: str | None = None,
) -> None:
    """Serve one webhook trigger at ``/``, printing each event as one line of JSON on stdout.

    With ``deploy`` the webhook is registered in Dataverse (at ``public_url``, or
    ``http://host:port/``) once the server listens, and removed again on Ctrl-C.
    """
    import socket

    import uvicorn

    # Bind first: with port 0 the real port must be known before Dataverse is told where to call.
    listener = socket.create_server((host, port), reuse_port=False)
    port = listener.getsockname()[1]
    url = public_url or f"http://{host}:{port}/"
    app = create_trigger_app([HostedTrigger("/", key, inputs, connection, _print_event)])
    state: dict[str, Any] = {}
    try:
        if deploy:  # a refusal (bad table, no rights) surfaces here as one error, before serving
            state = asyncio.run(deploy_webhook(key, inputs, url, connection))
            print(f"Registered in Dataverse as '{state.get('name')}', calling {url}", file=sys.stderr, flush=True)
        print(f"Listening on http://{host}:{port}/ for {key} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[listener])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
            pass
    finally:
        listener.close()
        if deploy and state:
            asyncio.run(remove_webhook(key, inputs, state, connection))
            print("Registration removed.", file=sys.stderr, flush=True)
