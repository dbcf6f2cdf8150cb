"""When to try a request again, how long to wait, and how many to keep in flight.

:class:`RetryPolicy` honours ``Retry-After`` on 429 (exactly, never sooner), backs off with full
jitter on 502/503/504 and network failures, and stops when the total time budget is spent. It
never re-sends a non-idempotent request (a create, an action, a ``$batch`` with writes) after an
*ambiguous* failure, where the server may have acted on it: a timeout or dropped connection after
the body was sent, or a gateway error. Refusals the server makes before acting (429, 503, a
connect error) are safe to retry for every request.

:class:`Limiter` keeps in-flight requests within the service-protection concurrency limit
(52 by default), narrows as ``x-ms-ratelimit-burst-remaining-xrm-requests`` falls, and makes every
request of the connection pause together while a ``Retry-After`` runs (one shared gate).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

__all__ = ["Attempts", "Limiter", "RetryPolicy", "is_safe_to_resend"]

#: failures raised before the request left this machine: nothing reached the server.
_BEFORE_SENDING = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: failures after (part of) the request may have reached the server.
_AMBIGUOUS = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def is_safe_to_resend(exc: BaseException) -> bool:
    """True when the request certainly never reached the server."""
    return isinstance(exc, _BEFORE_SENDING)


@dataclass
class Attempts:
    """What happened to one request (or to every request of a client): tries after the first, and
    how many of them re-sent a request that may already have been applied (an ambiguous failure).

    A caller that sent a resendable write reads ``ambiguous`` to know that an error such as a
    duplicate key may be its own earlier attempt, and reconciles instead of reporting it.
    """

    retries: int = 0
    ambiguous: int = 0

    def add(self, *, ambiguous: bool) -> None:
        self.retries += 1
        self.ambiguous += int(ambiguous)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first try; ``budget`` caps the total seconds."""

    max_attempts: int = 6
    budget: float = 120.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 502, 503, 504}))
    #: statuses the server sends without acting on the request: safe even for non-idempotent ones.
    refusal_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random wait in [0, min(max_delay, base * 2**attempt)]."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))

    def should_retry_status(self, status: int, *, idempotent: bool) -> bool:
        if status not in self.retry_statuses:
            return False
        return idempotent or status in self.refusal_statuses

    def should_retry_error(self, exc: BaseException, *, idempotent: bool) -> bool:
        if isinstance(exc, _BEFORE_SENDING):
            return True
        return idempotent and isinstance(exc, _AMBIGUOUS)


class Limiter:
    """A resizable gate for concurrent requests plus a shared pause after throttling.

    No lock is held across an await: a slot is taken and given back in plain statements, so a
    cancelled request (even one cancelled twice, or while waiting) can never keep a slot.
    """

    def __init__(self, max_concurrency: int = 52, *, low_water: int = 100) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.low_water = low_water
        self.limit = max_concurrency
        self.in_flight = 0
        self.peak = 0
        self._paused_until = 0.0
        self._waiters: list[asyncio.Future[None]] = []

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` slots while a request runs."""
        await self._take()
        try:
            yield
        finally:
            self.in_flight -= 1
            self._wake()

    async def _take(self) -> None:
        while True:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if self.in_flight < self.limit:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Let every waiter look again (each re-checks the limit and the pause)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def observe(self, headers: httpx.Headers) -> None:
        """Narrow the gate as the server's remaining burst budget falls (widen it as it recovers)."""
        remaining = headers.get("x-ms-ratelimit-burst-remaining-xrm-requests")
        if remaining is None:
            return
        try:
            left = int(float(remaining))
        except ValueError:
            return
        before = self.limit
        if left >= self.low_water:
            self.limit = self.max_concurrency
        else:
            share = max(left, 0) / self.low_water
            self.limit = max(1, min(self.max_concurrency, math.ceil(self.max_concurrency * share)))
        if self.limit > before:
            self._wake()

    def pause(self, seconds: float) -> None:
        """Hold every new request of this connection for ``seconds`` (a shared Retry-After)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
