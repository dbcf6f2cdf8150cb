"""Service protection limits (reference §10): per-user sliding windows that answer 429.

Dataverse counts, per user (the token's `oid`), the requests in a sliding window, their combined
execution time in the same window, and the requests in flight. Exceeding one answers 429 with an
integer `Retry-After` and the code of the limit hit; every other response carries the
`x-ms-ratelimit-*` headers. The limits are settable (low ones for tests) and `force_next(n)` makes
the next n requests fail, the test hook §10 asks for.

Counting is per HTTP request: a `$batch` (or a bulk message) is one request whose whole execution
time counts, which is what Dataverse does. Rejected requests are not counted. Only the Web API
(`/api/data/`) is limited; the token endpoint is not.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from d365_components.emulator.protocol.errors import error_body

API_PREFIX = "/api/data/"
REQUESTS_CODE = "0x80072322"
EXECUTION_TIME_CODE = "0x80072321"
CONCURRENCY_CODE = "0x80072326"
BURST_HEADER = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_HEADER = "x-ms-ratelimit-time-remaining-xrm-requests"


@dataclass(frozen=True)
class Limits:
    """Dataverse's default limits per user (and per web server)."""

    requests: int = 6000                  # requests per window
    window: float = 300.0                 # seconds, sliding
    execution_time: float = 1200.0        # seconds of combined execution time per window
    concurrent: int = 52                  # requests in flight

    def __post_init__(self) -> None:
        for name in ("requests", "window", "execution_time", "concurrent"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")


class Throttled(Exception):
    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, retry_after


class _Usage:
    """One user's requests (start times) and executions (end time, seconds) in the window."""

    def __init__(self) -> None:
        self.starts: collections.deque[float] = collections.deque()
        self.executions: collections.deque[tuple[float, float]] = collections.deque()
        self.busy_seconds = 0.0
        self.in_flight = 0

    def prune(self, now: float, window: float) -> None:
        while self.starts and self.starts[0] <= now - window:
            self.starts.popleft()
        while self.executions and self.executions[0][0] <= now - window:
            self.busy_seconds -= self.executions.popleft()[1]


class ServiceProtection:
    """ASGI middleware enforcing `Limits` per user; `app.state.protection` is this object."""

    def __init__(self, app: ASGIApp, limits: Limits | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.limits = limits or Limits()
        self.clock = clock
        self.enabled = True
        self._users: dict[str, _Usage] = collections.defaultdict(_Usage)
        self._forced: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    # ---- run-time controls -------------------------------------------------------------------

    def configure(self, limits: Limits | None = None, **changes: Any) -> Limits:
        """Replace the limits (`configure(requests=5, window=2)`); usage so far is kept."""
        self.limits = replace(limits or self.limits, **changes)
        return self.limits

    def reset(self) -> None:
        """Forget all usage and forced failures."""
        with self._lock:
            self._users.clear()
            self._forced.clear()

    def force_next(self, n: int = 1, *, code: str = REQUESTS_CODE, retry_after: int = 1) -> None:
        """Answer the next `n` Web API requests with 429 (any user)."""
        with self._lock:
            self._forced.extend([(code, retry_after)] * n)

    # ---- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        user = user_key(scope)
        try:
            usage, started = self._admit(user)
        except Throttled as exc:
            await self._reject(exc, user, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._headers(user)]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self._finish(usage, started)

    def _admit(self, user: str) -> tuple[_Usage, float]:
        limits = self.limits
        with self._lock:
            now = self.clock()
            usage = self._users[user]
            usage.prune(now, limits.window)
            if self._forced:
                code, retry_after = self._forced.pop(0)
                raise Throttled(code, _message(code, limits), retry_after)
            if usage.in_flight >= limits.concurrent:
                raise Throttled(CONCURRENCY_CODE, _message(CONCURRENCY_CODE, limits), 1)
            if len(usage.starts) >= limits.requests:
                wait = usage.starts[0] + limits.window - now
                raise Throttled(REQUESTS_CODE, _message(REQUESTS_CODE, limits), _seconds(wait))
            if usage.busy_seconds >= limits.execution_time:
                wait, freed = 0.0, 0.0
                for end, seconds in usage.executions:
                    freed += seconds
                    wait = end + limits.window - now
                    if usage.busy_seconds - freed < limits.execution_time:
                        break
                raise Throttled(EXECUTION_TIME_CODE, _message(EXECUTION_TIME_CODE, limits), _seconds(wait))
            usage.starts.append(now)
            usage.in_flight += 1
            return usage, now

    def _finish(self, usage: _Usage, started: float) -> None:
        with self._lock:
            end = self.clock()
            usage.in_flight -= 1
            usage.executions.append((end, end - started))
            usage.busy_seconds += end - started

    def _headers(self, user: str) -> list[tuple[bytes, bytes]]:
        limits = self.limits
        with self._lock:
            usage = self._users[user]
            burst = max(0, limits.requests - len(usage.starts))
            remaining = max(0, int(limits.execution_time - usage.busy_seconds))
        return [(BURST_HEADER.encode(), str(burst).encode()), (TIME_HEADER.encode(), str(remaining).encode())]

    async def _reject(self, exc: Throttled, user: str, send: Send) -> None:
        body = error_body(exc.code, exc.message)
        headers = [
            (b"content-type", b"application/json; odata.metadata=minimal"),
            (b"odata-version", b"4.0"),
            (b"retry-after", str(exc.retry_after).encode()),
            (b"content-length", str(len(body)).encode()),
            *self._headers(user),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _message(code: str, limits: Limits) -> str:
    window = f"{limits.window:g}"
    if code == EXECUTION_TIME_CODE:
        return (f"Combined execution time of incoming requests exceeded limit of {int(limits.execution_time * 1000):,} "
                f"milliseconds over time window of {window} seconds. Decrease number of concurrent requests or "
                "reduce the duration of requests and try again later.")
    if code == CONCURRENCY_CODE:
        return f"Number of concurrent requests exceeded the limit of {limits.concurrent}."
    return f"Number of requests exceeded the limit of {limits.requests} over time window of {window} seconds."


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


_USER_KEYS: dict[bytes, str] = {}      # Authorization header -> user key; a client reuses its token


def user_key(scope: Scope) -> str:
    """The token's `oid` (else `appid`/`sub`), read without verifying: the app verifies it."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            key = _USER_KEYS.get(value)
            if key is None:
                if len(_USER_KEYS) >= 10_000:
                    _USER_KEYS.clear()
                key = _USER_KEYS[value] = _user_key_of(value)
            return key
    return "anonymous"


def _user_key_of(authorization: bytes) -> str:
    parts = authorization.decode("latin-1").split(" ", 1)
    if len(parts) == 2 and parts[0].lower() == "bearer":
        claims = _unverified_claims(parts[1].strip())
        for claim in ("oid", "appid", "azp", "sub"):
            if claims.get(claim):
                return str(claims[claim])
    return "anonymous"


def _unverified_claims(token: str) -> dict[str, Any]:
    pieces = token.split(".")
    if len(pieces) != 3:
        return {}
    payload = pieces[1] + "=" * (-len(pieces[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
