"""Holding an ASGI app's answer back: middlewares that must see (or replace) the whole response
before it goes out — change tracking, synchronous webhook steps — run the app through this."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope

__all__ = ["buffered"]


async def buffered(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, list[Any], bytes]:
    """Run `app` and return its (status, headers, body) instead of sending them."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)
