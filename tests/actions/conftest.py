"""Fixtures for action tests: one open connection to the shared emulator, a `run` helper, and a
connection that fails the test if an action sends any request (for input-validation tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio

from d365_components.definitions import Connection
from d365_components.registry import get_registry
from d365_components.runtime import invoke, open_connection

CONNECTION_KEY = "dynamics365.oauth2_client_credentials"


@pytest_asyncio.fixture(scope="session")
async def connection(emulator) -> AsyncIterator[Connection]:
    """An open client-credentials connection to the shared emulator (one pool for the session)."""
    conn = open_connection({"key": CONNECTION_KEY, "inputs": emulator.connection_inputs()})
    yield conn
    await conn.aclose()


class _NoRequests(httpx.AsyncBaseTransport):
    """A transport that records and refuses every request."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        raise AssertionError(f"no request expected, got {request.method} {request.url}")


@pytest_asyncio.fixture
async def offline_connection(emulator) -> AsyncIterator[Connection]:
    """A connection whose client refuses to send anything: `offline_connection.sent` lists attempts."""
    conn = open_connection({"key": CONNECTION_KEY, "inputs": emulator.connection_inputs()})
    transport = _NoRequests()
    conn.open_client(transport=transport)
    conn.sent = transport.sent  # type: ignore[attr-defined]
    yield conn
    await conn.aclose()


def check_output(key: str, output: Any) -> Any:
    """Validate an action's output against its declared output schema; return it."""
    schema = get_registry().get(key, "actions").output_json_schema()
    if schema is not None:
        jsonschema.Draft202012Validator(schema).validate(output)
    return output


@pytest.fixture
def run(connection: Connection) -> Callable[..., Awaitable[Any]]:
    """`await run(key, inputs)`: invoke an action on the shared connection (or `connection=`
    another), output checked against the action's output schema."""

    async def call(key: str, inputs: dict[str, Any] | None = None, *, connection: Connection | None = None, **kwargs: Any) -> Any:
        return check_output(key, await invoke(key, inputs or {}, connection or shared, **kwargs))

    shared = connection

    return call
