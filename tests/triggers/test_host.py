"""The trigger host over real HTTP: events reach the callback before Dataverse's 200, refusals
keep their status, oversized bodies are cut off, a failing flow answers 503 and never logs the key."""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import pytest

from d365_components.errors import InputValidationError
from d365_components.webhook_host import HostedTrigger, create_trigger_app, event_line

ROW = "6d81597f-0f9f-e711-8122-000d3aa2331c"


def body(message: str = "Create") -> bytes:
    target = {"__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts", "LogicalName": "account", "Id": ROW,
              "Attributes": [{"key": "name", "value": "Contoso"}]}
    context = {"MessageName": message, "PrimaryEntityName": "account", "PrimaryEntityId": ROW,
               "InputParameters": [{"key": "Target", "value": target}], "PreEntityImages": [], "PostEntityImages": [],
               "Depth": 1, "Stage": 40, "Mode": 1}
    return json.dumps(context).replace("/", "\\/").encode()


def post(url: str, content: bytes, **kwargs):
    return httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=10, **kwargs)


def test_events_reach_the_callback_and_refusals_keep_their_status(trigger_host):
    received: list[dict] = []

    async def take(event):
        received.append(event)

    inputs = {"entityType": "account", "webhookKey": "k3y", "maxBodyBytes": 4096}
    base = trigger_host([
        HostedTrigger("/hook", "dynamics365.webhook", inputs, None, take),
        HostedTrigger("/sync-callback", "dynamics365.webhook", {"entityType": "account"}, None, received.append),
    ])
    answer = post(f"{base}/hook?code=k3y", body())
    assert answer.status_code == 200 and answer.json() == {"status": "received"}
    assert [e["attributes"] for e in received] == [{"name": "Contoso"}]

    assert post(f"{base}/hook?code=nope", body()).status_code == 401
    assert post(f"{base}/hook", body()).status_code == 401
    assert httpx.get(f"{base}/hook?code=k3y").status_code == 405
    assert post(f"{base}/hook?code=k3y", b"{oops").status_code == 400
    assert post(f"{base}/hook?code=k3y", b"x" * 10_000).status_code == 413

    def chunks():  # no Content-Length: the host still stops reading at the limit
        for _ in range(100):
            yield b"x" * 1000

    streamed = httpx.post(f"{base}/hook?code=k3y", content=chunks(), timeout=10)
    assert streamed.status_code == 413
    probe = httpx.post(f"{base}/hook?code=k3y", headers={"x-ms-dynamics-request-name": "URL_VALIDATION"})
    assert probe.status_code == 200
    assert post(f"{base}/sync-callback", body("Update")).status_code == 200
    assert len(received) == 2 and received[1]["message"] == "Update"


def test_a_failing_flow_answers_503_so_dataverse_retries(trigger_host):
    def broken(event):
        raise RuntimeError("flow is down")

    base = trigger_host([HostedTrigger("/", "dynamics365.webhook", {"entityType": "account"}, None, broken)])
    answer = post(f"{base}/", body())
    assert answer.status_code == 503 and "flow is down" not in answer.text


def test_a_failing_flow_never_logs_the_webhook_key(trigger_host, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "wk-0123456789-very-secret"

    def broken(event):  # a flow whose error happens to quote the URL it was called at
        raise RuntimeError(f"flow is down (called at /hook?key={secret})")

    base = trigger_host([HostedTrigger("/hook", "dynamics365.webhook",
                                       {"entityType": "account", "webhookKey": secret}, None, broken)])
    answers = [post(f"{base}/hook?code={secret}", body()), post(f"{base}/hook?code=wrong-{secret}", body())]
    assert [a.status_code for a in answers] == [503, 401]
    assert "flow is down" in caplog.text and "Traceback" in caplog.text  # logged with its traceback...
    assert secret not in caplog.text  # ...but never the key
    assert not any(secret in a.text for a in answers)


def test_inputs_are_checked_when_the_app_is_made():
    with pytest.raises(InputValidationError, match="/entityType"):
        create_trigger_app([HostedTrigger("/", "dynamics365.webhook", {}, None, None)])


def odd_body() -> bytes:
    """A delivery whose name holds a lone surrogate, a NUL, a line separator and a terminal escape."""
    return body().replace(b'"Contoso"', b'"\\ud800 \\u0000 \\u2028 \\u001b[31m red \\ud83d\\ude00"')


ODD_NAME = "\ud800 \x00 \u2028 \x1b[31m red \U0001f600"


def test_odd_text_in_a_delivery_is_taken_and_printed_as_json_that_reads_back(trigger_host):
    received: list[dict] = []
    base = trigger_host([HostedTrigger("/", "dynamics365.webhook", {"entityType": "account"}, None, received.append)])
    assert post(f"{base}/", odd_body()).status_code == 200
    assert received[0]["attributes"] == {"name": ODD_NAME}
    for encoding in ("utf-8", "ascii", "cp1252", None):
        line = event_line(received[0], encoding)
        assert "\n" not in line and json.loads(line) == received[0]
        line.encode(encoding or "utf-8")
    assert "😀" in event_line({"name": "😀"}, "utf-8")      # readable whenever the console can show it


def test_a_failing_flow_with_odd_text_still_answers_503_and_logs(trigger_host, caplog):
    def broken(event):
        raise RuntimeError(f"cannot take {event['attributes']['name']}")

    base = trigger_host([HostedTrigger("/", "dynamics365.webhook", {"entityType": "account"}, None, broken)])
    assert post(f"{base}/", odd_body()).status_code == 503
    assert "cannot take \\ud800" in caplog.text


def test_a_client_leaving_mid_body_is_quiet(trigger_host, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    received: list[dict] = []
    base = trigger_host([HostedTrigger("/", "dynamics365.webhook", {"entityType": "account"}, None, received.append)])
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{\"MessageName\":")
        time.sleep(0.2)          # let the host start reading the body before the client goes
    assert post(f"{base}/", body()).status_code == 200      # served on, and the disconnect handled by now
    printed = capfd.readouterr().err          # uvicorn's own logger writes straight to stderr
    assert "ClientDisconnect" not in caplog.text + printed and "Traceback" not in caplog.text + printed, printed
    assert len(received) == 1
