"""Raw Request: any Web API call the other actions do not cover, through the connection's client.

The URL is a path on the org (``/api/data/v9.2/accounts?$select=name``, or ``accounts`` relative
to the Web API): a full URL to any other host is refused before anything is sent, so the bearer
token never leaves the org, and the Authorization header cannot be overridden. Retries use the
client's retry loop with a policy built from the inputs (off by default, as designers expect from
a raw call); errors come back typed like every other action's.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import ConfigDict, field_validator, model_validator

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import conflict
from d365_components.connections.client import WebApiClient
from d365_components.connections.input_errors import RequestInputError
from d365_components.connections.retry import RetryPolicy
from d365_components.errors import FieldError, InputValidationError
from d365_components.inputs import forbidden, given, rules
from d365_components.redaction import redact

__all__ = ["RawRequest"]

#: headers a caller may not set: the connection owns authentication and framing
REFUSED_HEADERS = frozenset({"authorization", "proxy-authorization", "host", "content-length", "cookie"})
#: response headers never returned
HIDDEN_HEADERS = frozenset({"set-cookie", "authorization", "proxy-authorization", "www-authenticate"})


class KeyValue(InputModel):
    """One name/value pair of a key/value list."""

    model_config = ConfigDict(title="Name and value")

    key: str = InputField(title="Name", description="The name (a header, query parameter or form field).", examples=["Prefer"], min_length=1)
    value: str = InputField("", title="Value", description="The value (text).", examples=["odata.maxpagesize=10"])


#: base64 as ``base64.b64decode(validate=True)`` accepts it (padded, standard alphabet)
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _any_case(word: str) -> str:
    """A regular expression matching ``word`` in any letter case (JSON Schema patterns have no flags)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


#: a header name the connection sets itself, in any case, with optional surrounding blanks
_REFUSED_HEADER = r"^\s*(?:" + "|".join(_any_case(name) for name in sorted(REFUSED_HEADERS)) + r")\s*$"


def _nonempty(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"type": "array", "minItems": 1}}}


@dataclass(frozen=True)
class RawRetryPolicy(RetryPolicy):
    """The client's retry policy with Raw Request's knobs: a fixed or doubling delay, and
    optionally every error (any status >= 400, any network failure) counted as retryable."""

    exponential: bool = False
    all_errors: bool = False

    def backoff(self, attempt: int) -> float:
        if self.exponential:
            return float(min(self.max_delay, self.base_delay * (2**attempt)))
        return self.base_delay

    def should_retry_status(self, status: int, *, idempotent: bool) -> bool:
        return status >= 400 if self.all_errors else super().should_retry_status(status, idempotent=idempotent)

    def should_retry_error(self, exc: BaseException, *, idempotent: bool) -> bool:
        return self.all_errors or super().should_retry_error(exc, idempotent=idempotent)


def _pairs(title: str, description: str, example: list[dict[str, str]]) -> Any:
    return InputField([], title=title, description=description, examples=[example], widget="keyvalue")


