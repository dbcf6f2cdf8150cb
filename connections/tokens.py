"""Access tokens from msal, held in msal's cache, and the ``httpx.Auth`` that attaches them.

msal is blocking, so every call into it runs in a worker thread. Between refreshes the current
token is read from memory with no I/O and no lock; one ``asyncio.Lock`` makes many concurrent
requests that find the token stale (or get a 401) cause ONE refresh, not many — and when that
refresh fails, the requests that waited for it share its error instead of each trying again.

Tokens are refreshed early (:func:`refresh_margin`: a tenth of their life, at least a second, at
most 5 minutes), so a 2-second test token is renewed too. msal's own cache regards any token
within 5 minutes of expiry as stale, so when we ask it, it asks the identity provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import httpx
import msal

from d365_components.connections.errors_map import aad_error
from d365_components.errors import AuthenticationError, ConnectionConfigError, D365Error, TransientError
from d365_components.redaction import MASK, get_logger, redact, register_secret

__all__ = [
    "BearerAuth",
    "FileTokenCache",
    "IdentityHttpClient",
    "LockedTokenCache",
    "MsalTokenSource",
    "Token",
    "make_ssl_context",
    "refresh_margin",
]

log = get_logger("d365_components.connections.tokens")


def _guard_dependency_logs() -> None:
    """msal logs token requests (codes, verifiers) and httpcore logs response headers at DEBUG:
    put our redacting filter on their loggers too (filters are per logger, not inherited)."""
    known = {"httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "msal.token_cache"}
    for name in known | set(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("msal", "httpx", "httpcore"):
            get_logger(name)  # creates the logger if its module is imported later (httpcore does so lazily)


_guard_dependency_logs()

_RESERVED_SCOPES = {"openid", "profile", "offline_access"}


def make_ssl_context(ca_bundle: str | None, *, field: str = "caBundle") -> ssl.SSLContext:
    """TLS trust from ``ca_bundle`` (a PEM file) or certifi's bundle; never from environment variables."""
    try:
        if ca_bundle:
            return ssl.create_default_context(cafile=ca_bundle)
        return ssl.create_default_context(cafile=certifi.where())
    except (OSError, ssl.SSLError) as exc:
        raise ConnectionConfigError(f"{field}: cannot read a PEM CA bundle at '{ca_bundle}' ({exc}).") from None


def refresh_margin(lifetime: float) -> float:
    """How long before expiry a token counts as stale: a tenth of its life, at least one second
    (JWT ``exp`` is in whole seconds, so up to a second is lost to rounding), at most 5 minutes,
    and never more than half its life."""
    lifetime = max(lifetime, 0.0)
    return min(300.0, max(1.0, lifetime / 10), lifetime / 2)


class IdentityHttpClient(httpx.Client):
    """The blocking client msal talks to the identity provider through.

    msal passes form values as bytes in places (the signed client assertion of a certificate
    credential); requests encodes those, but httpx would send ``b'...'``. Decode them first.
    """

    def post(self, url: Any, *, data: Any = None, **kwargs: Any) -> httpx.Response:
        if isinstance(data, dict):
            data = {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in data.items()}
        return super().post(url, data=data, **kwargs)


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float  # time.monotonic() after which it counts as stale
    expires_at: float

    def fresh(self) -> bool:
        return time.monotonic() < self.refresh_at


class FileTokenCache(msal.SerializableTokenCache):  # type: ignore[misc]  # msal ships no types
    """msal's cache persisted to one file (mode 0600), rewritten atomically after each change."""

    has_state_changed: bool  # set by msal

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self._file_lock = threading.Lock()
        if self.path.exists():
            try:
                self.deserialize(self.path.read_text(encoding="utf-8"))
            except ValueError:
                log.warning("token cache %s is not readable JSON; starting with an empty cache", self.path)

    def save(self) -> None:
        """Write the cache if it changed: a temp file in the same folder, 0600, then rename."""
        with self._file_lock:
            if not self.has_state_changed:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(self.serialize())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self.has_state_changed = False


