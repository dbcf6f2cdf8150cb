"""The Dataverse Web API client every action talks through.

One ``httpx.AsyncClient`` per connection (HTTP/1.1, keep-alive, one pool), authenticated by the
connection's :class:`~d365_components.connections.tokens.BearerAuth`. Every call goes through
:meth:`WebApiClient.request`, which adds the OData headers, keeps concurrency within the service
protection limit, retries what is safe to retry, and turns error answers into the typed errors of
:mod:`d365_components.errors`. The rest (CRUD, paging, FetchXML, ``$batch``, functions and actions)
is built on it.

Redaction: secrets and tokens are always masked. ``redaction="org"`` also replaces the org host
in error messages and logs with ``[org]``; ``"identifiers"`` additionally replaces GUIDs with
``[id]``. GUIDs are kept by default because record ids are what a user needs to find the failing
row.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import re
import ssl
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any, Literal, cast
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

import httpx

from d365_components.connections.batch import (
    MAX_OPERATIONS,
    BatchOperation,
    BatchResult,
    boundary_of,
    decode_batch,
    encode_batch,
)
from d365_components.connections.clouds import OrgUrls
from d365_components.connections.errors_map import dataverse_error, parse_retry_after
from d365_components.connections.headers import ODATA_HEADERS, control_headers
from d365_components.connections.headers import prefer as prefer_header
from d365_components.connections.input_errors import RequestInputError
from d365_components.connections.odata import GUID, entity_path, is_guid, quote
from d365_components.connections.paging import (
    MORE_RECORDS,
    PAGING_COOKIE,
    Page,
    fetch_page,
    fetch_with_paging,
    odata_page,
    prefer_page_size,
)
from d365_components.connections.retry import Attempts, Limiter, RetryPolicy, is_safe_to_resend
from d365_components.connections.shared_state import SharedState
from d365_components.errors import ConnectionConfigError, D365Error, DataverseError, TransientError
from d365_components.redaction import Redaction, get_logger
from d365_components.version import __version__

__all__ = ["BatchOperation", "BatchResult", "Page", "WebApiClient"]

log = get_logger("d365_components.connections.client")

_GUID_ANYWHERE = re.compile(r"\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?")
_QUERY_SAFE = "$'(),*/:@=;!~-._"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_URL = 32_000  # Dataverse refuses GET URLs over 32 KB; longer FetchXML goes through $batch
_MAX_BATCH_URL = 65_536  # ...where a URL may be up to 64 KB


def _query_string(params: dict[str, Any]) -> str:
    """OData query text: ``$``, quotes and parentheses kept, spaces as %20 (never ``+``)."""
    pairs = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        pairs.append(f"{url_quote(str(name), safe='$@')}={url_quote(str(value), safe=_QUERY_SAFE)}")
    return "&".join(pairs)


def _annotations(annotations: str | list[str] | None, *extra: str) -> list[str]:
    names: list[str] = []
    if isinstance(annotations, str) and annotations:
        names = [a.strip() for a in annotations.split(",") if a.strip()]
    elif isinstance(annotations, list):
        names = list(annotations)
    if names and "*" not in names:
        names += [e for e in extra if e not in names]
    elif not names:
        names = list(extra)
    return [f'odata.include-annotations="{",".join(names)}"'] if names else []


class WebApiClient:
    """Dataverse Web API calls for one connection. Create it with ``connection.open_client()``."""

    def __init__(
        self,
        org: OrgUrls,
        *,
        auth: httpx.Auth | None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 52,
        caller_object_id: str | None = None,
        redaction: Redaction = Redaction.secrets,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.org_url = org.org_url
        self.api_url = org.api_url
        self._origin = "{0.scheme}://{0.netloc}".format(urlsplit(org.org_url)).lower()
        self._host = org.host
        self.retry = retry or RetryPolicy()
        self.limiter = Limiter(max_concurrency)
        #: the connection's state shared with other processes (Redis), when it has one
        self.shared: SharedState | None = None
        #: every retry of this client, and how many re-sent a write that may have been applied
        self.attempts = Attempts()
        self.redaction = redaction
        self.default_headers = {
            **ODATA_HEADERS,
            "User-Agent": f"d365-components/{__version__}",
            **control_headers(caller_object_id=caller_object_id),
        }
        self._http = httpx.AsyncClient(
            auth=auth,
            verify=ssl_context if ssl_context is not None else True,
            trust_env=False,
            http1=True,
            http2=False,
            timeout=httpx.Timeout(timeout, connect=min(15.0, timeout)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"WebApiClient(api_url={self._scrub(self.api_url)!r})"

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> WebApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the one way out -------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        """Absolute URL of ``path``: relative to the Web API root (``accounts``), root-relative
        (``/api/data/v9.2/accounts``), or absolute on this org only (a nextLink).

        :class:`RequestInputError` (an input error that is also a ValueError) when it cannot be
        one: another host (the token must not go there), control characters, a malformed URL.
        """
        if not isinstance(path, str):
            raise RequestInputError(f"a URL must be text, not {type(path).__name__}")
        if _CONTROL.search(path):
            raise RequestInputError("the URL holds control characters (such as a line break); percent-encode them")
        if path.startswith(("http://", "https://")):
            try:
                origin = "{0.scheme}://{0.netloc}".format(urlsplit(path)).lower()
            except ValueError as exc:  # urlsplit: an invalid IPv6 host or port
                raise RequestInputError(f"the URL is malformed ({exc})") from None
            if origin != self._origin:
                raise RequestInputError(
                    f"refusing to send the connection's token to another host: {self._scrub(path)} "
                    f"is not on {self._scrub(self.org_url)}"
                )
            url = path
        elif path.lower().startswith("/api/"):
            url = self.org_url + path
        else:
            url = f"{self.api_url}/{path.lstrip('/')}"
        try:
            httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as exc:
            raise RequestInputError(f"the URL is not valid ({self._scrub(str(exc))})") from None
        return url

    def checked_url(self, link: str, pointer: str) -> str:
        """``link`` (a nextLink given as an input) as an absolute URL under this connection's Web
        API; an input error naming ``pointer`` otherwise."""
        try:
            url = self.url_for(link)
        except RequestInputError as exc:
            raise exc.at(pointer) from None
        if not url.lower().startswith(self.api_url.lower() + "/"):
            raise RequestInputError("is not a link of this connection's Web API", pointer=pointer)
        return url

    def _scrub(self, text: str) -> str:
        if self.redaction in ("org", "identifiers") and text:
            text = text.replace(self._host, "[org]")
        if self.redaction == "identifiers" and text:
            text = _GUID_ANYWHERE.sub("[id]", text)
        return text

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        prefer: list[str] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        check: bool = True,
        trace: Attempts | None = None,
    ) -> httpx.Response:
        """Send one request; raise a typed error for any answer >= 400 (``check=False``: return it).

        ``idempotent`` defaults to True for every method but POST. Non-idempotent requests are
        re-sent only when the server certainly did not act (429, 503, connection refused). A
        DELETE re-sent after an answer was lost counts a 404 as done (the first one did it).
        Pass ``idempotent=True`` for a write that is safe to send twice (an upsert by key, a
        create with a client-assigned id); ``trace`` then tells whether it was re-sent after an
        ambiguous failure, so a duplicate-key answer can be recognised as the first attempt's.
        """
        method = method.upper()
        url = self.url_for(path)
        if params:
            query = _query_string(params)
            if query:
                url += ("&" if "?" in url else "?") + query
        all_headers = dict(self.default_headers)
        if method == "GET":
            all_headers["If-None-Match"] = "null"
        if json is not None and content is None:
            content = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            all_headers["Content-Type"] = "application/json; charset=utf-8"
        all_headers.update(prefer_header(prefer))
        if headers:
            all_headers.update(headers)
            all_headers = {k: v for k, v in all_headers.items() if v is not None}
        for name, value in all_headers.items():
            if _CONTROL.search(f"{name}{value}".replace("\t", " ")):
                raise RequestInputError(f"header {name!r} holds control characters (such as a line break)")
        if idempotent is None:
            idempotent = method != "POST"
        policy = retry or self.retry
        extensions = {}
        if timeout is not None:
            extensions["timeout"] = httpx.Timeout(timeout, connect=min(15.0, timeout)).as_dict()
        deadline = time.monotonic() + policy.budget
        attempt = 0
        maybe_applied = False  # an earlier attempt may have reached the server and acted
        while True:
            attempt += 1
            try:
                request = self._http.build_request(method, url, content=content, headers=all_headers, extensions=extensions)
            except (httpx.InvalidURL, ValueError, TypeError) as exc:  # headers that cannot be sent
                raise RequestInputError(f"the request cannot be built ({self._scrub(str(exc))})") from None
            started = time.monotonic()
            try:
                async with self.limiter.slot():
                    response = await self._http.send(request)
            except httpx.HTTPError as exc:
                if _tls_failure(exc):
                    raise ConnectionConfigError(
                        f"The TLS certificate of {self._scrub(self._host)} is not trusted. If the server uses "
                        "a private CA (an emulator, a proxy), set caBundle to a PEM file with that CA."
                    ) from None
                wait = policy.backoff(attempt - 1)
                if (
                    attempt < policy.max_attempts
                    and policy.should_retry_error(exc, idempotent=idempotent)
                    and time.monotonic() + wait < deadline
                ):
                    log.debug("%s %s failed (%s); retry %d in %.2fs", method, self._log_path(url), type(exc).__name__, attempt, wait)
                    ambiguous = not is_safe_to_resend(exc)
                    maybe_applied = maybe_applied or ambiguous
                    self._count(trace, ambiguous=ambiguous)
                    await asyncio.sleep(wait)
                    continue
                raise self._network_error(exc, method, url, idempotent) from exc
            # httpx binds a response and its stream in a reference cycle, so a read body (up to
            # megabytes per page) would wait for the cyclic GC; rebinding frees it on last use.
            response.stream = httpx.ByteStream(response.content)
            self.limiter.observe(response.headers)
            status = response.status_code
            log.debug("%s %s -> %d in %.0f ms", method, self._log_path(url), status, (time.monotonic() - started) * 1000)
            if status < 400:
                return response
            if status == 404 and method == "DELETE" and maybe_applied:
                return response  # the lost answer was to our own delete: the row is gone, as asked
            if policy.should_retry_status(status, idempotent=idempotent) and attempt < policy.max_attempts:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                wait = retry_after if retry_after is not None else policy.backoff(attempt - 1)
                if time.monotonic() + wait < deadline:
                    if status == 429:
                        self.limiter.pause(wait)
                    log.debug("%s %s -> %d; retry %d in %.2fs", method, self._log_path(url), status, attempt, wait)
                    ambiguous = status not in policy.refusal_statuses
                    maybe_applied = maybe_applied or ambiguous
                    self._count(trace, ambiguous=ambiguous)
                    await asyncio.sleep(wait)
                    continue
            if not check:
                return response
            raise self._error(response, method, url)

    def _count(self, trace: Attempts | None, *, ambiguous: bool) -> None:
        self.attempts.add(ambiguous=ambiguous)
        if trace is not None:
            trace.add(ambiguous=ambiguous)

    def _log_path(self, url: str) -> str:
        return self._scrub(urlsplit(url).path)

    def _error(self, response: httpx.Response, method: str, url: str) -> Exception:
        error = dataverse_error(
            response.status_code, response.headers, response.content, method=method, url=self._scrub(url)
        )
        error.message = self._scrub(error.message)
        return error

    def _network_error(self, exc: httpx.HTTPError, method: str, url: str, idempotent: bool) -> Exception:
        where = f"{method} {self._log_path(url)}"
        if isinstance(exc, httpx.ConnectError) and _dns_failure(exc):
            return ConnectionConfigError(
                f"Cannot resolve {self._scrub(self._host)}: check webApiUrl (the org URL) and the network."
            )
        if not idempotent and not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return TransientError(
                f"{where}: {type(exc).__name__} after the request was sent. It may or may not have been "
                "applied; it was not sent again, to avoid doing it twice. Check before retrying."
            )
        return TransientError(f"{where}: {type(exc).__name__} ({self._scrub(str(exc)) or 'no details'}).")

    # -- JSON helpers ---------------------------------------------------------------------

    async def get_json(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        prefer: list[str] | None = None,
    ) -> dict[str, Any]:
        response = await self.request("GET", path, params=params, headers=headers, prefer=prefer)
        return _json(response)

    # -- records ----------------------------------------------------------------------------

    async def create(
        self,
        entity_set: str,
        data: dict[str, Any],
        *,
        return_representation: bool = False,
        select: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a row; returns ``{"id", "entityUrl", "row"}`` (row only with representation)."""
        _check_data(data)
        entity_path(entity_set, "00000000-0000-0000-0000-000000000000")  # validates the name
        params = {"$select": select} if select and return_representation else None
        response = await self.request(
            "POST", entity_set, params=params, json=data, headers=headers,
            prefer=["return=representation"] if return_representation else None,
        )
        row = _json(response) if response.content else None
        entity_url = response.headers.get("OData-EntityId") or response.headers.get("Location")
        row_id = _key_from_url(entity_url) if entity_url else None
        if row_id is None and row is not None:
            row_id = _primary_id(entity_set, row)
        if entity_url is None and row_id is not None:
            entity_url = f"{self.api_url}/{entity_path(entity_set, row_id)}"
        return {"id": row_id, "entityUrl": entity_url, "row": row}

    async def retrieve(
        self,
        entity_set: str,
        key: str | dict[str, Any],
        *,
        select: list[str] | None = None,
        expand: list[str] | str | None = None,
        annotations: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One row (with ``@odata.etag``); :class:`RecordNotFoundError` when it does not exist."""
        params: dict[str, Any] = {}
        if select:
            params["$select"] = select
        if expand:
            params["$expand"] = expand
        return await self.get_json(
            entity_path(entity_set, key), params=params, headers=headers, prefer=_annotations(annotations)
        )

    async def update(
        self,
        entity_set: str,
        key: str | dict[str, Any],
        data: dict[str, Any],
        *,
        if_match: str | None = None,
        return_representation: bool = False,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """Update an existing row (never creates: ``If-Match: *`` unless an ETag is given)."""
        _check_data(data)
        response = await self.request(
            "PATCH", entity_path(entity_set, key), json=data,
            headers={"If-Match": if_match or "*", **(headers or {})},
            prefer=["return=representation"] if return_representation else None,
        )
        return _json(response) if return_representation and response.content else None

    async def upsert(
        self,
        entity_set: str,
        key: str | dict[str, Any],
        data: dict[str, Any],
        *,
        mode: Literal["upsert", "create", "update"] = "upsert",
        return_representation: bool = False,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """PATCH by key. ``mode``: upsert (either), create (fail if it exists), update (fail if not).

        Returns ``{"id", "created", "row"}``; ``created`` is None when Dataverse does not say
        (upsert mode without representation).
        """
        _check_data(data)
        conditions = {"upsert": {}, "create": {"If-None-Match": "*"}, "update": {"If-Match": "*"}}
        if mode not in conditions:
            raise ValueError(f"mode must be upsert, create or update, not {mode!r}")
        response = await self.request(
            "PATCH", entity_path(entity_set, key), json=data,
            headers={**conditions[mode], **(headers or {})},
            prefer=["return=representation"] if return_representation else None,
            idempotent=mode != "create",  # sent again after it landed, a create-only upsert fails 412
        )
        row = _json(response) if return_representation and response.content else None
        if response.status_code == 201:
            created: bool | None = True
        elif response.status_code == 200:
            created = False
        else:
            created = {"upsert": None, "create": True, "update": False}[mode]
        row_id = None
        if row is not None:
            row_id = _primary_id(entity_set, row)
        if row_id is None and is_guid(key):
            row_id = str(key).strip("{}").lower()
        if row_id is None:
            row_id = _key_from_url(response.headers.get("OData-EntityId") or "")
        return {"id": row_id, "created": created, "row": row}

    async def delete(
        self,
        entity_set: str,
        key: str | dict[str, Any],
        *,
        if_match: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = {"If-Match": if_match} if if_match else {}
        await self.request("DELETE", entity_path(entity_set, key), headers={**extra, **(headers or {})})

    async def associate(
        self,
        entity_set: str,
        key: str | dict[str, Any],
        nav_property: str,
        target_entity_set: str,
        target_key: str | dict[str, Any],
        *,
        single_valued: bool = False,
    ) -> None:
        """Link two rows through ``nav_property`` (collection: POST $ref; single-valued: PUT $ref)."""
        _check_name(nav_property, "nav_property")
        body = {"@odata.id": f"{self.api_url}/{entity_path(target_entity_set, target_key)}"}
        path = f"{entity_path(entity_set, key)}/{nav_property}/$ref"
        await self.request("PUT" if single_valued else "POST", path, json=body)

    async def disassociate(
        self,
        entity_set: str,
        key: str | dict[str, Any],
        nav_property: str,
        target_entity_set: str | None = None,
        target_key: str | dict[str, Any] | None = None,
    ) -> None:
        """Unlink: give the target for a collection-valued property, none for a single-valued one."""
        _check_name(nav_property, "nav_property")
        path = f"{entity_path(entity_set, key)}/{nav_property}/$ref"
        params = None
        if target_entity_set is not None and target_key is not None:
            params = {"$id": f"{self.api_url}/{entity_path(target_entity_set, target_key)}"}
        await self.request("DELETE", path, params=params)

    # -- reading many rows ---------------------------------------------------------------

    async def pages(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        page_size: int | None = None,
        annotations: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncGenerator[Page, None]:
        """Pages of a collection query, following ``@odata.nextLink`` verbatim; one page held at a time."""
        preferences = prefer_page_size(page_size) + _annotations(annotations)
        url: str | None = path
        query = params
        while url:
            response = await self.request("GET", url, params=query, headers=headers, prefer=preferences)
            page = odata_page(_json(response))
            del response
            if page.next_link is not None and page.next_link == url:
                raise D365Error(f"Dataverse answered {self._log_path(url)} with a link to the same page; "
                                "stopped instead of reading it forever.")
            url, query = page.next_link, None
            yield page
            del page

    async def rows(self, path: str, **options: Any) -> AsyncGenerator[dict[str, Any], None]:
        """Every row of a collection query, page after page."""
        async for page in self.pages(path, **options):
            for row in page.rows:
                yield row

    async def fetchxml_pages(
        self,
        entity_set: str,
        fetchxml: str,
        *,
        page_size: int | None = None,
        annotations: str | None = None,
        headers: dict[str, str] | None = None,
        start_page: int = 1,
        paging_cookie: str | None = None,
    ) -> AsyncGenerator[Page, None]:
        """Pages of a FetchXML query using the paging cookie (reference §4.3)."""
        if start_page < 1:
            raise RequestInputError("start_page must be 1 or more")
        preferences = _annotations(annotations, PAGING_COOKIE[1:], MORE_RECORDS[1:])
        number, cookie = start_page, paging_cookie
        while True:
            text = fetch_with_paging(fetchxml, page=number, count=page_size, cookie=cookie)
            query = _query_string({"fetchXml": text})
            path = f"{entity_set}?{query}"
            if len(self.api_url) + len(path) > _MAX_BATCH_URL:
                raise RequestInputError(
                    f"the FetchXML query makes a URL of {len(self.api_url) + len(path):,} characters; Dataverse "
                    f"takes at most {_MAX_BATCH_URL:,} (inside $batch): split it or use fewer conditions")
            if len(self.api_url) + len(path) > _MAX_URL:
                body = await self._get_through_batch(path, preferences, headers)
            else:
                body = _json(await self.request("GET", path, headers=headers, prefer=preferences))
            page = fetch_page(body, number)
            del body
            yield page
            if not page.more_records or not page.rows:
                return
            number, cookie = number + 1, page.paging_cookie
            del page

    async def _get_through_batch(self, path: str, preferences: list[str], headers: dict[str, str] | None) -> dict[str, Any]:
        """A GET too long for a URL (up to 64 KB inside $batch)."""
        part_headers = {**(headers or {}), **prefer_header(preferences)}
        [result] = await self.batch([BatchOperation("GET", path, headers=part_headers)])
        if result.error is not None:
            raise result.error
        return result.body if isinstance(result.body, dict) else {}

    # -- $batch ---------------------------------------------------------------------------

    async def batch(
        self,
        operations: list[BatchOperation],
        *,
        atomic: bool = False,
        continue_on_error: bool = False,
        chunk_size: int = MAX_OPERATIONS,
        resendable: bool | None = None,
        trace: Attempts | None = None,
    ) -> list[BatchResult]:
        """Run operations in ``$batch`` requests of at most ``chunk_size``; one result per operation.

        ``atomic`` puts each chunk in one change set (all or nothing per chunk). Without
        ``continue_on_error`` the first failure stops the run: later operations report 424.
        A chunk is re-sent after an ambiguous failure when every operation is safe to repeat
        (reads, PATCH/PUT by key without ``If-None-Match``); ``resendable=True`` says so for
        the others too (creates carrying client-assigned ids, which a resend cannot duplicate).
        """
        if not 1 <= chunk_size <= MAX_OPERATIONS:
            raise RequestInputError(f"chunk_size must be from 1 to {MAX_OPERATIONS}")
        # Impersonation set on the connection applies to each part too (outer headers may not).
        inherited = {k: v for k, v in self.default_headers.items() if k in ("CallerObjectId", "MSCRMCallerID")}
        if inherited:
            operations = [replace(op, headers={**inherited, **(op.headers or {})}) for op in operations]
        operations = list(operations)
        if not operations:
            return []
        references = any(op.path.startswith("$") for op in operations)
        if references and len(operations) > chunk_size:
            raise RequestInputError("Content-ID references ($1...) cannot span chunks: send at most chunk_size operations")
        results: list[BatchResult] = []
        stopped = False
        for start in range(0, len(operations), chunk_size):
            chunk = operations[start : start + chunk_size]
            if stopped:
                results += [_not_run(start + i) for i in range(len(chunk))]
                continue
            content_type, body, content_ids = encode_batch(chunk, self.api_url, atomic=atomic)
            repeatable = resendable if resendable is not None else all(_repeatable(op) for op in chunk)
            response = await self.request(
                "POST", "$batch", content=body, headers={"Content-Type": content_type},
                prefer=["odata.continue-on-error"] if continue_on_error else None,
                idempotent=repeatable, check=False, trace=trace,
            )
            if response.status_code >= 400 and boundary_of(response.headers.get("Content-Type", "")) is None:
                raise self._error(response, "POST", self.url_for("$batch"))
            chunk_results = decode_batch(
                response.headers.get("Content-Type", ""), response.content, content_ids,
                atomic=atomic, api_url=self.api_url, offset=start,
            )
            results += chunk_results
            if not continue_on_error and any(r.error is not None for r in chunk_results):
                stopped = True
        return results

    # -- functions and actions -------------------------------------------------------------

    async def execute(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        *,
        bound_to: tuple[str, str | dict[str, Any] | None] | None = None,
        function: bool = False,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        trace: Attempts | None = None,
    ) -> Any:
        """Call a Dataverse function (GET) or action (POST), unbound or bound to a row or a table.

        Returns the parsed JSON answer, or None for 204. Function parameters are sent as
        parameter aliases; pass ``odata.RawLiteral`` for enum values. ``headers`` carry per-call
        options such as impersonation (``CallerObjectId``). ``idempotent=True`` marks an action
        safe to send twice (UpsertMultiple by key, CreateMultiple with client ids): see :meth:`request`.
        """
        _check_name(name, "name", dotted=True)
        if bound_to is not None:
            entity_set, key = bound_to
            base = entity_path(entity_set, key) if key is not None else _checked_set(entity_set)
            qualified = name if "." in name else f"Microsoft.Dynamics.CRM.{name}"
            path = f"{base}/{qualified}"
        else:
            path = name
        if function:
            aliases = []
            query: dict[str, str] = {}
            for index, (param, value) in enumerate((parameters or {}).items(), start=1):
                _check_name(param, "parameter")
                aliases.append(f"{param}=@p{index}")
                query[f"@p{index}"] = _function_value(value)
            path = f"{path}({','.join(aliases)})"
            response = await self.request("GET", path, params=query or None, headers=headers, trace=trace)
        else:
            response = await self.request("POST", path, json=parameters or {}, headers=headers,
                                          idempotent=idempotent, trace=trace)
        if response.status_code == 204 or not response.content:
            return None
        return _json(response)

    async def whoami(self) -> dict[str, Any]:
        """``{"UserId", "BusinessUnitId", "OrganizationId"}`` of the caller."""
        return await self.get_json("WhoAmI")


# -- helpers ---------------------------------------------------------------------------------


def _json(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        return cast(dict[str, Any], response.json())
    except ValueError:
        raise TransientError(
            f"Dataverse answered {response.status_code} with a body that is not JSON "
            f"({response.headers.get('Content-Type', 'no content type')})."
        ) from None


def _check_data(data: Any) -> None:
    if not isinstance(data, dict):
        raise RequestInputError(f"data must be a JSON object of column values, not {type(data).__name__}")


def _check_name(name: str, what: str, *, dotted: bool = False) -> None:
    pattern = r"^[A-Za-z_][A-Za-z0-9_.]*$" if dotted else r"^[A-Za-z_][A-Za-z0-9_]*$"
    if not isinstance(name, str) or not re.fullmatch(pattern, name):
        raise RequestInputError(f"{what}: '{name}' is not a valid name")


def _checked_set(entity_set: str) -> str:
    _check_name(entity_set, "entity_set")
    return entity_set


def _key_from_url(url: str) -> str | None:
    match = re.search(r"\(([^()]*)\)\s*$", url or "")
    if not match:
        return None
    key = match.group(1)
    return key.lower() if GUID.match(key) else key


def _primary_id(entity_set: str, row: dict[str, Any]) -> str | None:
    """The primary key of a returned row: ``accounts`` -> ``accountid`` (a few plural forms)."""
    candidates = [entity_set[:-1] + "id"]
    if entity_set.endswith("ies"):
        candidates.insert(0, entity_set[:-3] + "yid")
    if entity_set.endswith("es"):
        candidates.append(entity_set[:-2] + "id")
    for name in candidates:
        value = row.get(name)
        if isinstance(value, str) and GUID.match(value):
            return value.lower()
    if row.get("activityid"):
        return str(row["activityid"]).lower()
    return None


def _function_value(value: Any) -> str:
    if isinstance(value, dict) and "@odata.id" in value:
        return "{'@odata.id':'" + str(value["@odata.id"]).replace("'", "''") + "'}"
    if isinstance(value, dict | list):
        return jsonlib.dumps(value, separators=(",", ":"))
    return quote(value)


def _repeatable(op: BatchOperation) -> bool:
    """Whether sending ``op`` twice leaves the same result as once (so a lost answer may be re-sent)."""
    method = op.method.upper()
    if method == "GET":
        return True
    if method in ("PATCH", "PUT"):
        conditions = {name.lower(): value for name, value in (op.headers or {}).items()}
        return "if-none-match" not in conditions and conditions.get("if-match", "*") == "*"
    return False


def _not_run(index: int) -> BatchResult:
    return BatchResult(
        index=index,
        status=424,
        error=DataverseError("Not run: an earlier batch chunk failed (use continue_on_error to run the rest).", status=424),
    )


def _tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _dns_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("name or service not known", "nodename nor servname", "getaddrinfo failed", "no address associated", "temporary failure in name resolution"))
