"""OData `$batch` for the emulator: multipart/mixed in, multipart/mixed out (reference §5).

Parts run in order through the app's own `dispatch`, so a request behaves the same inside a batch
as outside. A change set is one store transaction: the first failing part rolls it back and its
error answers for the whole change set. `$n` Content-ID references resolve to the entity URL an
earlier part of the same change set created. Without `Prefer: odata.continue-on-error` the batch
stops at the first failure and takes its status. Parts run as the batch's caller; outer headers
(Prefer, CallerObjectId, MSCRM.*) are not copied into parts (Dataverse's behaviour there is
unconfirmed), so clients set them per part. JSON batches (OData 4.01) are refused, as in Dataverse.

The MIME parser is our own, small and strict about structure: the standard library `email`
package rewrites line endings and knows nothing of embedded HTTP request lines, and
python-multipart only speaks form-data. This one accepts CRLF and bare LF alike.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from d365_components.emulator.identity.oauth import InvalidToken
from d365_components.emulator.identity.provider import IdentityProvider
from d365_components.emulator.protocol.errors import INVALID_ARGUMENT, ODATA_ERROR, error_body

MAX_REQUESTS = 1000
JSON_ERROR_TYPE = "application/json; odata.metadata=minimal"
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_NEWLINE = re.compile(rb"\r?\n")
_REFERENCE = re.compile(r"^\$([^/?$]+)(.*)$", re.S)


class BatchError(Exception):
    """The batch as a whole is malformed: answered with one 400 before any part runs."""

    def __init__(self, message: str, code: str = ODATA_ERROR):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Part:
    """One embedded HTTP request."""

    method: str
    url: str
    headers: dict[str, str]          # lower-case names
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    parts: list[Part] = field(default_factory=list)


@dataclass
class Answer:
    """One embedded HTTP response, ready to be written as an application/http part."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    content_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.status >= 400


class _RollBack(Exception):
    def __init__(self, answer: Answer):
        self.answer = answer


async def handle_batch(request: Request) -> Response:
    """`POST {api}/$batch`."""
    identity: IdentityProvider = request.app.state.identity
    try:
        caller = identity.verify(request.headers.get("authorization"))
    except InvalidToken as exc:
        return identity.unauthorized(exc)
    try:
        boundary = _boundary(request.headers.get("content-type", ""))
        items = await anyio.to_thread.run_sync(parse_batch, await request.body(), boundary)   # MBs: off the loop
        count = sum(len(item.parts) if isinstance(item, ChangeSet) else 1 for item in items)
        if count > MAX_REQUESTS:
            raise BatchError(f"The number of requests in a batch ({count}) exceeds the maximum of "
                             f"{MAX_REQUESTS}. Split the batch.", INVALID_ARGUMENT)
    except BatchError as exc:
        return Response(error_body(exc.code, exc.message), status_code=400,
                        headers={"Content-Type": JSON_ERROR_TYPE, "OData-Version": "4.0"})

    continue_on_error = "odata.continue-on-error" in request.headers.get("prefer", "").lower()
    runner = _Runner(request, caller)
    out: list[Answer | list[Answer]] = []
    status = 200
    for item in items:
        result = await (runner.change_set(item) if isinstance(item, ChangeSet) else runner.single(item))
        out.append(result)
        if isinstance(result, Answer) and result.failed and not continue_on_error:
            status = result.status
            break
        if not isinstance(item, ChangeSet):
            await asyncio.sleep(0)  # let other requests in between independent parts

    response_boundary = f"batchresponse_{uuid.uuid4()}"
    headers = {"Content-Type": f"multipart/mixed; boundary={response_boundary}", "OData-Version": "4.0"}
    if continue_on_error:
        headers["Preference-Applied"] = "odata.continue-on-error"
    return Response(write_batch(out, response_boundary), status_code=status, headers=headers)


