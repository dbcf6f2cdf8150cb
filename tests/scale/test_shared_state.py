"""The shared state on a real Redis: one budget, one token cache, locks and journals for every
process of an app user; the in-process default unchanged."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import redis

from d365_components import runtime
from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.connections.redis_state import RedisLimiter, RedisState
from d365_components.connections.retry import Limiter
from d365_components.connections.shared_state import InProcessState, app_user_key, open_shared_state
from d365_components.errors import ConnectionConfigError


def test_the_setting_is_published_write_only() -> None:
    prop = ClientCredentialsConnection.input_schema()["properties"]["sharedStateUrl"]
    assert prop["writeOnly"] is True
    assert prop["title"] and prop["description"]


def test_in_process_is_the_default(connection_spec) -> None:
    connection = ClientCredentialsConnection(connection_spec(0)["inputs"])
    assert isinstance(connection.shared, InProcessState)
    assert type(connection.open_client().limiter) is Limiter


def test_a_bad_url_names_the_setting() -> None:
    with pytest.raises(ConnectionConfigError, match="sharedStateUrl"):
        RedisState("http://127.0.0.1:1/0")


async def test_connections_of_one_app_user_ask_one_token(org, connection_spec, clean_redis) -> None:
    """Three connections (as three processes would) share the token cache: one token request."""
    client_id = org.app_user_credentials[1][0]
    before = org.identity.issued_to[client_id]
    connections = [ClientCredentialsConnection(connection_spec(1, sharedStateUrl=clean_redis)["inputs"])
                   for _ in range(3)]
    try:
        answers = await asyncio.gather(*(c.open_client().whoami() for c in connections))
    finally:
        for connection in connections:
            await connection.aclose()
    assert {a["UserId"] for a in answers} and len({a["UserId"] for a in answers}) == 1
    assert org.identity.issued_to[client_id] - before == 1
    assert all(isinstance(c.open_client().limiter, RedisLimiter) for c in connections)


async def test_concurrency_is_one_budget_for_the_fleet(clean_redis) -> None:
    """Two limiters (two processes) of one app user never hold more slots than the shared limit."""
    state = RedisState(clean_redis + "?concurrent=3")
    limiters = [state.limiter("org|app", 52), RedisState(clean_redis + "?concurrent=3").limiter("org|app", 52)]
    holding = peak = 0

    async def request(limiter: Limiter) -> None:
        nonlocal holding, peak
        async with limiter.slot():
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.01)
            holding -= 1

    await asyncio.gather(*(request(limiters[n % 2]) for n in range(20)))
    assert peak == 3


async def test_the_request_window_and_a_retry_after_are_shared(clean_redis) -> None:
    store = redis.Redis.from_url(clean_redis)
    first = RedisState(clean_redis + "?requests=2&window=60").limiter("org|app2", 52)
    for _ in range(2):
        async with first.slot():
            pass
    other = RedisState(clean_redis + "?requests=2&window=60").limiter("org|app2", 52)
    with pytest.raises(TimeoutError):  # the window is spent for every process of the app user
        await asyncio.wait_for(other._take_shared("probe"), 0.3)
    assert store.zcard("d365:budget:org|app2:window") == 2
    first.pause(30)  # a 429's Retry-After pauses the fleet
    await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert store.pttl("d365:budget:org|app2:pause") > 20_000
    # the fleet's concurrency narrows as the server's burst budget runs low (the last tenth of it)
    big = RedisState(clean_redis + "?requests=1000&window=60").limiter("org|app3", 52)
    big.observe(httpx.Headers({"x-ms-ratelimit-burst-remaining-xrm-requests": "10"}))
    await asyncio.sleep(0.05)
    assert int(store.get("d365:budget:org|app3:limit")) == big.limit == 6


async def test_named_locks_take_turns(clean_redis) -> None:
    state = RedisState(clean_redis)
    order: list[str] = []

    async def hold(name: str) -> None:
        async with state.lock("webhook:accounts", timeout=5):
            order.append(f"{name}+")
            await asyncio.sleep(0.02)
            order.append(f"{name}-")

    await asyncio.gather(hold("a"), hold("b"))
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])


async def test_a_bulk_journal_lives_in_redis(org, connection_spec, clean_redis) -> None:
    spec = connection_spec(0, sharedStateUrl=clean_redis)
    rows = [{"name": f"J {i}"} for i in range(6)]
    inputs = {"entityType": "accounts", "rows": rows, "chunkSize": 2, "journalFile": "runs/j-1"}
    output = await runtime.invoke("dynamics365.bulk_create", inputs, spec)
    assert output["written"] == 6
    saved = json.loads(open_shared_state(clean_redis).read("journal:runs/j-1") or "{}")
    assert saved["done"] == [0, 1, 2] and saved["runId"] == output["runId"]
    again = await runtime.invoke("dynamics365.bulk_create", inputs, spec)  # resumed: nothing sent
    assert again["alreadyWritten"] == 6 and again["results"] == []


def test_app_user_key_is_org_and_client() -> None:
    assert app_user_key("https://Org.crm.dynamics.com/", "ABC") == "https://org.crm.dynamics.com|abc"
