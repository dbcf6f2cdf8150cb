"""The trigger host over real HTTP: events reach the callback before Dataverse's 200, refusals
keep their status, oversized bodies are cut off, a failing flow answers 503 and never logs the key."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from d365_components.errors import InputValidationError
from d365_components.webhook_host import HostedTrigger, create_trigger_app

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