class _Runner:
    """Runs parts through the app's dispatch as the batch's caller."""

    def __init__(self, request: Request, caller: dict[str, Any]):
        self.state = request.app.state
        self.caller = caller
        self.service_root = request.url.path.rsplit("/$batch", 1)[0]   # e.g. /api/data/v9.2

    async def single(self, part: Part) -> Answer:
        try:
            url = self._target(part.url, {})
        except BatchError as exc:
            return _error_answer(400, exc.code, exc.message, part.content_id)
        return await anyio.to_thread.run_sync(self._call, part, url, part.body)

    async def change_set(self, change_set: ChangeSet) -> list[Answer] | Answer:
        """In one worker thread: the store's transaction belongs to the thread that opened it."""
        return await anyio.to_thread.run_sync(self._change_set, change_set)

    def _change_set(self, change_set: ChangeSet) -> list[Answer] | Answer:
        created: dict[str, str] = {}
        answers: list[Answer] = []
        try:
            with self.state.store.transaction():
                for part in change_set.parts:
                    try:
                        url = self._target(part.url, created)
                        body = _substitute_references(part.body, created)
                    except BatchError as exc:
                        raise _RollBack(_error_answer(400, exc.code, exc.message, part.content_id)) from None
                    answer = self._call(part, url, body)
                    if answer.failed:
                        raise _RollBack(answer)
                    if part.content_id is not None:
                        entity = _header(answer.headers, "odata-entityid") or _header(answer.headers, "location")
                        if entity:
                            created[part.content_id] = entity
                    answers.append(answer)
        except _RollBack as failure:
            return failure.answer
        return answers

    def _call(self, part: Part, url: str, body: bytes) -> Answer:
        """Runs in a worker thread (SQLite work stays off the event loop)."""
        status, headers, payload = self.state.dispatch(part.method, url, part.headers, body, caller=self.caller)
        return Answer(status, _response_headers(status, headers, payload), payload or b"", part.content_id)

    def _target(self, url: str, created: dict[str, str]) -> str:
        """Root-relative path and query of a part's URL (absolute, root-relative, relative or `$n`)."""
        reference = _REFERENCE.match(url)
        if reference:
            entity = created.get(reference.group(1))
            if entity is None:
                raise BatchError(f"Content-ID Reference: '${reference.group(1)}' does not exist in the batch context.")
            url = entity + reference.group(2)
        if "://" in url:
            split = urlsplit(url)
            return split.path + (f"?{split.query}" if split.query else "")
        if url.startswith("/"):
            return url
        return f"{self.service_root}/{url}"


# -- parsing ----------------------------------------------------------------------------------

def parse_batch(body: bytes, boundary: str) -> list[Part | ChangeSet]:
    """The batch's items in order: independent requests and change sets."""
    items: list[Part | ChangeSet] = []
    for mime_headers, content in _mime_parts(body, boundary):
        content_type = mime_headers.get("content-type", "")
        if content_type.lower().startswith("multipart/mixed"):
            items.append(_parse_change_set(content, _boundary(content_type)))
        else:
            items.append(_parse_request(mime_headers, content))
    if not items:
        raise BatchError("The batch request contains no parts.")
    return items


def _parse_change_set(body: bytes, boundary: str) -> ChangeSet:
    change_set = ChangeSet()
    seen: set[str] = set()
    for mime_headers, content in _mime_parts(body, boundary):
        if mime_headers.get("content-type", "").lower().startswith("multipart/"):
            raise BatchError("A change set cannot contain another change set or batch.")
        part = _parse_request(mime_headers, content)
        if part.method == "GET":
            raise BatchError("GET requests are not allowed inside a change set. Move the GET outside the "
                             "change set.")
        if part.content_id is not None:
            if part.content_id in seen:
                raise BatchError(f"The Content-ID '{part.content_id}' is used twice in one change set.")
            seen.add(part.content_id)
        change_set.parts.append(part)
    return change_set


def _parse_request(mime_headers: dict[str, str], content: bytes) -> Part:
    content_type = mime_headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/http":
        raise BatchError(f"A batch part must have Content-Type application/http, not '{content_type or '(none)'}'.")
    head, body = _split_head(content.lstrip(b"\r\n"))
    lines = head.decode("utf-8", "replace").splitlines()
    if not lines:
        raise BatchError("A batch part has no request line.")
    words = lines[0].split(" ")
    if len(words) < 2:
        raise BatchError(f"Malformed request line in a batch part: '{lines[0][:200]}'.")
    method = words[0].upper()
    url = " ".join(words[1:-1] if len(words) > 2 and words[-1].upper().startswith("HTTP/") else words[1:])
    headers = _parse_headers(lines[1:])
    if "content-length" in headers:
        try:
            body = body[: int(headers["content-length"])]
        except ValueError:
            raise BatchError("A batch part has an invalid Content-Length.") from None
    return Part(method, url.strip(), headers, body, mime_headers.get("content-id"))


