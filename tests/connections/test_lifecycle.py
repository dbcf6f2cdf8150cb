"""A connection's life in a busy host: one client and one msal app however many tasks start at once,
an idempotent close, and cancellation that leaves no slot, lock or pooled connection behind."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import pytest_asyncio

from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.connections.retry import Limiter
from d365_components.emulator import defaults
from d365_components.errors import AuthenticationError


@pytest_asyncio.fixture
async def proxied(emulator, fault_proxy):
    """A connection whose Web API traffic goes through the fault proxy."""
    inputs = emulator.connection_inputs(webApiUrl=fault_proxy.url, scopes=f"{emulator.org_url}/.default", maxConcurrency=4)
    connection = ClientCredentialsConnection(inputs)
    yield connection
    await connection.aclose()


async def test_concurrent_first_use_makes_one_client_and_one_msal_app(emulator):
    connection = ClientCredentialsConnection(emulator.connection_inputs())
    made: list[object] = []
    make_app = connection.tokens._make_app

    def counting_make_app():
        time.sleep(0.05)  # widen the window two threads could both make one in
        made.append(make_app())
        return made[-1]

    connection.tokens._make_app = counting_make_app
    clients = set()

    async def use() -> dict:
        client = connection.open_client()
        clients.add(id(client))
        return await client.whoami()

    results = await asyncio.gather(*(use() for _ in range(30)))
    assert {r["OrganizationId"] for r in results} == {defaults.ORGANIZATION_ID}
    assert len(clients) == 1
    assert len(made) == 1
    assert connection.tokens.acquisitions == 1
    await connection.aclose()


async def test_aclose_is_idempotent(emulator):
    connection = ClientCredentialsConnection(emulator.connection_inputs())
    client = connection.open_client()
    await client.whoami()
    await connection.aclose()
    await connection.aclose()
    await client.aclose()
    assert client.closed
    async with connection.open_client() as reopened:  # a closed connection opens a new client
        assert reopened is not client
        assert (await reopened.whoami())["OrganizationId"] == defaults.ORGANIZATION_ID
    await connection.aclose()


async def test_cancelled_requests_leave_no_slot_or_pooled_connection_behind(proxied, fault_proxy):
    client = proxied.open_client()
    await client.whoami()  # the token first
    fault_proxy.delay = 0.5
    tasks = [asyncio.create_task(client.whoami()) for _ in range(12)]  # 4 in flight, 8 waiting for a slot
    await asyncio.sleep(0.1)
    assert client.limiter.in_flight == 4
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert client.limiter.in_flight == 0
    assert not client.limiter._waiters
    pool = client._http._transport._pool
    assert all(c.is_idle() or c.is_closed() for c in pool.connections)
    fault_proxy.delay = 0
    started = time.monotonic()
    assert (await asyncio.wait_for(client.whoami(), 5))["OrganizationId"] == defaults.ORGANIZATION_ID
    assert time.monotonic() - started < 2


async def test_a_cancelled_refresh_does_not_hold_the_token_lock(emulator):
    connection = ClientCredentialsConnection(emulator.connection_inputs())
    source = connection.tokens
    slow = threading.Event()
    acquire = source.acquire

    def slow_acquire(force: bool = False):
        if not slow.is_set():
            slow.set()
            time.sleep(0.3)
        return acquire(force)

    source.acquire = slow_acquire
    first = asyncio.create_task(source.token())
    await asyncio.sleep(0.05)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    token = await asyncio.wait_for(source.token(), 5)  # the lock was released: no deadlock
    assert token
    await connection.aclose()


async def test_limiter_survives_cancellation_while_waiting_and_paused():
    limiter = Limiter(1)
    holder_may_go = asyncio.Event()

    async def hold() -> None:
        async with limiter.slot():
            await holder_may_go.wait()

    async def quick() -> str:
        async with limiter.slot():
            return "ran"

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(quick()) for _ in range(3)]
    await asyncio.sleep(0.01)
    waiting[0].cancel()
    waiting[0].cancel()  # cancelled twice, as by a timeout and its caller
    holder_may_go.set()
    results = await asyncio.gather(holder, *waiting, return_exceptions=True)
    assert results[2:] == ["ran", "ran"]
    assert limiter.in_flight == 0

    limiter.pause(0.2)
    paused = asyncio.create_task(quick())
    await asyncio.sleep(0.05)
    paused.cancel()
    await asyncio.gather(paused, return_exceptions=True)
    assert limiter.in_flight == 0
    assert await asyncio.wait_for(quick(), 1) == "ran"


async def test_a_failed_refresh_is_shared_by_the_requests_that_waited_for_it(emulator):
    """With the identity provider down, fifty waiting requests must not queue fifty sign-ins
    (each up to a minute long): they share the one failure; the next request tries again."""
    connection = ClientCredentialsConnection(emulator.connection_inputs())
    source = connection.tokens
    calls: list[float] = []

    def failing_acquire(force: bool = False):
        calls.append(time.monotonic())
        time.sleep(0.1)
        return {"error": "temporarily_unavailable", "error_description": "AADSTS50000: the service is down"}

    source.acquire = failing_acquire
    results = await asyncio.gather(*(source.token() for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert len(calls) == 1
    with pytest.raises(AuthenticationError):
        await source.token()
    assert len(calls) == 2
    await connection.aclose()
