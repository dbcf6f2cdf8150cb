"""Fault injection for the emulator's Web API: throttling, server errors, latency, dropped connections.

Reliability code (retries, Retry-After, timeouts) can only be tested against a server that
misbehaves on purpose. A spec such as
`429=0.1,503=0.05,500=0.02,504=0.01,drop=0.01,latency=20ms,seed=7,route=/api/data/v9.2/accounts`
gives each matching request a 10% chance of a service-protection 429 (with Retry-After), 5% of a
503, ..., 1% of a connection closed without any response, and 20 ms of added latency. `seed` makes
the sequence repeatable: one `random.Random(seed)` is drawn once per matching request, in arrival
order. `route` limits the faults to paths under a prefix (default: the whole Web API); the
identity provider's endpoints are never disturbed.

`app.state.faults` is the `FaultInjector`: `configure(spec | Faults | **fields)` changes the faults
at run time (restarting the seeded sequence), so one session emulator can serve every test, and
`history` lists (path, outcome) per matching request (the latest 100,000).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIX = "/api/data/"
STATUSES = (429, 500, 502, 503, 504)
_ERRORS = {
    429: ("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."),
    500: ("0x80040216", "An unexpected error occurred."),
    502: ("0x80040216", "Bad gateway: the server received an invalid response upstream. Try again later."),
    503: ("0x80040216", "The service is temporarily unavailable. Try again later."),
    504: ("0x80040216", "The request timed out before the server completed it. Try again later."),
}


@dataclass
class Faults:
    """Probabilities per HTTP status (429, 500, 502, 503, 504) and of a dropped connection, plus latency."""

    statuses: dict[int, float] = field(default_factory=dict)
    drop: float = 0.0
    latency: float = 0.0           # seconds added to every matching request
    retry_after: int = 1           # seconds, in the Retry-After header of a 429
    seed: int | None = None
    route: str = API_PREFIX        # only paths starting with this prefix are disturbed

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """`429=0.1,503=0.05,drop=0.01,latency=20ms,retry_after=2,seed=7,route=/api/data/v9.2/accounts`
        (all optional); a ValueError names the part that is wrong."""
        faults = cls()
        for item in filter(None, (part.strip() for part in (spec or "").split(","))):
            name, sep, value = item.partition("=")
            name, value = name.strip().lower(), value.strip()
            try:
                if not sep:
                    raise ValueError
                if name.isdigit() and int(name) in STATUSES:
                    faults.statuses[int(name)] = _probability(value)
                elif name == "drop":
                    faults.drop = _probability(value)
                elif name == "latency":
                    faults.latency = _duration(value)
                elif name in ("retry_after", "retry-after"):
                    faults.retry_after = _whole(value)
                elif name == "seed":
                    faults.seed = _whole(value)
                elif name == "route":
                    if not value.startswith("/"):
                        raise ValueError
                    faults.route = value
                else:
                    raise KeyError(name)
            except KeyError:
                raise ValueError(f"faults: unknown entry '{name}'; use 429, 500, 502, 503, 504, drop, latency, "
                                 "retry_after, seed or route") from None
            except ValueError:
                raise ValueError(f"faults: '{item}' is not valid; expected e.g. 429=0.1, latency=20ms, seed=7 "
                                 "or route=/api/data/v9.2/accounts") from None
        if sum(faults.statuses.values()) + faults.drop > 1 + 1e-9:
            raise ValueError("faults: the probabilities add up to more than 1")
        return faults

    @property
    def active(self) -> bool:
        return bool(self.latency or self.drop or any(self.statuses.values()))

    def __str__(self) -> str:
        parts = [f"{status}={p:g}" for status, p in self.statuses.items()]
        parts += [f"drop={self.drop:g}"] if self.drop else []
        parts += [f"latency={self.latency * 1000:g}ms"] if self.latency else []
        parts += [f"retry_after={self.retry_after}"] if self.retry_after != 1 else []
        parts += [f"seed={self.seed}"] if self.seed is not None else []
        parts += [f"route={self.route}"] if self.route != API_PREFIX else []
        return ",".join(parts) or "none"


FaultSettings = Faults   # the name the extensions use


class FaultInjector:
    """ASGI middleware that disturbs matching requests as its `Faults` say."""

    def __init__(self, app: ASGIApp, faults: Faults | str | None = None) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.configure(faults)

    def configure(self, faults: Faults | str | None = None, **fields: Any) -> Faults:
        """Use new faults (settings, a spec string, or None for none), with `fields` changed;
        the seeded sequence and `history` start over."""
        if isinstance(faults, str):
            faults = Faults.parse(faults)
        faults = replace(faults or Faults(), **fields)
        with self._lock:
            self.faults = faults
            self._random = random.Random(faults.seed)
            self.history: deque[tuple[str, str]] = deque(maxlen=100_000)
        return faults

    def clear(self) -> None:
        """No faults from now on."""
        self.configure(None)

    def _draw(self, path: str) -> str:
        faults = self.faults
        with self._lock:
            roll = self._random.random()
            outcome = "ok"
            for status, probability in faults.statuses.items():
                if roll < probability:
                    outcome = str(status)
                    break
                roll -= probability
            else:
                if roll < faults.drop:
                    outcome = "drop"
            self.history.append((path, outcome))
        return outcome

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.faults
        if scope["type"] != "http" or not faults.active or not scope["path"].startswith(faults.route):
            return await self.app(scope, receive, send)
        outcome = self._draw(scope["path"])
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if outcome == "ok":
            return await self.app(scope, receive, send)
        if outcome == "drop":
            return await _drop(receive, send)
        return await _reply(send, int(outcome), faults.retry_after)


async def _reply(send: Send, status: int, retry_after: int) -> None:
    code, message = _ERRORS[status]
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json; odata.metadata=minimal"), (b"odata-version", b"4.0"),
               (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop(receive: Receive, send: Send) -> None:
    """Close the connection without sending anything: uvicorn's request cycle (the owner of
    `receive`) holds the transport. Elsewhere, promise a body and stop half-way instead."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")]})
        await send({"type": "http.response.body", "body": b'{"value":[', "more_body": True})
        return
    transport.close()
    for _ in range(100):   # let the server see the disconnect, so it sends no 500 of its own
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0.001)


def _probability(value: str) -> float:
    probability = float(value)
    if not 0 <= probability <= 1:
        raise ValueError
    return probability


def _whole(value: str) -> int:
    if not value.isdigit():
        raise ValueError
    return int(value)


def _duration(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s)?", value)
    if not match:
        raise ValueError
    number = float(match.group(1))
    return number / 1000 if match.group(2) in (None, "ms") else number
