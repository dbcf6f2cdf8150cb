"""The emulator's ASGI app: identity routes, `$batch`, and the Web API data plane.

`create_app(identity=..., org_url=..., db=..., seed=...)` builds the schema and store, seeds them,
and mounts:

* `identity.routes()` (OpenID discovery, authorize, token, keys);
* `POST /api/data/v9.x/$batch` -> `emulator.batch.handle_batch` (imported lazily);
* every other `/api/data/v9.{0,1,2}/...` request -> token check -> `dispatch`.

`app.state.dispatch(method, url, headers, body, *, caller)` runs one request through the same code
path as HTTP requests (routing, errors, headers) without re-checking the token: `$batch` calls it
per part, with the claims verified on the outer request. `app.state.store.transaction()` makes a
change set atomic. `app.state.store` and `app.state.org_url` are public.

A Web API request runs in a worker thread holding the store's lock for its whole run (requests
stay serial on the store, as they were on the event loop), under a SQL time limit of
`app.state.query_seconds` (storage.time_limit): the event loop stays free to accept, refuse and
answer other requests meanwhile.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from d365_components.emulator import defaults
from d365_components.emulator.identity.oauth import InvalidToken
from d365_components.emulator.identity.provider import IdentityProvider
from d365_components.emulator.messages import built_in
from d365_components.emulator.messages import registry as messages
from d365_components.emulator.metadata import csdl, entity_sets
from d365_components.emulator.protocol.errors import (
    NOT_A_MEMBER,
    QUERY_NOT_SUPPORTED,
    DataverseError,
    bad_request,
    method_not_allowed,
    segment_not_found,
    unexpected,
)
from d365_components.emulator.protocol.literals import split_path, split_segment
from d365_components.emulator.records import fetchxml, handler, rows, sql_query
from d365_components.emulator.request.context import JSON_TYPE, Ctx, Reply
from d365_components.emulator.storage.seed import profile_schema, seed_rows
from d365_components.emulator.storage.store import Store
from d365_components.emulator.storage.time_limit import QUERY_SECONDS, time_limit
from d365_components.emulator.web_api.batch import handle_batch

log = logging.getLogger(__name__)

VERSIONS = frozenset({"v9.0", "v9.1", "v9.2"})
METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
METADATA_SETS = frozenset({"EntityDefinitions", "RelationshipDefinitions", "GlobalOptionSetDefinitions",
                           "CreateEntities", "RetrieveMetadataChanges"})   # the metadata messages (metadata/)
_API_URL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^/]+)?/api/data/(v[^/?]+)/?([^?]*)(?:\?(.*))?$", re.S)


def create_app(*, identity: IdentityProvider, org_url: str, db: str = ":memory:", seed: str | None = "fresh") -> Starlette:
    schema = profile_schema(seed)
    store = Store(schema, db)
    if store.get("organization", defaults.ORGANIZATION_ID) is None:
        seed_rows(store, seed)
    built_in.prepare_store(store)

    async def batch(request: Request) -> Response:
        if request.path_params["version"] not in VERSIONS:
            return _reply_response(_error_reply(segment_not_found(request.path_params["version"])))
        return await handle_batch(request)

    web_api = _WebApi(identity, lambda: app_state)
    routes = [
        Route("/api/data/{version}/$batch", batch, methods=["POST"]),
        Route("/api/data/{version}/{path:path}", web_api, methods=METHODS),
        *identity.routes(),
    ]
    app = _EmulatorApp(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
    app_state = app.state
    app.web_api = web_api
    app.state.store = store
    app.state.schema = schema
    app.state.org_url = org_url.rstrip("/")
    app.state.identity = identity
    app.state.users = {}
    app.state.query_seconds = QUERY_SECONDS        # the SQL time limit of one request (settable)

    def dispatch(method: str, url: str, headers: dict[str, str], body: bytes, *, caller: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Run one inner request (e.g. a $batch part) exactly like an HTTP request, token already verified."""
        m = _API_URL.match(url)
        if m is None:
            return _reply_tuple(_error_reply(bad_request(f"The URL '{url}' is not a Web API URL.")))
        lower = {k.lower(): v for k, v in headers.items()}
        return _dispatch(app.state, method.upper(), m.group(1), unquote(m.group(2)), m.group(3) or "", lower,
                         body or b"", caller)

    app.state.dispatch = dispatch
    return app


_WEB_API_PATH = re.compile(r"/api/data/([^/]+)/(.*)", re.S)
_WEB_API_METHODS = frozenset(METHODS)


class _EmulatorApp(Starlette):
    """Starlette, except that Web API requests go straight to `_WebApi`: routing through
    Starlette's middleware and router cost about a tenth of a request's time over HTTPS.
    Everything else ($batch, identity, unknown paths, HEAD/OPTIONS) takes the usual way."""

    web_api: _WebApi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _WEB_API_METHODS and not scope.get("root_path"):
            m = _WEB_API_PATH.fullmatch(scope["path"])
            if m is not None and m.group(2) != "$batch":
                scope["app"] = self
                scope["path_params"] = {"version": m.group(1), "path": m.group(2)}
                await self.web_api(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _WebApi:
    """The raw ASGI endpoint of `/api/data/...`: the hot path, so no Request/Response objects."""

    def __init__(self, identity: IdentityProvider, state: Callable[[], State]) -> None:
        self.identity = identity
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        try:
            caller = self.identity.verify(headers.get("authorization"))
        except InvalidToken as exc:
            response = self.identity.unauthorized(exc)
            response.headers["OData-Version"] = "4.0"
            await response(scope, receive, send)
            return
        except Exception:
            log.exception("token verification failed unexpectedly")
            await _reply_response(_error_reply(unexpected()))(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        params = scope["path_params"]
        # in a worker thread: one slow request never holds up the event loop (and so the others)
        status, out, payload = await anyio.to_thread.run_sync(
            _dispatch, self.state(), scope["method"], params["version"], params["path"],
            scope.get("query_string", b"").decode("latin-1"), headers, body, caller)
        raw = [(k.lower().encode("latin-1"), _header_value(v)) for k, v in out.items()]
        raw.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})


