"""Raw Request against the emulator: paths only, bodies of every kind, response types, retries."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import jsonschema
import pytest
import pytest_asyncio

from d365_components.actions.raw_request import RawRetryPolicy
from d365_components.emulator import defaults
from d365_components.errors import DataverseError, InputValidationError, RecordNotFoundError
from d365_components.inputs import coerce_form_values
from d365_components.registry import get_registry
from d365_components.runtime import invoke, open_connection

KEY = "dynamics365.raw_request"
CONNECTION_KEY = "dynamics365.oauth2_client_credentials"


def check_output(output: dict) -> dict:
    jsonschema.Draft202012Validator(get_registry().get(KEY, "actions").output_json_schema()).validate(output)
    return output


class Recording(httpx.AsyncBaseTransport):
    """Forwards to the emulator and keeps every request that went out."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)


@pytest_asyncio.fixture(scope="module")
async def recorded(emulator) -> AsyncIterator[tuple]:
    """A connection whose Web API requests are recorded (the token requests go elsewhere)."""
    conn = open_connection({"key": CONNECTION_KEY, "inputs": emulator.connection_inputs()})
    transport = Recording(httpx.AsyncHTTPTransport(verify=emulator.ssl_context))
    conn.open_client(transport=transport)
    yield conn, transport
    await conn.aclose()


@pytest.fixture
def raw(recorded):
    conn, transport = recorded

    async def call(inputs: dict) -> dict:
        transport.sent.clear()
        return check_output(await invoke(KEY, inputs, conn))

    call.sent = transport.sent
    return call


async def test_get_with_an_api_path_and_query_parameters(raw):
    out = await raw({"url": "/api/data/v9.2/accounts?$select=name", "queryParams": [{"key": "$top", "value": "2"}]})
    assert out["status"] == 200
    assert len(out["data"]["value"]) == 2 and set(out["data"]["value"][0]) >= {"name", "accountid"}
    assert out["headers"]["odata-version"] == "4.0"
    assert "$top=2" in str(raw.sent[0].url) and "$select=name" in str(raw.sent[0].url)


async def test_relative_path_and_a_full_url_on_the_org(raw, emulator):
    relative = await raw({"url": "WhoAmI"})
    assert relative["data"]["UserId"] == defaults.APP_USER_ID
    absolute = await raw({"url": emulator.api_url + "/WhoAmI"})
    assert absolute["data"]["UserId"] == defaults.APP_USER_ID


@pytest.mark.parametrize("url", ["https://evil.example/x", "//evil.example/x", "http://127.0.0.1:1/api/data/v9.2/WhoAmI"])
async def test_other_hosts_are_refused_before_any_request(offline_connection, url):
    with pytest.raises(InputValidationError) as caught:
        await invoke(KEY, {"url": url}, offline_connection)
    assert [e.pointer for e in caught.value.errors] == ["/url"]
    assert offline_connection.sent == []


