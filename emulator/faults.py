"""Fault injection for the emulator's Web API: throttling, server errors, latency, dropped responses.

Reliability code (retries, Retry-After, timeouts) can only be tested against a server that
misbehaves on purpose. A spec such as `429=0.1,503=0.05,drop=0.01,latency=20ms,seed=7` gives each
Web API request a 10% chance of a service-protection 429, 5% of a 503, 1% of a response cut off
mid-body, and 20 ms of added latency; `seed` makes the sequence repeatable. The identity
provider's endpoints are never disturbed.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass, field

API_PREFIX = "/api/data/"
THROTTLED = {"error": {"code": "0x80072322",
                       "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}
SERVER_ERROR = {"error": {"code": "0x80040216", "message": "An unexpected error occurred."}}


@dataclass
class Faults:
    """Probabilities per HTTP status (429, 500, 502, 503, 504) and of a dropped response, plus latency."""

    statuses: dict[int, float] = field(default_factory=dict)
    drop: float = 0.0
    latency: float = 0.0           # seconds added to every Web API request
    retry_after: int = 1           # seconds, in the Retry-After header of a 429
    seed: int | None = None

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """`429=0.1,503=0.05,drop=0.01,latency=20ms,retry_after=2,seed=7` (all optional)."""
        faults = cls()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip().lower()
            try:
                if not sep:
                    raise ValueError
                if name.isdigit() and int(name) in (429, 500, 502, 503, 504):
                    faults.statuses[int(name)] = _probability(value)
                elif name == "drop":
                    faults.drop = _probability(value)
                elif name == "latency":
                    faults.latency = _duration(value)
                elif name == "retry_after":
                    faults.retry_after = int(value)
                elif name == "seed":
                    faults.seed = int(value)
                else:
                    raise KeyError(name)
            except KeyError:
                raise ValueError(f"faults: unknown entry '{name}'; use 429, 500, 502, 503, 504, drop, latency, "
                                 "retry_after or seed") from None
            except ValueError:
                raise ValueError(f"faults: '{item}' is not valid; expected e.g. 429=0.1 or latency=20ms") from None
        if sum(faults.statuses.values()) + faults.drop > 1:
            raise ValueError("faults: the probabilities add up to more than 1")
        return faults


class FaultInjector:
    """ASGI middleware that disturbs Web API requests as its `Faults` say."""

    def __init__(self, app, faults: Faults):
        self.app = app
        self.faults = faults
        self._random = random.Random(faults.seed)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            return await self.app(scope, receive, send)
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        roll = self._random.random()
        for status, probability in self.faults.statuses.items():
            if roll < probability:
                return await _reply(send, status, self.faults.retry_after)
            roll -= probability
        if roll < self.faults.drop:
            return await _drop(send)
        return await self.app(scope, receive, send)


async def _reply(send, status: int, retry_after: int) -> None:
    headers = [(b"odata-version", b"4.0")]
    if status in (429, 500):
        body = json.dumps(THROTTLED if status == 429 else SERVER_ERROR).encode()
        headers.append((b"content-type", b"application/json; odata.metadata=minimal"))
    else:
        body = {502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout"}[status]
        headers.append((b"content-type", b"text/plain"))
    if status == 429:
        headers.append((b"retry-after", str(retry_after).encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop(send) -> None:
    """Promise a body and return half-way: uvicorn closes the connection, the client sees it cut."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")]})
    await send({"type": "http.response.body", "body": b'{"value":[', "more_body": True})


def _probability(value: str) -> float:
    probability = float(value)
    if not 0 <= probability <= 1:
        raise ValueError
    return probability


def _duration(value: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", value)
    if not match:
        raise ValueError
    number = float(match.group(1))
    return number / 1000 if match.group(2) in (None, "ms") else number
