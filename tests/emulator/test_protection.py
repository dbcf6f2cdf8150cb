"""Service protection limits over HTTPS: request count, execution time and concurrency answer 429
with Retry-After and the documented codes; every response carries the x-ms-ratelimit headers."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from d365_components.emulator.extensions import EmulatorFeatures, install
from d365_components.emulator.limits.protection import Limits
from d365_components.emulator.server import Emulator

BURST = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME = "x-ms-ratelimit-time-remaining-xrm-requests"


@pytest.fixture(scope="module")
def emulator():
    emulator = Emulator(seed=None)
    emulator.app = install(emulator.app, settings=EmulatorFeatures(webhooks=False))
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def token(emulator):
    return emulator.get_token()


@pytest.fixture
def protection(emulator):
    protection = emulator.app.state.protection
    protection.reset()
    yield protection
    protection.configure(Limits())
    protection.reset()
    emulator.app.state.faults.clear()


def who_am_i(emulator, token):
    return httpx.get(f"{emulator.api_url}/WhoAmI", headers={"Authorization": f"Bearer {token}"},
                     verify=emulator.ssl_context)


def test_every_response_reports_what_remains(emulator, token, protection):
    first, second = who_am_i(emulator, token), who_am_i(emulator, token)
    assert first.status_code == 200
    assert int(first.headers[BURST]) == 5999 and int(second.headers[BURST]) == 5998
    assert 1190 <= int(second.headers[TIME]) <= 1200


def test_request_count_limit(emulator, token, protection):
    protection.configure(requests=3, window=60)
    statuses = [who_am_i(emulator, token) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert [r.headers[BURST] for r in statuses[:3]] == ["2", "1", "0"]
    throttled = statuses[-1]
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert throttled.json()["error"] == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 3 over time window of 60 seconds."}
    assert throttled.headers[BURST] == "0" and TIME in throttled.headers
    # another user has its own window; the token endpoint is never limited
    assert emulator.get_token()


def test_execution_time_limit(emulator, token, protection):
    protection.configure(execution_time=0.3, window=30)
    emulator.app.state.faults.configure("latency=200ms")      # slow requests: they still count
    statuses = [who_am_i(emulator, token) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    error = statuses[-1].json()["error"]
    assert error["code"] == "0x80072321"
    assert error["message"].startswith("Combined execution time of incoming requests exceeded limit of 300 "
                                       "milliseconds over time window of 30 seconds.")
    assert 1 <= int(statuses[-1].headers["Retry-After"]) <= 30


async def test_concurrency_limit(emulator, token, protection):
    protection.configure(concurrent=2)
    emulator.app.state.faults.configure("latency=300ms")
    async with httpx.AsyncClient(verify=emulator.ssl_context, headers={"Authorization": f"Bearer {token}"}) as client:
        responses = await asyncio.gather(*(client.get(f"{emulator.api_url}/WhoAmI") for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429, 429]
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json()["error"] == {"code": "0x80072326",
                                         "message": "Number of concurrent requests exceeded the limit of 2."}
    assert throttled.headers["Retry-After"] == "1"


def test_forced_throttling_hook(emulator, token, protection):
    protection.force_next(2, retry_after=5)
    statuses = [who_am_i(emulator, token) for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["Retry-After"] == "5"


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="Limits.requests"):
        Limits(requests=0)


def test_a_batch_counts_as_one_request(emulator, token, protection):
    parts = "".join(f"--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                    f"GET {emulator.api_url}/WhoAmI HTTP/1.1\r\nAccept: application/json\r\n\r\n" for _ in range(3))
    response = httpx.post(f"{emulator.api_url}/$batch", content=parts + "--batch_x--\r\n",
                          headers={"Authorization": f"Bearer {token}",
                                   "Content-Type": "multipart/mixed; boundary=batch_x"},
                          verify=emulator.ssl_context)
    assert response.status_code == 200, response.text
    assert response.text.count("HTTP/1.1 200") == 3
    assert response.headers[BURST] == "5999"
