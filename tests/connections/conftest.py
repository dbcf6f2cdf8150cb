"""A fault proxy for reliability tests: a real TCP server on loopback between the client and the
emulator that, request by request, forwards, answers 429/5xx, stalls, or drops the connection
(before the request reaches the emulator, or after it acted: `apply-drop`).

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) for our client, which never
sends chunked requests. Faults are scripted per request in arrival order; when the script runs
out every request is forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest_asyncio

_DROP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Seen:
    method: str
    path: str
    at: float
    action: str


@dataclass
class FaultProxy:
    upstream: str
    verify: object
    script: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    #: extra headers added to every forwarded answer (e.g. the rate-limit counters)
    extra_headers: dict[str, str] = field(default_factory=dict)
    #: seconds each forwarded request is held (to measure concurrency)
    delay: float = 0.0
    in_flight: int = 0
    peak: int = 0

    async def start(self) -> None:
        self._client = httpx.AsyncClient(verify=self.verify, timeout=30, trust_env=False)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        await self._client.aclose()

    def requests(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if method is None or s.method == method]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: list[tuple[str, str]] = []
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers.append((name.strip(), value.strip()))
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length) if length else b""
                action = self.script.pop(0) if self.script else "forward"
                self.seen.append(Seen(method, target.split("?")[0], time.monotonic(), action))
                if action == "drop":  # the request arrived in full; the answer never comes
                    writer.transport.abort()
                    return
                if action == "apply-drop":  # the server acts on the request; its answer is lost
                    await self._forward(None, method, target, headers, body)
                    writer.transport.abort()
                    return
                if action.startswith("stall"):  # stall:<seconds>, then drop
                    await asyncio.sleep(float(action.split(":")[1]))
                    writer.transport.abort()
                    return
                if action.startswith("429"):  # 429 or 429:<retry-after>
                    retry_after = action.split(":")[1] if ":" in action else "0"
                    await self._answer(writer, 429, {"Retry-After": retry_after, "Content-Type": "application/json"},
                                       b'{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}')
                    continue
                if action == "ok":  # a canned create answer, for writes the emulator need not see
                    entity_id = f"{self.url}/api/data/v9.2/accounts(00000000-0000-4000-8000-0000000000f1)"
                    await self._answer(writer, 204, {"OData-EntityId": entity_id}, b"")
                    continue
                if action[:3].isdigit():  # <status> or <status>:<dataverse code>
                    status, _, code = action.partition(":")
                    body = '{{"error":{{"code":"{}","message":"Injected failure for {}."}}}}'.format(code or "0x0", target)
                    await self._answer(writer, int(status), {"Content-Type": "application/json"}, body.encode())
                    continue
                await self._forward(writer, method, target, headers, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _forward(self, writer, method, target, headers, body) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            forwarded = [(k, v) for k, v in headers if k.lower() not in _DROP_HEADERS]
            response = await self._client.request(method, self.upstream + target, headers=forwarded, content=body)
        finally:
            self.in_flight -= 1
        if writer is None:
            return
        out = {k: v for k, v in response.headers.items() if k.lower() not in _DROP_HEADERS | {"content-encoding"}}
        out.update(self.extra_headers)
        await self._answer(writer, response.status_code, out, response.content)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {httpx.codes.get_reason_phrase(status) or 'Status'}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"Content-Length: {len(body)}", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1") + body)
        await writer.drain()


@pytest_asyncio.fixture
async def fault_proxy(emulator) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the session emulator's Web API."""
    proxy = FaultProxy(upstream=emulator.org_url, verify=emulator.ssl_context)
    await proxy.start()
    yield proxy
    await proxy.stop()
