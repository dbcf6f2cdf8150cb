"""The shared state on Redis: one service-protection budget, one token cache, one set of locks
and saved texts for every process that uses the same app user (``sharedStateUrl``).

The budget is kept by one Lua script per request, atomic on the server: a sorted set of the
requests in the sliding window (Dataverse's 6,000 per 300 s by default) and a sorted set of
leases for the requests in flight (52), each lease expiring on its own, so a process killed
mid-request gives its slot back after ``lease`` seconds. ``observe`` narrows the shared
concurrency as ``x-ms-ratelimit-burst-remaining-xrm-requests`` falls (as the in-process
:class:`~d365_components.connections.retry.Limiter` does) and a 429's ``Retry-After`` pauses the
whole fleet (a key with that time to live). The window can be set to the org's own limits with
URL parameters: ``redis://host:6379/0?requests=6000&window=300&concurrent=52``.

Install the ``[redis]`` extra to use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from d365_components.connections.retry import Limiter
from d365_components.connections.tokens import LockedTokenCache
from d365_components.errors import ConnectionConfigError

try:  # the [redis] extra
    import redis
    import redis.asyncio as aredis
except ImportError:  # pragma: no cover - a core install
    redis = None  # type: ignore[assignment]
    aredis = None  # type: ignore[assignment]

__all__ = ["RedisLimiter", "RedisState", "RedisTokenCache"]

_PREFIX = "d365:"
#: a request is counted in our window this much longer than the server's window: the server
#: stamps it a little later (on arrival), so without it the fleet's next request could be early
_MARGIN_MS = 250

#: KEYS: in-flight leases, window, narrowed limit. ARGV: now ms, max concurrency, lease ms,
#: window ms, requests per window, lease id. Returns 0 (taken), -1 (full: wait a moment) or
#: the ms until the window has room.
_TAKE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(redis.call('GET', KEYS[3]) or ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= limit then return -1 end
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(first[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[6])
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], window)
return 0
"""


def _require_redis() -> None:
    if redis is None:
        raise ConnectionConfigError("sharedStateUrl: needs the redis client: pip install 'd365-components[redis]'.")


class RedisLimiter(Limiter):
    """The fleet-wide gate of one app user (same interface as the in-process Limiter)."""

    def __init__(self, client: Callable[[], Any], app_user: str, max_concurrency: int, *, requests: int,
                 window: float, lease: float = 180.0) -> None:
        # the window is kept exactly here, so narrowing starts only near its end (a tenth of it,
        # at most the in-process limiter's 100)
        super().__init__(max_concurrency, low_water=max(1, min(100, requests // 10)))
        self._client = client  # the running loop's asyncio client
        base = f"{_PREFIX}budget:{app_user}"
        self._keys = [f"{base}:flight", f"{base}:window", f"{base}:limit"]
        self._pause_key = f"{base}:pause"
        self.requests, self.window, self.lease = requests, window, lease
        self.waits = 0  # times a request waited for the shared budget (the bench reads it)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        lease = uuid.uuid4().hex
        await self._take_shared(lease)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            await asyncio.shield(self._client().zrem(self._keys[0], lease))

    async def _take_shared(self, lease: str) -> None:
        while True:
            client = self._client()
            pause = await client.pttl(self._pause_key)
            if pause > 0:
                self.waits += 1
                await asyncio.sleep(pause / 1000)
                continue
            now = int(time.time() * 1000)
            answer = int(await client.eval(_TAKE, len(self._keys), *self._keys, now, self.max_concurrency,
                                           int(self.lease * 1000), int(self.window * 1000) + _MARGIN_MS,
                                           self.requests, lease))
            if answer == 0:
                return
            self.waits += 1
            await asyncio.sleep(0.005 if answer < 0 else answer / 1000)

    def observe(self, headers: httpx.Headers) -> None:
        before = self.limit
        super().observe(headers)
        if self.limit != before:
            self._spawn(self._client().set(self._keys[2], self.limit, px=int(self.window * 1000)))

    def pause(self, seconds: float) -> None:
        super().pause(seconds)
        self._spawn(self._client().set(self._pause_key, "1", px=max(1, math.ceil(seconds * 1000)), nx=True))

    _background: set[asyncio.Task[Any]] = set()

    def _spawn(self, call: Any) -> None:
        task = asyncio.ensure_future(call)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class RedisTokenCache(LockedTokenCache):
    """msal's cache kept in Redis, read and written under a Redis lock around each token request."""

    has_state_changed: bool  # set by msal

    def __init__(self, client: Any, app_user: str, *, lock_timeout: float = 60.0) -> None:
        super().__init__()
        self._redis = client
        self._key = f"{_PREFIX}tokens:{app_user}"
        self._lock_timeout = lock_timeout

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._redis.lock(self._key + ":lock", timeout=self._lock_timeout, blocking_timeout=self._lock_timeout):
            blob = self._redis.get(self._key)
            if blob:
                self.deserialize(blob.decode() if isinstance(blob, bytes) else blob)
            self.has_state_changed = False
            yield
            if self.has_state_changed:
                self._redis.set(self._key, self.serialize())
                self.has_state_changed = False


class RedisState:
    """The :class:`~d365_components.connections.shared_state.SharedState` on one Redis database."""

    def __init__(self, url: str) -> None:
        _require_redis()
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConnectionConfigError("sharedStateUrl: must be a redis://, rediss:// or unix:// URL.")
        query = parse_qs(parts.query)
        try:
            self.requests = int(query.pop("requests", ["6000"])[-1])
            self.window = float(query.pop("window", ["300"])[-1])
            self.concurrent = int(query.pop("concurrent", ["52"])[-1])
        except ValueError:
            raise ConnectionConfigError("sharedStateUrl: requests, window and concurrent must be numbers.") from None
        rest = "&".join(f"{k}={v[-1]}" for k, v in query.items())
        self.url = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        self.sync = redis.Redis.from_url(self.url)
        self._async: dict[int, Any] = {}

    def __repr__(self) -> str:
        return "RedisState(<url hidden>)"

    def _client(self) -> Any:
        """The asyncio client of the running event loop (a redis.asyncio pool is bound to one loop)."""
        loop = id(asyncio.get_running_loop())
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = aredis.Redis.from_url(self.url)
        return client

    def limiter(self, app_user: str, max_concurrency: int) -> Limiter:
        return RedisLimiter(self._client, app_user, min(max_concurrency, self.concurrent),
                            requests=self.requests, window=self.window)

    def token_cache(self, app_user: str) -> RedisTokenCache:
        return RedisTokenCache(self.sync, app_user)

    @contextlib.asynccontextmanager
    async def lock(self, name: str, timeout: float = 60.0) -> AsyncIterator[None]:
        async with self._client().lock(f"{_PREFIX}lock:{name}", timeout=timeout, blocking_timeout=timeout):
            yield

    def read(self, key: str) -> str | None:
        value = self.sync.get(f"{_PREFIX}text:{key}")
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def write(self, key: str, text: str) -> None:
        self.sync.set(f"{_PREFIX}text:{key}", text)


_OPEN: dict[str, RedisState] = {}


def redis_state(url: str) -> RedisState:
    """One RedisState per URL in a process (its pools are shared by the connections using it)."""
    state = _OPEN.get(url)
    if state is None:
        state = _OPEN[url] = RedisState(url)
    return state
