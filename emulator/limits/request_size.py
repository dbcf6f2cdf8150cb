"""Request size limits: oversized headers answer 431 and oversized bodies 413, before the body is read.

Dataverse sits behind front ends that refuse huge requests outright; without limits the emulator
would read (and hold) whatever it is sent. Headers are checked as soon as the request arrives
(uvicorn has parsed them, the body is still unread); a body is refused from its Content-Length,
or, when it is chunked, as soon as the bytes received pass the limit.

UNCONFIRMED: the exact limits of Dataverse's front ends are not published; these are generous
(far above any real client's needs) so that only abuse meets them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from d365_components.emulator.protocol.errors import error_body

MAX_HEADER_BYTES = 64 * 1024        # all names and values together
MAX_HEADERS = 200                   # header lines
MAX_BODY_BYTES = 128 * 1024 * 1024  # the largest single-request file upload Dataverse takes
TOO_LARGE_CODE = "0x80040203"       # UNCONFIRMED: Dataverse's InvalidArgument; front ends send no code


class _BodyTooLarge(BaseException):
    """A BaseException so that no error handler on the way (Starlette answers 500 to an
    Exception) turns it into a response before this middleware answers 413."""


class RequestSize:
    """ASGI middleware: 431 for too many or too large headers, 413 for a too large body."""

    def __init__(self, app: ASGIApp, *, max_header_bytes: int = MAX_HEADER_BYTES, max_headers: int = MAX_HEADERS,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if len(headers) > self.max_headers or sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            await _refuse(send, 431, "The request's headers are too large.")
            return
        length = next((v for k, v in headers if k == b"content-length"), b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await _refuse(send, 413, f"The request body is larger than {self.max_body_bytes} bytes.")
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise _BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            if started:
                raise
            await _refuse(send, 413, f"The request body is larger than {self.max_body_bytes} bytes.")


async def _refuse(send: Send, status: int, message: str) -> None:
    body = error_body(TOO_LARGE_CODE, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; odata.metadata=minimal"),
                            (b"odata-version", b"4.0"), (b"connection", b"close"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
