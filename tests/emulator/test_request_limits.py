"""Limits that keep one request from hurting the others: query complexity, the SQL time limit,
request sizes, and a quick, quiet stop."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from d365_components.emulator import defaults
from d365_components.emulator.limits.request_size import RequestSize
from d365_components.emulator.protocol.errors import DataverseError
from d365_components.emulator.storage.time_limit import time_limit
from tests.conftest import ODATA_HEADERS

CALLER = {"oid": defaults.APP_USER_OBJECT_ID, "appid": defaults.CLIENT_ID}


def _batch_get(url: str) -> tuple[str, bytes]:
    boundary = f"batch_{uuid.uuid4().hex}"
    body = (f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"GET {url} HTTP/1.1\r\nAccept: application/json\r\n\r\n--{boundary}--\r\n")
    return f"multipart/mixed; boundary={boundary}", body.encode()


async def test_a_huge_query_is_refused_while_other_requests_are_answered_within_a_second(api, emulator, store):
    account = store.insert("account", {"name": "quick " + uuid.uuid4().hex[:6]}, user=defaults.APP_USER_ID)
    conditions = "".join(f'<condition attribute="name" operator="eq" value="n{i}"/>' for i in range(50_000))
    fetch = f'<fetch><entity name="account"><attribute name="name"/><filter type="or">{conditions}</filter></entity></fetch>'
    content_type, body = _batch_get(f"{emulator.api_url}/accounts?fetchXml={quote(fetch)}")
    huge = asyncio.ensure_future(api.post("$batch", content=body, headers={"Content-Type": content_type}))
    latencies: list[float] = []
    for call in [lambda: api.get("WhoAmI"), lambda: api.get(f"accounts({account['accountid']})")] * 3:
        started = time.monotonic()
        response = await call()
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
    response = await huge
    assert max(latencies) < 1.0, latencies
    assert response.status_code == 400                       # a batch takes its failed part's status
    assert "HTTP/1.1 400" in response.text and "0x80044150" in response.text, response.text[:500]


def test_filters_with_more_values_than_sql_server_takes_are_refused(emulator):
    dispatch = emulator.app.state.dispatch
    values = ",".join(f"'v{i}'" for i in range(2200))
    in_list = f"Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=[{values}])"
    ors = " or ".join(f"name eq 'v{i}'" for i in range(2200))
    for text in (in_list, ors):
        status, _, payload = dispatch("GET", f"/api/data/v9.2/accounts?$filter={quote(text)}", {}, b"", caller=CALLER)
        assert status == 400 and json.loads(payload)["error"]["code"] == "0x80044150", payload[:300]
    commas_in_text = "name eq '" + "," * 10_000 + "'"     # string content never counts
    status, _, payload = dispatch("GET", f"/api/data/v9.2/accounts?$filter={quote(commas_in_text)}", {}, b"",
                                  caller=CALLER)
    assert status == 200, payload[:300]


def test_sql_stops_at_the_time_limit_and_the_store_keeps_working(store):
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    with pytest.raises(DataverseError) as caught, time_limit(0.05), store.transaction():
        store.conn.execute(endless).fetchall()
    assert (caught.value.status, caught.value.code) == (500, "0x80040E31")
    assert store.conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    assert store.conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) "
                              "SELECT count(*) AS c FROM n").fetchone() == {"c": 50000}    # no deadline now


def test_a_request_over_its_time_limit_answers_the_timeout_error(fresh_emulator):
    emulator = fresh_emulator(seed="none")
    store = emulator.app.state.store
    with store.transaction():
        for i in range(3000):
            store.insert("account", {"name": f"slow {i}"}, user=defaults.APP_USER_ID)
    emulator.app.state.query_seconds = 0.0
    status, _, payload = emulator.app.state.dispatch(
        "GET", "/api/data/v9.2/accounts?$filter=contains(name,'zzz')&$count=true", {}, b"", caller=CALLER)
    assert status == 500 and json.loads(payload)["error"] == {"code": "0x80040E31", "message": "SQL timeout expired."}


def _raw_request(emulator: Any, head: str) -> bytes:
    """Send `head` (request line and headers, no body) over TLS and read the answer."""
    context = ssl.create_default_context(cafile=emulator.ca_bundle)
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_oversized_headers_answer_431(emulator, emulator_token):
    auth = {**ODATA_HEADERS, "Authorization": f"Bearer {emulator_token}"}
    with httpx.Client(verify=emulator.ssl_context, timeout=30) as client:
        big = client.get(f"{emulator.api_url}/WhoAmI", headers={**auth, "X-Big": "x" * 1_000_000})
        many = client.get(f"{emulator.api_url}/WhoAmI", headers=[*auth.items(), *[(f"X-H{i}", "1") for i in range(5000)]])
        fine = client.get(f"{emulator.api_url}/WhoAmI", headers=auth)
    assert (big.status_code, many.status_code, fine.status_code) == (431, 431, 200)


def test_a_body_declared_too_large_answers_413_before_it_is_sent(emulator, emulator_token):
    answer = _raw_request(emulator, f"POST /api/data/v9.2/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    f"Authorization: Bearer {emulator_token}\r\nContent-Type: application/json\r\n"
                                    f"Content-Length: {10**12}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_a_streamed_body_is_refused_once_it_passes_the_limit():
    read: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any) -> None:
        while True:
            message = await receive()
            read.append(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    chunks = iter([{"type": "http.request", "body": b"x" * 6, "more_body": True}] * 10)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(chunks)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await RequestSize(app, max_body_bytes=10)({"type": "http", "headers": []}, receive, send)
    assert sent[0]["status"] == 413 and len(read) == 1


def test_stopping_with_an_open_keep_alive_connection_is_quick_and_quiet(fresh_emulator, caplog):
    emulator = fresh_emulator()
    client = httpx.Client(verify=emulator.ssl_context)
    try:
        assert client.get(f"{emulator.authority}/v2.0/.well-known/openid-configuration").status_code == 200
        with caplog.at_level(logging.INFO):
            started = time.monotonic()
            emulator.stop()
            stopping = time.monotonic() - started
    finally:
        client.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert stopping < 1.5, stopping          # uvicorn alone waits out its 2 s graceful timeout


def test_more_than_15_expand_options_are_refused(emulator):
    dispatch = emulator.app.state.dispatch
    nested = "modifiedby($expand=" * 8 + "createdby" + ")" * 8                  # 9 options, nested
    flat = ",".join(["createdby", "primarycontactid", "parentaccountid", "transactioncurrencyid",
                     "owningbusinessunit", "ownerid"])                          # 6 more: 15 in all
    status, _, payload = dispatch("GET", f"/api/data/v9.2/accounts?$top=1&$expand={quote(nested + ',' + flat)}", {},
                                  b"", caller=CALLER)
    assert status == 200, payload[:300]
    status, _, payload = dispatch("GET", f"/api/data/v9.2/accounts?$top=1&$expand={quote(nested + ',' + flat)}"
                                  f"{quote(',modifiedonbehalfby')}", {}, b"", caller=CALLER)
    assert status == 400, payload[:300]
    assert json.loads(payload)["error"] == {"code": "0x80040203",
                                            "message": "Number of link entities in query exceeded maximum limit."}


def test_long_chains_of_or_and_and_run_and_deep_nesting_is_refused(emulator, store):
    name = "chain " + uuid.uuid4().hex[:8]
    store.insert("account", {"name": name}, user=defaults.APP_USER_ID)
    dispatch = emulator.app.state.dispatch
    ors = " or ".join([*(f"name eq '{name} {i}'" for i in range(1999)), f"name eq '{name}'"])
    ands = " and ".join([*(f"name ne '{name} {i}'" for i in range(1999)), f"name eq '{name}'"])
    for text in (ors, ands):
        status, _, payload = dispatch("GET", f"/api/data/v9.2/accounts?$select=name&$filter={quote(text)}", {}, b"",
                                      caller=CALLER)
        assert status == 200, payload[:300]
        assert [row["name"] for row in json.loads(payload)["value"]] == [name]
    status, _, payload = dispatch("GET", f"/api/data/v9.2/accounts?$filter={quote('not ' * 3000 + 'name eq null')}",
                                  {}, b"", caller=CALLER)
    assert status == 400 and json.loads(payload)["error"]["code"] == "0x80044150", payload[:300]
