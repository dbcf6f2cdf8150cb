"""Fault injection over HTTPS on one emulator reconfigured at run time: reproducible from a seed,
Dataverse error bodies, dropped connections reach the client as protocol errors, route prefixes."""

from __future__ import annotations

import time

import httpx
import pytest

from d365_components.emulator.extensions import EmulatorFeatures, install
from d365_components.emulator.limits.faults import FaultSettings
from d365_components.emulator.server import Emulator


@pytest.fixture(scope="module")
def emulator():
    emulator = Emulator(seed="demo")
    emulator.app = install(emulator.app, settings=EmulatorFeatures(webhooks=False, limits=None))
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def token(emulator):
    return emulator.get_token()


@pytest.fixture
def faults(emulator):
    faults = emulator.app.state.faults
    yield faults
    faults.clear()


def outcomes(emulator, token, path="WhoAmI", n=30) -> list:
    out = []
    with httpx.Client(verify=emulator.ssl_context, headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(n):
            try:
                out.append(client.get(f"{emulator.api_url}/{path}").status_code)
            except httpx.RemoteProtocolError:
                out.append("dropped")
    return out


def test_the_same_seed_gives_the_same_faults(emulator, token, faults):
    spec = "429=0.2,500=0.1,503=0.1,504=0.1,drop=0.1,seed=7"
    faults.configure(spec)
    first = outcomes(emulator, token)
    first_history = list(faults.history)
    assert len(first_history) == 30
    faults.configure(spec)
    assert outcomes(emulator, token) == first
    assert list(faults.history) == first_history
    assert {200, 429, 500, 503, 504, "dropped"} <= set(first)
    faults.configure(spec, seed=8)
    assert outcomes(emulator, token) != first


def test_error_bodies_and_retry_after(emulator, token, faults):
    with httpx.Client(verify=emulator.ssl_context, headers={"Authorization": f"Bearer {token}"}) as client:
        for status in (429, 500, 502, 503, 504):
            faults.configure(f"{status}=1,retry_after=9")
            response = client.get(f"{emulator.api_url}/WhoAmI")
            assert response.status_code == status
            error = response.json()["error"]
            assert error["code"].startswith("0x8") and error["message"]
            assert response.headers["OData-Version"] == "4.0"
            assert response.headers.get("Retry-After") == ("9" if status == 429 else None)


async def test_dropped_connections_are_protocol_errors(emulator, token, faults):
    faults.configure("drop=1")
    async with httpx.AsyncClient(verify=emulator.ssl_context, headers={"Authorization": f"Bearer {token}"}) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{emulator.api_url}/WhoAmI")
        faults.clear()                           # the client recovers on a new connection
        assert (await client.get(f"{emulator.api_url}/WhoAmI")).status_code == 200


def test_route_prefix_and_latency(emulator, token, faults):
    faults.configure("503=1,latency=150ms,route=/api/data/v9.2/accounts")
    assert outcomes(emulator, token, "accounts?$select=name", n=2) == [503, 503]
    started = time.perf_counter()
    assert outcomes(emulator, token, "contacts?$select=fullname", n=1) == [200]
    assert time.perf_counter() - started < 0.15            # other routes: no fault, no latency
    faults.configure("latency=150ms")
    started = time.perf_counter()
    assert outcomes(emulator, token, "contacts?$select=fullname", n=1) == [200]
    assert time.perf_counter() - started >= 0.15


def test_spec_errors_name_the_bad_part():
    settings = FaultSettings.parse("429=0.1,503=0.05,500=0.02,504=0.01,drop=0.01,latency=20ms,seed=7,"
                                   "route=/api/data/v9.2/accounts")
    assert settings.statuses == {429: 0.1, 503: 0.05, 500: 0.02, 504: 0.01}
    assert (settings.drop, settings.latency, settings.seed, settings.route) == (0.01, 0.02, 7, "/api/data/v9.2/accounts")
    assert FaultSettings.parse(str(settings)) == settings
    for spec, message in [("429=0.1,teapot=1", "unknown entry 'teapot'"), ("503=lots", "'503=lots' is not valid"),
                          ("latency=soon", "'latency=soon' is not valid"), ("seed=-1", "'seed=-1' is not valid"),
                          ("route=accounts", "'route=accounts' is not valid"), ("429", "'429' is not valid"),
                          ("429=0.6,drop=0.6", "more than 1")]:
        with pytest.raises(ValueError, match=message):
            FaultSettings.parse(spec)
