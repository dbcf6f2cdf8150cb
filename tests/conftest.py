"""Fixtures shared by the whole suite: a running emulator, an authenticated Web API client, and a
factory for emulators a test wants to itself (short token lifetimes, plain http...)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import pytest_asyncio

from d365_components.emulator.server import Emulator
from d365_components.registry import LOAD_PLUGINS_ENV

# The suite checks our own component: third-party d365_components plugins installed in this
# environment stay out of the registry (tests that want a plugin load it themselves).
os.environ[LOAD_PLUGINS_ENV] = "0"

ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "If-None-Match": "null",
}


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The suite's emulated org (HTTPS, demo seed), started once."""
    with Emulator(seed="demo") as running:
        yield running


@pytest.fixture(scope="session")
def emulator_token(emulator: Emulator) -> str:
    """A client-credentials access token for `emulator` (valid for the whole session)."""
    return emulator.get_token()


@pytest_asyncio.fixture
async def api(emulator: Emulator, emulator_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the emulator's Web API (`api.get("accounts")`), bearer token and OData headers set."""
    async with httpx.AsyncClient(
        base_url=emulator.api_url + "/",
        verify=emulator.ssl_context,
        headers={**ODATA_HEADERS, "Authorization": f"Bearer {emulator_token}"},
        timeout=30,
    ) as client:
        yield client


@pytest.fixture
def fresh_emulator() -> Iterator[Callable[..., Emulator]]:
    """`fresh_emulator(**Emulator kwargs)` starts a private emulator, stopped when the test ends."""
    started: list[Emulator] = []

    def start(**kwargs) -> Emulator:
        emulator = Emulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