class RawRequest(Action):
    """Send any request to the Dataverse Web API with the connection's credentials (path only)."""

    key = "dynamics365.raw_request"
    label = "Raw Request"
    group = "Other"

    class Inputs(InputModel):
        model_config = ConfigDict(json_schema_extra=rules(
            forbidden("give the body as data, or as formData/fileData, not both", ["data", "formData"],
                      given("data"), _nonempty("formData")),
            forbidden("give the body as data, or as formData/fileData, not both", ["data", "fileData"],
                      given("data"), _nonempty("fileData")),
            forbidden(f"cannot set {', '.join(sorted(REFUSED_HEADERS))} (the connection sets them)", ["headers/*/key"],
                      {"required": ["headers"], "properties": {"headers": {"type": "array", "contains": {"type": "object",
                          "required": ["key"], "properties": {"key": {"type": "string", "pattern": _REFUSED_HEADER}}}}}}),
            forbidden("every file content must be base64-encoded", ["fileData/*/value"],
                      {"required": ["fileData"], "properties": {"fileData": {"type": "array", "contains": {"type": "object",
                          "required": ["value"], "properties": {"value": {"type": "string", "not": {"pattern": BASE64_PATTERN}}}}}}}),
        ))

        url: str = InputField(
            title="URL",
            description=(
                "A path on the org: /api/data/v9.2/accounts?$select=name, or accounts (relative to the "
                "Web API). A full URL is accepted only on the connection's own host."
            ),
            examples=["/api/data/v9.2/accounts?$select=name", "WhoAmI"],
            min_length=1,
        )
        method: Literal["GET", "POST", "PATCH", "PUT", "DELETE"] = InputField(
            "GET", title="Method", description="The HTTP method.", examples=["GET", "POST"], widget="dropdown",
            enum_labels={"GET": "GET", "POST": "POST", "PATCH": "PATCH", "PUT": "PUT", "DELETE": "DELETE"},
        )
        data: dict[str, Any] | list[Any] | str | None = InputField(
            None,
            title="Data",
            description="The request body: JSON (sent as application/json) or text. Not with Form data or File data.",
            examples=[{"name": "Contoso"}],
            widget="code",
            language="json",
        )
        form_data: list[KeyValue] = _pairs(
            "Form data",
            "Form fields: sent URL-encoded, or as multipart/form-data together with File data.",
            [{"key": "name", "value": "Contoso"}],
        )
        file_data: list[KeyValue] = _pairs(
            "File data",
            "Files for a multipart/form-data upload: form field name -> file content, base64-encoded.",
            [{"key": "file", "value": "aGVsbG8="}],
        )
        file_data_file_names: list[KeyValue] = _pairs(
            "File names",
            "The file name of each File data field (form field name -> file name); the field name is used when missing.",
            [{"key": "file", "value": "hello.txt"}],
        )
        query_params: list[KeyValue] = _pairs(
            "Query parameters",
            "Added to the URL's query string ($select, $filter, parameter aliases...).",
            [{"key": "$top", "value": "5"}],
        )
        headers: list[KeyValue] = _pairs(
            "Headers",
            "Extra request headers (Prefer, If-Match, MSCRM.SuppressDuplicateDetection...). Authorization cannot be set.",
            [{"key": "Prefer", "value": 'odata.include-annotations="*"'}],
        )
        response_type: Literal["json", "text", "binary"] = InputField(
            "json",
            title="Response type",
            description="How to return the body: parsed JSON (text if it is not JSON), text, or binary as base64.",
            widget="dropdown",
            enum_labels={"json": "JSON", "text": "Text", "binary": "Binary (base64)"},
        )
        timeout: int | None = InputField(
            None,
            title="Timeout (ms)",
            description="How long to wait for the answer, in milliseconds (the connection's timeout when empty).",
            examples=[30000],
            ge=1,
            le=600_000,
            group="Retries",
            advanced=True,
        )
        max_retries: int = InputField(
            0,
            title="Max retries",
            description="How many times to send again after a retryable failure (429, 502-504, network); 0 = never.",
            ge=0,
            le=10,
            group="Retries",
            advanced=True,
        )
        retry_delay_ms: int = InputField(
            0,
            title="Retry delay (ms)",
            description="Wait between attempts, in milliseconds (a 429's Retry-After is always honoured).",
            ge=0,
            le=60_000,
            alias="retryDelayMS",
            group="Retries",
            advanced=True,
        )
        use_exponential_backoff: bool = InputField(
            False,
            title="Exponential backoff",
            description="Double the delay after each attempt (delay, 2x, 4x...), capped at 30 seconds.",
            group="Retries",
            advanced=True,
        )
        retry_all_errors: bool = InputField(
            False,
            title="Retry all errors",
            description="Retry any failure (every status >= 400), not only throttling and unavailable-service errors. "
            "A POST may then run twice.",
            group="Retries",
            advanced=True,
        )

        @field_validator("headers")
        @classmethod
        def _no_auth_headers(cls, headers: list[KeyValue]) -> list[KeyValue]:
            for index, item in enumerate(headers):
                if item.key.strip().lower() in REFUSED_HEADERS:
                    raise conflict(f"'{item.key}' cannot be set (the connection sets it)", f"headers/{index}/key")
            return headers

        @field_validator("file_data")
        @classmethod
        def _base64_files(cls, files: list[KeyValue]) -> list[KeyValue]:
            for index, item in enumerate(files):
                try:
                    base64.b64decode(item.value, validate=True)
                except (binascii.Error, ValueError):
                    raise conflict(f"the content of '{item.key}' must be base64-encoded", f"fileData/{index}/value") from None
            return files

        @model_validator(mode="after")
        def _one_body(self) -> RawRequest.Inputs:
            if self.data is not None and (self.form_data or self.file_data):
                others = [name for name, given in (("formData", self.form_data), ("fileData", self.file_data)) if given]
                raise conflict("give the body as data, or as formData/fileData, not both", "data", *others)
            return self

    output_schema = {
        "type": "object",
        "required": ["status", "headers", "data"],
        "properties": {
            "status": {"type": "integer", "description": "The HTTP status code."},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Response headers (lower-case names; cookies and auth headers removed).",
            },
            "data": {"description": "The body: JSON, text, or base64 for binary; null when empty."},
        },
    }
    example = {
        "status": 200,
        "headers": {"content-type": "application/json; odata.metadata=minimal", "odata-version": "4.0"},
        "data": {"value": [{"accountid": "7eb682f1-ca75-e511-80d4-00155d2a68d1", "name": "Contoso"}]},
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        client = ctx.web_api
        try:
            path = _path_on_org(inputs.url, client.org_url)
            client.url_for(path)
        except RequestInputError as exc:
            raise exc.at("/url") from None
        except ValueError as exc:  # urlsplit: a malformed host or port
            raise InputValidationError([FieldError("/url", f"is not a valid URL ({exc})")]) from None
        content, content_type = _body(inputs)
        headers = {item.key: item.value for item in inputs.headers}
        if content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        policy = RawRetryPolicy(
            max_attempts=inputs.max_retries + 1,
            base_delay=inputs.retry_delay_ms / 1000,
            exponential=inputs.use_exponential_backoff,
            all_errors=inputs.retry_all_errors,
        )
        response = await _send(
            client,
            inputs.method,
            path,
            params={item.key: item.value for item in inputs.query_params} or None,
            content=content,
            headers=headers,
            timeout=inputs.timeout / 1000 if inputs.timeout else None,
            retry=policy,
            idempotent=True if inputs.retry_all_errors else None,
        )
        return {"status": response.status_code, "headers": _visible_headers(response), "data": _data(response, inputs.response_type)}


async def _send(client: WebApiClient, method: str, path: str, **options: Any) -> httpx.Response:
    """The request; a header that cannot be sent (a line break in a value) is an input error of /headers."""
    try:
        return await client.request(method, path, **options)
    except RequestInputError as exc:
        raise exc.at("/headers") from None


def _path_on_org(url: str, org_url: str) -> str:
    """What to hand the client: an absolute URL on the org, or a path relative to the Web API."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or text.startswith("//"):
        org = urlsplit(org_url)
        if (parts.scheme.lower(), parts.netloc.lower()) != (org.scheme.lower(), org.netloc.lower()):
            raise InputValidationError(
                [FieldError("/url", "must be a path on the org (e.g. /api/data/v9.2/accounts); a URL on another "
                            "host is refused so the connection's token never leaves the org")]
            )
        return text
    if text.startswith("/api/") or text == "/api":
        return org_url.rstrip("/") + text
    return text.lstrip("/")


def _body(inputs: Any) -> tuple[bytes | None, str | None]:
    """The request body and its content type, from Data, or Form data and File data."""
    if inputs.file_data:
        names = {item.key: item.value for item in inputs.file_data_file_names}
        files = [(item.key, (names.get(item.key) or item.key, base64.b64decode(item.value))) for item in inputs.file_data]
        fields = {item.key: item.value for item in inputs.form_data}
        encoded = httpx.Request("POST", "https://multipart.invalid", data=fields, files=files)
        return encoded.read(), encoded.headers["Content-Type"]
    if inputs.form_data:
        encoded = httpx.Request("POST", "https://form.invalid", data={item.key: item.value for item in inputs.form_data})
        return encoded.read(), "application/x-www-form-urlencoded"
    data = inputs.data
    if data is None:
        return None, None
    if isinstance(data, str):
        try:
            json.loads(data)
        except ValueError:
            return data.encode("utf-8"), "text/plain; charset=utf-8"
        return data.encode("utf-8"), "application/json; charset=utf-8"
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8"


def _visible_headers(response: httpx.Response) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        name = name.lower()
        if name in HIDDEN_HEADERS:
            continue
        value = redact(value)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _data(response: httpx.Response, response_type: str) -> Any:
    if not response.content:
        return None
    if response_type == "binary":
        return base64.b64encode(response.content).decode("ascii")
    if response_type == "json":
        try:
            return response.json()
        except ValueError:
            pass
    return response.text