class LockedTokenCache(msal.SerializableTokenCache):  # type: ignore[misc]  # msal ships no types
    """A cache other processes share: ``exclusive()`` holds their common lock around a token
    request, reading the cache fresh first and saving it after, so the fleet asks once per token
    lifetime (the first holder fetches; the others find its token in the cache)."""

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class MsalTokenSource:
    """Tokens for one connection: a msal app made on first use, a cache, and a refresh lock.

    ``acquire(force)`` is the blocking msal call (client credentials, or silent refresh for a
    signed-in user); the rest of the library only awaits :meth:`token`.
    """

    def __init__(
        self,
        make_app: Callable[[], msal.ClientApplication],
        scopes: list[str],
        *,
        account_id: str | None = None,
        confidential: bool = True,
        cache: msal.SerializableTokenCache | None = None,
    ) -> None:
        self._make_app = make_app
        self._app: msal.ClientApplication | None = None
        self._app_lock = threading.Lock()
        self.scopes = [s for s in scopes if s.lower() not in _RESERVED_SCOPES]
        self.account_id = account_id
        self.confidential = confidential
        self.cache = cache if cache is not None else msal.SerializableTokenCache()
        self._current: Token | None = None
        self._lock: asyncio.Lock | None = None
        self._finished = 0  # refresh attempts finished so far (either way)
        self._failure: Exception | None = None  # how the last one failed, if it did
        #: how many times msal was asked (cache hits included); the bench reads it.
        self.acquisitions = 0

    def __repr__(self) -> str:
        return f"MsalTokenSource(scopes={self.scopes!r})"

    # -- blocking side (worker thread) -----------------------------------------------------

    def app(self) -> msal.ClientApplication:
        with self._app_lock:
            if self._app is None:
                try:
                    self._app = self._make_app()
                except ValueError as exc:
                    # msal reads the tenant's OpenID configuration when the app is made.
                    text = str(exc)
                    if "authority" in text.lower() or "tenant" in text.lower():
                        raise aad_error(
                            {"error_description": f"AADSTS90002: {text.splitlines()[0]}", "error_codes": [90002]}
                        ) from None
                    raise ConnectionConfigError(f"The identity settings are not valid: {text}") from None
            return self._app

    def forget_app(self) -> None:
        """Make the msal app again on next use (its HTTP client was closed); tokens stay cached."""
        with self._app_lock:
            self._app = None

    def _save_cache(self) -> None:
        if isinstance(self.cache, FileTokenCache):
            self.cache.save()

    def acquire(self, force: bool = False) -> dict[str, Any]:
        """One blocking msal call; returns msal's result (a token or an error dict)."""
        app = self.app()
        self.acquisitions += 1
        if isinstance(self.cache, LockedTokenCache):
            with self.cache.exclusive():
                return self._acquire(app, force)
        return self._acquire(app, force)

    def _acquire(self, app: msal.ClientApplication, force: bool) -> dict[str, Any]:
        if self.confidential and self.account_id is None:
            assert isinstance(app, msal.ConfidentialClientApplication)
            if force:
                app.remove_tokens_for_client()
            result: dict[str, Any] = app.acquire_token_for_client(scopes=self.scopes)
        else:
            account = self._account(app)
            if account is None:
                raise AuthenticationError(
                    "No signed-in user: complete the sign-in (authorization_url, then exchange_code) first."
                )
            silent: dict[str, Any] | None = app.acquire_token_silent_with_error(self.scopes, account, force_refresh=force)
            if silent is None:
                raise AuthenticationError("The stored sign-in has no usable refresh token: sign in again.")
            result = silent
        self._save_cache()
        return result

    def _account(self, app: msal.ClientApplication) -> dict[str, Any] | None:
        """This source's account, never another user's: a host may share one cache among users."""
        accounts = app.get_accounts()
        if self.account_id:
            return next((a for a in accounts if a.get("home_account_id") == self.account_id), None)
        if len(accounts) > 1:
            raise AuthenticationError(
                "The token cache holds several signed-in users: open the connection with account_id "
                "(the accountId its sign-in returned) or give it a token cache of its own."
            )
        return accounts[0] if accounts else None

    def remember(self, result: dict[str, Any]) -> Token:
        """Turn a msal success result into the current token (and register its secrets)."""
        if "access_token" not in result:
            raise aad_error(result)
        value = result["access_token"]
        for secret in (value, result.get("refresh_token"), result.get("id_token")):
            _register_unless_masked(secret)
        expires_in = result.get("expires_in")
        lifetime = float(expires_in) if expires_in is not None else 3600.0
        now = time.monotonic()
        token = Token(value=value, refresh_at=now + lifetime - refresh_margin(lifetime), expires_at=now + lifetime)
        self._current = token
        return token

    # -- async side --------------------------------------------------------------------------

    async def token(self, *, stale: str | None = None) -> str:
        """A fresh access token. ``stale``: a token the server just refused (forces a refresh)."""
        current = self._current
        if current is not None and stale is None and current.fresh():
            return current.value
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited_for = self._finished
        async with self._lock:
            current = self._current
            if current is not None and current.fresh() and current.value != stale:
                return current.value  # another task refreshed while we waited
            if self._finished != waited_for and self._failure is not None:
                raise self._failure  # the refresh we waited for just failed: share it, do not queue another
            force = stale is not None and current is not None and current.value == stale
            self._failure = None  # a cancelled attempt leaves none: its waiters try for themselves
            try:
                token = self.remember(await self._acquire_off_loop(force))
            except D365Error as exc:
                self._failure = exc
                raise
            finally:
                self._finished += 1
            return token.value

    async def _acquire_off_loop(self, force: bool) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(self.acquire, force)
        except httpx.HTTPError as exc:
            raise _identity_unreachable(exc) from None

    def drop(self) -> None:
        """Forget the in-memory token (the next request refreshes)."""
        self._current = None


def _register_unless_masked(secret: str | None) -> None:
    """Register a token for redaction unless its shape (a JWT) is masked anyway: a host refreshes
    every connection's token each hour, and the registry never forgets what it is given."""
    if secret and redact(secret) != MASK:
        register_secret(secret)


def _identity_unreachable(exc: httpx.HTTPError) -> Exception:
    host = ""
    with contextlib.suppress(RuntimeError, AttributeError):
        host = exc.request.url.host
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return ConnectionConfigError(
            f"The identity provider {host} presented a certificate that is not trusted. "
            "If it uses a private CA, set caBundle to a PEM file with that CA."
        )
    if isinstance(exc, httpx.ConnectError):
        return ConnectionConfigError(
            f"Cannot reach the identity provider {host}: check authorityHost/tokenUrl and the network ({exc})."
        )
    return TransientError(f"The identity provider {host} did not answer: {type(exc).__name__}.")


class BearerAuth(httpx.Auth):
    """Attaches the connection's bearer token; on a 401, refreshes once and resends."""

    requires_request_body = True

    def __init__(self, source: MsalTokenSource) -> None:
        self.source = source

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("BearerAuth serves httpx.AsyncClient only; use the sync facade for blocking code.")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.source.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            log.debug("401 from %s %s: refreshing the token and retrying once", request.method, request.url.path)
            token = await self.source.token(stale=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
