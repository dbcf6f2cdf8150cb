"""Webhooks out over real sockets: the emulator (HTTPS) posts RemoteExecutionContexts to a small
receiver (plain HTTP, uvicorn in a thread) registered through the Web API like in Dataverse."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
import uuid
from urllib.parse import parse_qs

import httpx
import pytest
import uvicorn

from d365_components.emulator import defaults
from d365_components.emulator.extensions import EmulatorFeatures, install
from d365_components.emulator.server import Emulator
from d365_components.triggers.payload import parse_event

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"


class Receiver:
    """An ASGI app recording every POST; `answers` is a queue of statuses to reply (then 200)."""

    def __init__(self):
        self.calls: list[dict] = []
        self.answers: list[int] = []
        self.delays: dict[str, float] = {}        # path -> seconds to wait before answering
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.socket = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append({"path": scope["path"], "query": parse_qs(scope["query_string"].decode()),
                           "headers": {k.decode(): v.decode() for k, v in scope["headers"]}, "raw": body,
                           "json": json.loads(body) if body else None})
        if scope["path"] in self.delays:
            await asyncio.sleep(self.delays[scope["path"]])
        status = self.answers.pop(0) if self.answers else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def for_path(self, path: str) -> list[dict]:
        return [c for c in self.calls if c["path"] == path]

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)
        self.socket.close()


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def emulator():
    emulator = Emulator(seed="demo")
    emulator.app = install(emulator.app, settings=EmulatorFeatures())
    with emulator:
        yield emulator
    emulator.app.state.webhooks.close()


@pytest.fixture(scope="module")
def client(emulator):
    headers = {"Authorization": f"Bearer {emulator.get_token()}", "Accept": "application/json",
               "OData-Version": "4.0", "OData-MaxVersion": "4.0"}
    with httpx.Client(base_url=emulator.api_url + "/", verify=emulator.ssl_context, headers=headers,
                      timeout=30) as client:
        yield client


def created_id(response) -> str:
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def register(client, receiver, *, message: str, table: str, mode: int = 1, authtype: int = 4,
             authvalue: str = "s3cr3t", filtering: str | None = None, images: list[dict] = (),
             autodelete: bool = False) -> tuple[str, str]:
    """Register an endpoint and a step the Dataverse way; returns (path the receiver sees, step id)."""
    path = f"/hook/{uuid.uuid4().hex[:8]}"
    endpoint = created_id(client.post("serviceendpoints", json={
        "name": f"hook {path}", "url": receiver.url + path, "contract": 8, "authtype": authtype,
        "authvalue": authvalue, "messageformat": 2}))
    message_id = client.get(f"sdkmessages?$select=sdkmessageid&$filter=name eq '{message}'").json()["value"][0]["sdkmessageid"]
    filter_id = client.get(f"sdkmessagefilters?$select=sdkmessagefilterid&$filter=_sdkmessageid_value eq {message_id} "
                           f"and primaryobjecttypecode eq '{table}'").json()["value"][0]["sdkmessagefilterid"]
    step = {"name": f"{path}: {message} of {table}", "stage": 40, "mode": mode, "rank": 1, "supporteddeployment": 0,
            "asyncautodelete": autodelete, "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint})",
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
            "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})"}
    if filtering:
        step["filteringattributes"] = filtering
    step_id = created_id(client.post("sdkmessageprocessingsteps", json=step))
    for image in images:
        created_id(client.post("sdkmessageprocessingstepimages", json={
            **image, "messagepropertyname": "Target",
            "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step_id})"}))
    return path, step_id


def pairs(items: list[dict]) -> dict:
    return {item["key"]: item["value"] for item in items}


async def test_update_with_images_filtering_and_webhook_key(emulator, client, receiver):
    path, step_id = register(client, receiver, message="Update", table="account", filtering="telephone1,name",
                             images=[{"name": "pre", "entityalias": "PreImage", "imagetype": 0, "attributes": "name,telephone1"},
                                     {"name": "post", "entityalias": "PostImage", "imagetype": 1}])
    account = created_id(client.post("accounts", json={"name": "Hooked Ltd", "telephone1": "555-0100",
                                                      "revenue": 1000.5, "industrycode": 7}))
    assert client.patch(f"accounts({account})", json={"telephone1": "555-0199"}).status_code == 204
    assert client.patch(f"accounts({account})", json={"websiteurl": "https://hooked.example"}).status_code == 204   # filtered out
    await emulator.app.state.webhooks.drain()

    [call] = receiver.for_path(path)
    assert call["query"] == {"code": ["s3cr3t"]}
    headers = call["headers"]
    assert headers["x-ms-dynamics-request-name"] == "Update"
    assert headers["x-ms-dynamics-entity-name"] == "account"
    assert headers["x-ms-dynamics-organization"] == emulator.org_url.split("://")[1]
    assert uuid.UUID(headers["x-ms-correlation-request-id"])
    assert "x-ms-dynamics-msg-size-exceeded" not in headers
    assert headers["content-type"].startswith("application/json")
    assert b'"\\/Date(' in call["raw"] and b'Entity:http:\\/\\/schemas.microsoft.com' in call["raw"]

    context = call["json"]
    assert list(context) == sorted(context)                         # WCF writes members alphabetically
    assert (context["MessageName"], context["Stage"], context["Mode"], context["Depth"]) == ("Update", 40, 1, 1)
    assert context["PrimaryEntityName"] == "account" and context["PrimaryEntityId"] == account
    assert context["OrganizationId"] == "00000000-0000-4000-8000-0000000000a1"
    assert context["UserId"] == context["InitiatingUserId"] == "00000000-0000-4000-8000-0000000000a2"
    assert context["CorrelationId"] == headers["x-ms-correlation-request-id"]
    assert context["OwningExtension"]["Id"] == step_id
    assert context["OwningExtension"]["LogicalName"] == "sdkmessageprocessingstep"
    assert context["ParentContext"]["Stage"] == 30
    assert context["OperationCreatedOn"].startswith("/Date(")
    target = pairs(context["InputParameters"])["Target"]
    assert target["__type"] == f"Entity:{CONTRACTS}" and target["LogicalName"] == "account" and target["Id"] == account
    attributes = pairs(target["Attributes"])
    assert attributes["telephone1"] == "555-0199" and attributes["accountid"] == account
    assert "name" not in attributes                                  # only what the update changed
    assert attributes["modifiedon"].startswith("/Date(") and attributes["modifiedon"].endswith(")/")
    assert attributes["modifiedby"] == {"__type": f"EntityReference:{CONTRACTS}", "Id": "00000000-0000-4000-8000-0000000000a2",
                                        "KeyAttributes": [], "LogicalName": "systemuser", "Name": None, "RowVersion": None}
    pre = pairs(context["PreEntityImages"])["PreImage"]
    assert pairs(pre["Attributes"]) == {"accountid": account, "name": "Hooked Ltd", "telephone1": "555-0100"}
    event = parse_event(context, organization_domain=headers["x-ms-dynamics-organization"])   # what the trigger sees
    assert (event["message"], event["table"], event["id"]) == ("Update", "account", account)
    assert event["preImage"]["telephone1"] == "555-0100" and event["postImage"]["revenue"] == 1000.5
    assert "telephone1" in event["changed"] and event["operationCreatedOn"].startswith("20")
    post = pairs(pairs(context["PostEntityImages"])["PostImage"]["Attributes"])
    assert post["telephone1"] == "555-0199"
    assert post["revenue"] == {"__type": f"Money:{CONTRACTS}", "Value": 1000.5}
    assert post["industrycode"] == {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 7}
    assert pairs(pairs(context["PostEntityImages"])["PostImage"]["FormattedValues"])["industrycode"] == "Consulting"

    # the async delivery became a system job
    jobs = client.get(f"asyncoperations?$filter=_owningextensionid_value eq {step_id}&$select=statuscode,name").json()["value"]
    assert [j["statuscode"] for j in jobs] == [30]


async def test_create_retries_once_on_503_and_delete_sends_a_reference(emulator, client, receiver):
    created_path, _ = register(client, receiver, message="Create", table="contact", mode=0, authtype=5,
                               authvalue='<settings><setting name="x-api-key" value="k3y" /></settings>')
    deleted_path, _ = register(client, receiver, message="Delete", table="contact", authtype=6,
                               authvalue='<settings><setting name="tenant" value="t1" /></settings>',
                               images=[{"name": "pre", "entityalias": "Before", "imagetype": 0, "attributes": "lastname"}])
    receiver.answers[:] = [503]
    contact = created_id(client.post("contacts", json={"firstname": "Ret", "lastname": "Ry"}))   # sync: delivered before 204
    calls = receiver.for_path(created_path)
    assert len(calls) == 2 and calls[1]["headers"]["x-api-key"] == "k3y" and calls[0]["raw"] == calls[1]["raw"]
    context = calls[1]["json"]
    assert (context["MessageName"], context["Mode"], context["IsInTransaction"]) == ("Create", 0, True)
    assert pairs(context["OutputParameters"]) == {"id": contact}
    assert pairs(pairs(context["InputParameters"])["Target"]["Attributes"])["lastname"] == "Ry"

    assert client.delete(f"contacts({contact})").status_code == 204
    await emulator.app.state.webhooks.drain()
    [call] = receiver.for_path(deleted_path)
    assert call["query"] == {"tenant": ["t1"]}
    context = call["json"]
    assert pairs(context["InputParameters"])["Target"] == {
        "__type": f"EntityReference:{CONTRACTS}", "Id": contact, "KeyAttributes": [], "LogicalName": "contact",
        "Name": None, "RowVersion": None}
    assert pairs(pairs(context["PreEntityImages"])["Before"]["Attributes"]) == {"contactid": contact, "lastname": "Ry"}
    assert context["PostEntityImages"] == []


async def test_failed_sync_delivery_fails_the_request_and_undoes_it(emulator, client, receiver):
    path, _ = register(client, receiver, message="Create", table="lead", mode=0)
    receiver.answers[:] = [500]
    marker = uuid.uuid4().hex[:8]
    response = client.post("leads", json={"subject": marker, "lastname": "Nope"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80040265"
    assert "s3cr3t" not in response.text
    assert len(receiver.for_path(path)) == 1                           # 500 is not retried
    assert client.get(f"leads?$filter=subject eq '{marker}'").json()["value"] == []


async def test_failed_async_delivery_is_a_failed_system_job(emulator, client, receiver):
    path, step_id = register(client, receiver, message="Create", table="task", autodelete=True)
    receiver.answers[:] = [502, 502]
    created_id(client.post("tasks", json={"subject": "retry me"}))
    await emulator.app.state.webhooks.drain()
    assert len(receiver.for_path(path)) == 2
    jobs = client.get(f"asyncoperations?$filter=statuscode eq 31 and _owningextensionid_value eq {step_id}"
                      "&$select=name,friendlymessage,errorcode,message,completedon").json()["value"]
    assert len(jobs) == 1 and "502" in jobs[0]["message"] and jobs[0]["completedon"]
    # asyncautodelete: a successful run leaves no job behind
    created_id(client.post("tasks", json={"subject": "fine"}))
    await emulator.app.state.webhooks.drain()
    jobs = client.get(f"asyncoperations?$filter=_owningextensionid_value eq {step_id}&$select=statuscode").json()["value"]
    assert [j["statuscode"] for j in jobs] == [31]


async def test_payloads_over_256_kb_are_trimmed_and_flagged(emulator, client, receiver):
    path, _ = register(client, receiver, message="Create", table="annotation",
                       images=[{"name": "post", "entityalias": "Post", "imagetype": 1}])
    document = base64.b64encode(b"x" * 300_000).decode()
    note = created_id(client.post("annotations", json={"subject": "big", "documentbody": document,
                                                       "filename": "big.txt", "mimetype": "text/plain"}))
    await emulator.app.state.webhooks.drain()
    [call] = receiver.for_path(path)
    assert call["headers"]["x-ms-dynamics-msg-size-exceeded"]
    context = call["json"]
    assert len(call["raw"]) < 256 * 1024
    assert not {"InputParameters", "ParentContext", "PreEntityImages", "PostEntityImages"} & set(context)
    assert context["PrimaryEntityId"] == note and context["MessageName"] == "Create"


async def test_async_steps_do_not_hold_the_response_and_time_out(emulator, client, receiver):
    path, step_id = register(client, receiver, message="Create", table="phonecall")
    receiver.delays[path] = 1.0
    webhooks = emulator.app.state.webhooks
    webhooks.timeout = 0.3
    try:
        started = time.perf_counter()
        created_id(client.post("phonecalls", json={"subject": "slow hook"}))
        assert time.perf_counter() - started < 0.3                 # answered before the delivery finished
        await webhooks.drain()
    finally:
        webhooks.timeout = 60.0
    jobs = client.get(f"asyncoperations?$filter=_owningextensionid_value eq {step_id}&$select=statuscode,message").json()["value"]
    assert [j["statuscode"] for j in jobs] == [31]
    assert "did not answer within 0.3 seconds" in jobs[0]["message"]


async def test_each_request_has_its_own_request_id_and_keeps_the_callers_correlation_id(emulator, client, receiver):
    path, _ = register(client, receiver, message="Create", table="opportunity")
    correlation = str(uuid.uuid4())
    created_id(client.post("opportunities", json={"name": "One"}, headers={"x-ms-correlation-request-id": correlation}))
    created_id(client.post("opportunities", json={"name": "Two"}))
    await emulator.app.state.webhooks.drain()
    first, second = sorted((call["json"] for call in receiver.for_path(path)),
                           key=lambda c: pairs(pairs(c["InputParameters"])["Target"]["Attributes"])["name"])
    assert first["CorrelationId"] == correlation and uuid.UUID(second["CorrelationId"]) and second["CorrelationId"] != correlation
    assert uuid.UUID(first["RequestId"]) and first["RequestId"] != second["RequestId"]
    assert first["InitiatingUserAzureActiveDirectoryObjectId"] == defaults.APP_USER_OBJECT_ID
