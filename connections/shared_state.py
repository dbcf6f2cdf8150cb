"""What the processes using one app user must share, and the in-process default.

Dataverse counts its service-protection limits per application user, not per process: N workers
with one app user spend one budget. A connection therefore takes its rate limiter, its msal token
cache, its named locks and its small saved texts (bulk journals, extract states) from a
:class:`SharedState`. The default, :class:`InProcessState`, keeps them in this process (what a
single process needs); ``sharedStateUrl: redis://...`` puts them on Redis for the whole fleet
(:mod:`d365_components.connections.redis_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Protocol

import msal

from d365_components.connections.redis_state import redis_state
from d365_components.connections.retry import Limiter

__all__ = ["InProcessState", "SharedState", "app_user_key", "open_shared_state"]


def app_user_key(org_url: str, client_id: str) -> str:
    """The name of one app user's budget: the org and the app registration acting in it."""
    return f"{org_url.rstrip('/').lower()}|{client_id.lower()}"


class SharedState(Protocol):
    """Where a connection keeps what every process of its app user must see alike."""

    def limiter(self, app_user: str, max_concurrency: int) -> Limiter:
        """The gate every request of ``app_user`` passes (window, concurrency, Retry-After pause)."""
        ...

    def token_cache(self, app_user: str) -> msal.SerializableTokenCache:
        """The msal cache holding ``app_user``'s tokens."""
        ...

    def lock(self, name: str, timeout: float = 60.0) -> contextlib.AbstractAsyncContextManager[None]:
        """Take turns on ``name`` (for instance one webhook registration)."""
        ...

    def read(self, key: str) -> str | None:
        """A saved text (a journal, an extract state), or None."""
        ...

    def write(self, key: str, text: str) -> None:
        """Save ``text`` under ``key``, replacing it whole."""
        ...


class InProcessState:
    """The default: everything in this process's memory."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return "InProcessState()"

    def limiter(self, app_user: str, max_concurrency: int) -> Limiter:
        return Limiter(max_concurrency)

    def token_cache(self, app_user: str) -> msal.SerializableTokenCache:
        return msal.SerializableTokenCache()

    @contextlib.asynccontextmanager
    async def lock(self, name: str, timeout: float = 60.0) -> AsyncIterator[None]:
        async with self._locks.setdefault(name, asyncio.Lock()):
            yield

    def read(self, key: str) -> str | None:
        with self._guard:
            return self._texts.get(key)

    def write(self, key: str, text: str) -> None:
        with self._guard:
            self._texts[key] = text


IN_PROCESS = InProcessState()


def open_shared_state(url: str | None) -> SharedState:
    """The state a connection uses: this process's (no URL), or Redis's (``redis://...``)."""
    return redis_state(url) if url else IN_PROCESS
