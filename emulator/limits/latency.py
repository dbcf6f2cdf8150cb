"""Realistic server time for benchmarks: every Web API request waits `per_request` plus `per_row`
for each row it writes, as an asyncio sleep (no CPU), so concurrency pays off as it does against
Dataverse, where a request spends most of its time in the service, not on the wire.

Spec: `30ms,per-row=0.2ms` (the first figure is per request; units ms or s). Rows are counted
cheaply in the request body as it streams by: the `"@odata.type"` annotations of a
CreateMultiple / UpsertMultiple / UpdateMultiple body (Dataverse requires one per target), the
`application/http` parts of a `$batch`, one row for any other request. The wait happens before
the response starts, after the app has read the whole body.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/api/data/"
_TARGET = b'"@odata.type"'
_PART = b"application/http"
_OVERLAP = max(len(_TARGET), len(_PART))
_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")


def _seconds(text: str) -> float:
    match = _AMOUNT.match(text.strip())
    if match is None:
        raise ValueError(f"latency: '{text}' is not a duration; expected e.g. 30ms or 0.2ms")
    amount = float(match.group(1))
    return amount / 1000 if match.group(2) == "ms" else amount


@dataclass(frozen=True)
class Latency:
    """Seconds of server time per request and per written row."""

    per_request: float = 0.0
    per_row: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> Latency:
        """`30ms`, `30ms,per-row=0.2ms` or `per-row=1ms`."""
        per_request = per_row = 0.0
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition("=")
            if not value:
                per_request = _seconds(name)
            elif name.strip() == "per-row":
                per_row = _seconds(value)
            else:
                raise ValueError(f"latency: unknown entry '{name}'; use e.g. '30ms,per-row=0.2ms'")
        return cls(per_request, per_row)

    def __str__(self) -> str:
        return f"{self.per_request * 1000:g}ms,per-row={self.per_row * 1000:g}ms"


class BodyMarkers:
    """Counts the row markers of a request body fed chunk by chunk (a marker may span two chunks)."""

    def __init__(self) -> None:
        self.targets = 0
        self.parts = 0
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        window = self._tail + chunk
        self.targets += window.count(_TARGET) - self._tail.count(_TARGET)
        self.parts += window.count(_PART) - self._tail.count(_PART)
        self._tail = window[-_OVERLAP:]

    def rows(self, path: str) -> int:
        """Rows the request writes: targets of a *Multiple message, parts of a $batch, else one."""
        if path.endswith("/$batch"):
            return max(self.parts, 1)
        if path.endswith(("Multiple", "Multiple/")):
            return max(self.targets, 1)
        return 1


class LatencyMiddleware:
    """ASGI middleware adding `Latency` to Web API requests (others pass straight through)."""

    def __init__(self, app: ASGIApp, latency: Latency) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        markers = BodyMarkers()
        waited = False

        async def counting_receive() -> Message:
            message = await receive()
            chunk = message.get("body", b"")
            if chunk and self.latency.per_row:
                markers.feed(chunk)
            return message

        async def waiting_send(message: Message) -> None:
            nonlocal waited
            if message["type"] == "http.response.start" and not waited:
                waited = True
                await asyncio.sleep(self.latency.per_request + self.latency.per_row * markers.rows(path))
            await send(message)

        await self.app(scope, counting_receive, waiting_send)