async def _not_found(request: Request, exc: Exception) -> Response:
    segment = request.url.path.rstrip("/").rsplit("/", 1)[-1] or "/"
    return _reply_response(_error_reply(segment_not_found(segment)))


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return _reply_response(_error_reply(method_not_allowed(request.method)))


def _header_value(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:       # e.g. an alternate key with non-Latin text in OData-EntityId
        return quote(value, safe=":/?#[]@!$&'()*+,;=%").encode()


def _dispatch(state: State, method: str, version: str, path: str, raw_query: str, headers: dict[str, str],
              body: bytes, caller: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    try:
        if version not in VERSIONS:
            raise segment_not_found(version)
        user_id, on_behalf_of, business_unit = _effective_user(state, caller, headers)
        query = dict(parse_qsl(raw_query, keep_blank_values=True)) if raw_query else {}
        ctx = Ctx(state, method, f"{state.org_url}/api/data/{version}", path, raw_query, query, headers, body,
                  caller, user_id, on_behalf_of, business_unit)
        # one request at a time on the store, as when everything ran on the event loop: handlers
        # read then write without transactions of their own; the event loop stays free meanwhile
        with state.store.lock, time_limit(state.query_seconds):
            reply = route(ctx)
    except DataverseError as exc:
        reply = _error_reply(exc)
    except Exception:
        log.exception("unexpected error serving %s %s", method, path)
        reply = _error_reply(unexpected())
    return _reply_tuple(reply)


def _error_reply(exc: DataverseError) -> Reply:
    return Reply(exc.status, exc.body(), {"Content-Type": JSON_TYPE, **exc.headers})


def _reply_tuple(reply: Reply) -> tuple[int, dict[str, str], bytes]:
    headers = {"OData-Version": "4.0", **reply.headers}
    return reply.status, headers, reply.body


def _reply_response(reply: Reply) -> Response:
    status, headers, body = _reply_tuple(reply)
    return Response(body, status, headers)


def route(ctx: Ctx) -> Reply:
    segments = split_path(ctx.path.rstrip("/")) if ctx.path.strip("/") else []
    if (not segments or segments[0] == "$metadata") and any(o.startswith("$") for o in ctx.query):
        raise bad_request(f"The query parameter {next(o for o in ctx.query if o.startswith('$'))} is not supported",
                          QUERY_NOT_SUPPORTED)
    if not segments:
        if ctx.method != "GET":
            raise method_not_allowed(ctx.method)
        return csdl.service_document(ctx)
    first = segments[0]
    if first == "$metadata":
        if ctx.method != "GET" or len(segments) > 1:
            raise method_not_allowed(ctx.method) if len(segments) == 1 else segment_not_found(segments[1])
        return csdl.csdl(ctx)
    name, key = split_segment(first)
    table = ctx.schema.by_set.get(name)
    if table is not None:
        rest = segments[1:]
        if rest and rest[-1].startswith(messages.NAMESPACE) and len(rest) == 1:
            row = rows.find_row(ctx, table, key, required=True) if key is not None else None
            return messages.invoke(ctx, rest[-1], messages.Bound(table, row))
        if key is None and not rest and ctx.method == "GET" and "fetchXml" in ctx.query:
            return fetchxml.handle(ctx, table)
        if key is None and not rest and ctx.method == "GET" and "sql" in ctx.query:
            return sql_query.handle(ctx, table)
        return handler.handle(ctx, table, key, rest)
    if name in METADATA_SETS:
        return entity_sets.handle(ctx, segments)
    if messages.is_unbound(name) and len(segments) == 1:
        return messages.invoke(ctx, first)
    raise segment_not_found(name)


def _effective_user(state: State, caller: dict[str, Any], headers: dict[str, str]) -> tuple[str, str | None, str]:
    """The systemuser a request acts as: the token's user, or the one it impersonates."""
    caller_user = _user_by(state, "azureactivedirectoryobjectid", caller.get("oid"))
    if caller_user is None and caller.get("appid"):
        caller_user = _user_by(state, "applicationid", caller.get("appid"))
    if caller_user is None:
        raise DataverseError(403, NOT_A_MEMBER, "The user is not a member of the organization.")
    acting: tuple[str, str] | None = caller_user
    if headers.get("callerobjectid"):
        acting = _user_by(state, "azureactivedirectoryobjectid", headers["callerobjectid"])
    elif headers.get("mscrmcallerid"):
        acting = _user_by(state, "systemuserid", headers["mscrmcallerid"])
    if acting is None:
        raise DataverseError(404, "0x80040217", "The user to impersonate (CallerObjectId/MSCRMCallerID) does not exist.")
    on_behalf_of = caller_user[0] if acting[0] != caller_user[0] else None
    return acting[0], on_behalf_of, acting[1]


def _user_by(state: State, column: str, value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    key = (column, value.lower())
    hit: tuple[str, str] | None = state.users.get(key)
    if hit is None:
        rows = state.store.select("systemuser", f't0."{column}" = ?', [value.lower()], limit=1,
                                  columns="t0.systemuserid AS id, t0.businessunitid AS bu")
        if not rows:
            return None
        hit = state.users[key] = (rows[0]["id"], rows[0]["bu"] or defaults.BUSINESS_UNIT_ID)
    return hit