def _mime_parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart body into (headers, content) pairs; the newline before a delimiter is its own."""
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[tuple[dict[str, str], bytes]] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            head, content = _split_head(body[start:match.start()])
            parts.append((_parse_headers(head.decode("utf-8", "replace").splitlines()), content))
        if match.group(1):
            return parts
        start = match.end()
    if start is None:
        raise BatchError(f"The batch body does not contain the boundary '{boundary}' from its Content-Type.")
    raise BatchError(f"The multipart body is missing its closing delimiter '--{boundary}--'.")


def _split_head(blob: bytes) -> tuple[bytes, bytes]:
    """Headers and content of a MIME part or embedded request (separated by the first blank line)."""
    if blob.startswith((b"\r\n", b"\n")):
        return b"", blob[2 if blob.startswith(b"\r\n") else 1:]
    blank = _BLANK_LINE.search(blob)
    if blank is None:
        return blob, b""
    return blob[: blank.start()], blob[blank.end():]


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise BatchError(f"Malformed header line in a batch part: '{line[:200]}'.")
        headers[name.strip().lower()] = value.strip()
    return headers


def _boundary(content_type: str) -> str:
    kind = content_type.split(";")[0].strip().lower()
    if kind != "multipart/mixed":
        raise BatchError(f"A $batch request needs Content-Type multipart/mixed with a boundary, not "
                         f"'{content_type or '(none)'}'.")
    found = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', content_type, re.I)
    if not found:
        raise BatchError("The multipart/mixed Content-Type has no boundary parameter.")
    return found.group(1) or found.group(2)


def _substitute_references(body: bytes, created: dict[str, str]) -> bytes:
    """Replace `$n` in `@odata.bind` and `@odata.id` values by the entity URL part n created."""
    if not created or b'"$' not in body:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    changed = False

    def resolve(value: Any) -> Any:
        nonlocal changed
        if isinstance(value, str):
            reference = _REFERENCE.match(value)
            if reference:
                if reference.group(1) not in created:
                    raise BatchError(f"Content-ID Reference: '${reference.group(1)}' does not exist in the "
                                     "batch context.")
                changed = True
                return created[reference.group(1)] + reference.group(2)
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: resolve(value) if key.endswith("@odata.bind") or key == "@odata.id" else walk(value)
                    for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    data = walk(data)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() if changed else body


# -- writing ----------------------------------------------------------------------------------

def write_batch(items: list[Answer | list[Answer]], boundary: str) -> bytes:
    chunks: list[bytes] = []
    for item in items:
        chunks.append(f"--{boundary}\r\n".encode())
        if isinstance(item, Answer):
            chunks.append(_write_answer(item))
        else:
            inner = f"changesetresponse_{uuid.uuid4()}"
            chunks.append(f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode())
            for answer in item:
                chunks.append(f"--{inner}\r\n".encode())
                chunks.append(_write_answer(answer))
            chunks.append(f"--{inner}--\r\n".encode())
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def _write_answer(answer: Answer) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if answer.content_id is not None:
        lines.append(f"Content-ID: {answer.content_id}")
    lines += ["", f"HTTP/1.1 {answer.status} {_reason(answer.status)}"]
    lines += [f"{name}: {value}" for name, value in answer.headers]
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode() + answer.body + b"\r\n"


def _response_headers(status: int, headers: Any, body: bytes | None) -> list[tuple[str, str]]:
    """The part's headers as Dataverse writes them inside a batch response."""
    pairs = list(headers.items() if hasattr(headers, "items") else headers or ())
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        lower = name.lower()
        if lower in ("content-length", "odata-version", "date", "server", "transfer-encoding"):
            continue
        if lower == "content-type" and status < 400 and value.startswith("application/json") \
                and "odata.streaming" not in value:
            value += "; odata.streaming=true"
        out.append((name, value))
    if status >= 400 and not any(n.lower() == "req_id" for n, _ in out):
        out.insert(0, ("REQ_ID", str(uuid.uuid4())))
    out.append(("OData-Version", "4.0"))
    return out


def _error_answer(status: int, code: str, message: str, content_id: str | None) -> Answer:
    headers = [("REQ_ID", str(uuid.uuid4())), ("Content-Type", JSON_ERROR_TYPE), ("OData-Version", "4.0")]
    return Answer(status, headers, error_body(code, message), content_id)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
