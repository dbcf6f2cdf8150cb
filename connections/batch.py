"""``$batch`` bodies: the multipart/mixed request we send and the one Dataverse answers.

A batch holds up to 1,000 operations. Operations outside a change set run independently; a change
set runs atomically and its members may refer to each other's new rows as ``$<Content-ID>``.
GET is not allowed inside a change set. The answer keeps request order; without
``Prefer: odata.continue-on-error`` it stops at the first failure, and a failed change set may come
back as a single error part (reference §5). Lines end in CRLF; the parser also accepts bare LF.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from d365_components.connections.errors_map import dataverse_error
from d365_components.connections.input_errors import RequestInputError
from d365_components.errors import DataverseError, TransientError

__all__ = ["MAX_OPERATIONS", "BatchOperation", "BatchResult", "boundary_of", "decode_batch", "encode_batch"]

MAX_OPERATIONS = 1000
CRLF = "\r\n"
_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
_STATUS_LINE = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})")
_ENTITY_ID = re.compile(r"\(([^()]*)\)\s*$")


@dataclass(frozen=True)
class BatchOperation:
    """One request inside a batch. ``path`` is relative to the Web API root, absolute, or ``$1``."""

    method: str
    path: str
    body: Any = None
    headers: dict[str, str] | None = None
    content_id: str | int | None = None


@dataclass
class BatchResult:
    """The answer to one operation, in input order; ``error`` is set when it failed."""

    index: int
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    id: str | None = None
    error: DataverseError | TransientError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and 200 <= self.status < 300


def _request_part(op: BatchOperation, api_url: str, content_id: str | None) -> str:
    method = op.method.upper()
    if op.path.startswith("$") or op.path.startswith("http://") or op.path.startswith("https://"):
        target = op.path
    else:
        target = f"{api_url}/{op.path.lstrip('/')}"
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {target} HTTP/1.1"]
    headers = dict((op.headers or {}).items())
    body = op.body
    if body is not None and not isinstance(body, bytes | str):
        body = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        headers.setdefault("Content-Type", "application/json; type=entry")
    elif isinstance(body, bytes):
        body = body.decode("utf-8")
    headers.setdefault("Accept", "application/json")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("")
    lines.append(body or "")
    return CRLF.join(lines)


def encode_batch(
    operations: list[BatchOperation], api_url: str, *, atomic: bool
) -> tuple[str, bytes, list[str | None]]:
    """``(content_type, body, content_ids)``. ``atomic`` puts every operation in one change set."""
    if not operations:
        raise RequestInputError("a batch needs at least one operation")
    if len(operations) > MAX_OPERATIONS:
        raise RequestInputError(f"a batch holds at most {MAX_OPERATIONS} operations, not {len(operations)}")
    batch_boundary = f"batch_{uuid.uuid4()}"
    content_ids: list[str | None] = []
    chunks: list[str] = []
    if atomic:
        for index, op in enumerate(operations):
            if op.method.upper() == "GET":
                raise RequestInputError(f"operation {index}: GET cannot run inside a change set (atomic=True)")
        change_boundary = f"changeset_{uuid.uuid4()}"
        parts = []
        for index, op in enumerate(operations):
            cid = str(op.content_id) if op.content_id is not None else str(index + 1)
            content_ids.append(cid)
            parts.append(f"--{change_boundary}{CRLF}{_request_part(op, api_url, cid)}")
        inner = CRLF.join(parts) + f"{CRLF}--{change_boundary}--"
        chunks.append(
            f"--{batch_boundary}{CRLF}Content-Type: multipart/mixed; boundary={change_boundary}"
            f"{CRLF}{CRLF}{inner}"
        )
    else:
        for op in operations:
            if isinstance(op.path, str) and op.path.startswith("$"):
                raise RequestInputError("Content-ID references ($1...) work only inside a change set: use atomic=True")
            plain_cid = str(op.content_id) if op.content_id is not None else None
            content_ids.append(plain_cid)
            chunks.append(f"--{batch_boundary}{CRLF}{_request_part(op, api_url, plain_cid)}")
    body = CRLF.join(chunks) + f"{CRLF}--{batch_boundary}--{CRLF}"
    return f"multipart/mixed; boundary={batch_boundary}", body.encode("utf-8"), content_ids


# -- decoding -------------------------------------------------------------------------------


@dataclass
class _Part:
    headers: dict[str, str]
    content: str


def boundary_of(content_type: str) -> str | None:
    """The multipart boundary of a Content-Type; None for a plain (non-``$batch``) error answer."""
    match = _BOUNDARY.search(content_type or "")
    return match.group(1) if match else None


def _split_headers(text: str) -> tuple[dict[str, str], str]:
    """Headers up to the first blank line (CRLF or LF), then the rest."""
    match = re.search(r"\r?\n\r?\n", text)
    if match is None:
        head, rest = text, ""
    else:
        head, rest = text[: match.start()], text[match.end() :]
    headers: dict[str, str] = {}
    for line in head.splitlines():
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
    return headers, rest


def _split_multipart(text: str, boundary: str) -> list[_Part]:
    delimiter = re.compile(r"(?:^|\r?\n)--" + re.escape(boundary) + r"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[_Part] = []
    position = None
    for match in delimiter.finditer(text):
        if position is not None:
            headers, content = _split_headers(text[position : match.start()].lstrip("\r\n"))
            parts.append(_Part(headers, content))
        if match.group(1):
            break
        position = match.end()
    return parts


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@dataclass
class _Response:
    content_id: str | None
    status: int
    headers: dict[str, str]
    body_text: str


def _http_response(part: _Part) -> _Response:
    text = part.content.lstrip("\r\n")
    first, _, rest = text.partition("\n")
    match = _STATUS_LINE.match(first.strip())
    if match is None:
        raise TransientError("The $batch answer has a part without an HTTP status line; it cannot be read.")
    headers, body = _split_headers(rest)
    return _Response(_lower(part.headers).get("content-id"), int(match.group(1)), headers, body.strip("\r\n"))


def _flatten(text: str, boundary: str) -> list[tuple[_Response, bool, int]]:
    """Responses in order, each with (is in a change set, change set number)."""
    out: list[tuple[_Response, bool, int]] = []
    for number, part in enumerate(_split_multipart(text, boundary)):
        content_type = _lower(part.headers).get("content-type", "")
        if content_type.lower().startswith("multipart/mixed"):
            inner = boundary_of(content_type)
            for sub in _split_multipart(part.content, inner or ""):
                out.append((_http_response(sub), True, number))
        else:
            out.append((_http_response(part), False, number))
    return out


def _parse_body(text: str, headers: dict[str, str]) -> Any:
    if not text:
        return None
    if "json" in _lower(headers).get("content-type", "json"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _id_from(headers: dict[str, str]) -> str | None:
    entity_id = _lower(headers).get("odata-entityid") or _lower(headers).get("location")
    if entity_id:
        match = _ENTITY_ID.search(entity_id)
        if match:
            return match.group(1)
    return None


def decode_batch(
    content_type: str,
    body: bytes,
    content_ids: list[str | None],
    *,
    atomic: bool,
    api_url: str,
    offset: int = 0,
) -> list[BatchResult]:
    """One :class:`BatchResult` per operation (``content_ids`` has one entry per operation).

    Operations the server never ran (it stopped at an earlier failure) get status 424 and an
    error saying so; members of a failed change set get the change set's error.
    """
    boundary = boundary_of(content_type)
    if boundary is None:
        raise TransientError("The $batch answer is not multipart/mixed; it cannot be read.")
    responses = _flatten(body.decode("utf-8", "replace"), boundary)
    results: list[BatchResult | None] = [None] * len(content_ids)

    def result(index: int, response: _Response) -> BatchResult:
        parsed = _parse_body(response.body_text, response.headers)
        error = None
        if response.status >= 400:
            error = dataverse_error(response.status, response.headers, response.body_text, method="$batch", url=api_url)
        return BatchResult(
            index=offset + index,
            status=response.status,
            headers=response.headers,
            body=parsed,
            id=_id_from(response.headers),
            error=error,
        )

    if atomic:
        by_id = {cid: i for i, cid in enumerate(content_ids)}
        failure = next((r for r, _, _ in responses if r.status >= 400), None)
        if failure is not None:
            # The whole change set rolled back: every member reports the failure.
            failed_index = by_id.get(failure.content_id) if failure.content_id else None
            for index in range(len(content_ids)):
                if index == failed_index or failed_index is None:
                    results[index] = result(index, failure)
                else:
                    rolled = result(index, failure)
                    rolled.status = 424
                    rolled.body = None
                    rolled.error = DataverseError(
                        f"Not applied: the change set rolled back because operation {offset + failed_index} failed.",
                        status=424,
                    )
                    results[index] = rolled
        else:
            for position, (response, _, _) in enumerate(responses):
                index = by_id.get(response.content_id, position) if response.content_id else position
                if index < len(results):
                    results[index] = result(index, response)
    else:
        for position, (response, _, _) in enumerate(responses[: len(content_ids)]):
            results[position] = result(position, response)

    filled: list[BatchResult] = []
    for index, item in enumerate(results):
        if item is None:
            item = BatchResult(
                index=offset + index,
                status=424,
                error=DataverseError(
                    "Not run: the batch stopped at an earlier failure (use continue_on_error to run the rest).",
                    status=424,
                ),
            )
        filled.append(item)
    return filled