async def test_authorization_header_cannot_be_overridden(offline_connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke(KEY, {"url": "WhoAmI", "headers": [{"key": "authorization", "value": "Bearer stolen"}]}, offline_connection)
    assert caught.value.errors[0].pointer == "/headers/0/key" and "stolen" not in str(caught.value)
    assert offline_connection.sent == []


async def test_post_json_then_patch_text_json_and_read_back(raw):
    unique = uuid.uuid4().hex[:8]
    created = await raw({"url": "accounts", "method": "POST", "data": {"name": f"Raw {unique}"}})
    assert created["status"] == 204 and created["data"] is None
    entity_url = created["headers"]["odata-entityid"]
    updated = await raw({"url": entity_url, "method": "PATCH", "data": json.dumps({"telephone1": "555"}),
                         "headers": [{"key": "If-Match", "value": "*"}]})
    assert updated["status"] == 204
    assert raw.sent[0].headers["content-type"].startswith("application/json")
    row = await raw({"url": entity_url, "queryParams": [{"key": "$select", "value": "name,telephone1"}]})
    assert (row["data"]["name"], row["data"]["telephone1"]) == (f"Raw {unique}", "555")


async def test_text_and_binary_response_types(raw):
    text = await raw({"url": "WhoAmI", "responseType": "text"})
    assert json.loads(text["data"])["UserId"] == defaults.APP_USER_ID
    binary = await raw({"url": "WhoAmI", "responseType": "binary"})
    assert json.loads(base64.b64decode(binary["data"]))["UserId"] == defaults.APP_USER_ID


async def test_form_and_file_data_are_encoded(raw):
    with pytest.raises(DataverseError):
        await raw({"url": "annotations", "method": "POST", "formData": [{"key": "subject", "value": "a b"}]})
    assert raw.sent[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert raw.sent[0].content == b"subject=a+b"
    with pytest.raises(DataverseError):
        await raw({"url": "annotations", "method": "POST", "formData": [{"key": "subject", "value": "note"}],
                   "fileData": [{"key": "file", "value": base64.b64encode(b"hello file").decode()}],
                   "fileDataFileNames": [{"key": "file", "value": "hello.txt"}]})
    sent = raw.sent[0]
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'filename="hello.txt"' in sent.content and b"hello file" in sent.content and b"note" in sent.content


async def test_bodies_are_checked_before_sending(offline_connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke(KEY, {"url": "x", "data": {"a": 1}, "formData": [{"key": "a", "value": "1"}]}, offline_connection)
    assert "not both" in str(caught.value)
    with pytest.raises(InputValidationError) as caught:
        await invoke(KEY, {"url": "x", "fileData": [{"key": "f", "value": "not base64!"}]}, offline_connection)
    assert caught.value.errors[0].pointer == "/fileData/0/value"
    assert offline_connection.sent == []


async def test_errors_are_typed_and_not_retried_by_default(raw):
    with pytest.raises(RecordNotFoundError):
        await raw({"url": "accounts(00000000-0000-0000-0000-000000000001)"})
    assert len(raw.sent) == 1


async def test_retry_all_errors_sends_max_retries_more_times(raw):
    with pytest.raises(RecordNotFoundError):
        await raw({"url": "nosuchset", "maxRetries": 2, "retryDelayMS": 1, "retryAllErrors": True})
    assert len(raw.sent) == 3
    with pytest.raises(RecordNotFoundError):
        await raw({"url": "nosuchset", "maxRetries": 2, "retryDelayMS": 1})   # a 404 is not retryable by default
    assert len(raw.sent) == 1


async def test_form_strings_are_coerced_by_the_published_step(raw):
    text = {"url": "WhoAmI", "maxRetries": "1", "retryDelayMS": "0", "useExponentialBackoff": "true"}
    out = await raw(coerce_form_values(get_registry().get(KEY).input_schema(), text))
    assert out["status"] == 200


def test_backoff_is_fixed_or_doubling():
    fixed = RawRetryPolicy(base_delay=0.1)
    assert [fixed.backoff(n) for n in range(3)] == [0.1, 0.1, 0.1]
    doubling = RawRetryPolicy(base_delay=0.1, exponential=True, max_delay=0.3)
    assert [doubling.backoff(n) for n in range(3)] == [0.1, 0.2, 0.3]
    assert RawRetryPolicy(all_errors=True).should_retry_status(404, idempotent=False)
    assert not RawRetryPolicy().should_retry_status(404, idempotent=True)


def test_response_headers_never_carry_cookies_or_credentials():
    from d365_components.actions.raw_request import _visible_headers

    token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"
    response = httpx.Response(200, headers=[
        ("Set-Cookie", "ARRAffinity=abc"), ("WWW-Authenticate", "Bearer realm=x"), ("Authorization", f"Bearer {token}"),
        ("X-Echo", f"Bearer {token}"), ("OData-Version", "4.0"), ("Vary", "Accept"), ("Vary", "Prefer"),
    ])
    headers = _visible_headers(response)
    assert headers == {"x-echo": "Bearer [REDACTED]", "odata-version": "4.0", "vary": "Accept, Prefer"}
