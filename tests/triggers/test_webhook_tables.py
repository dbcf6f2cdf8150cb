"""The webhook trigger on several tables or on any table (Prismatic's trigger receives any
subscription): deliveries for the tables it covers are accepted, steps are registered per table,
tables may be named by entity set or logical name, and remove cleans every step."""

from __future__ import annotations

import uuid

import pytest

from d365_components.definitions import Context
from d365_components.errors import InputValidationError
from d365_components.runtime import deploy_webhook, open_connection, parse_inputs, remove_webhook
from d365_components.triggers import registration
from d365_components.triggers.webhook import DataverseWebhook, registration_for
from d365_components.webhook_host import HostedTrigger
from tests.triggers.test_webhook_handle import context, handle, request

KEY = "dynamics365.webhook"


async def test_a_delivery_for_a_listed_table_or_any_table_is_accepted():
    several = {"entityType": "contact", "moreTables": ["account"], "webhookKey": "s3cr3t"}
    assert [e["table"] for e in (await handle(request(context(table="account")), several)).events] == ["account"]
    assert [e["table"] for e in (await handle(request(context(table="contact")), several)).events] == ["contact"]
    ignored = await handle(request(context(table="lead")), several)
    assert ignored.status == 200 and ignored.events == [] and ignored.body["status"] == "ignored"

    anything = {"entityType": "*", "webhookKey": "s3cr3t"}
    for table in ("lead", "account", "new_custom"):
        assert [e["table"] for e in (await handle(request(context(table=table)), anything)).events] == [table]
    assert (await handle(request(context(table="lead"), code="wrong"), anything)).status == 401


def test_the_schema_offers_any_table_and_more_tables():
    properties = DataverseWebhook.input_schema()["properties"]
    assert "any table" in properties["entityType"]["description"]
    assert properties["entityType"]["pattern"].startswith("^(?:\\*|")
    assert properties["moreTables"]["items"]["pattern"]
    with pytest.raises(InputValidationError) as caught:  # refused before anything runs
        parse_inputs(DataverseWebhook, {"entityType": "contact", "moreTables": ["not a table"]})
    assert [e.pointer for e in caught.value.errors] == ["/moreTables/0"]


async def _events_for(trigger_emulator, client, received, make) -> list[str]:
    count = len(received)
    for entity_set, body in make:
        await client.create(entity_set, body)
    await trigger_emulator.app.state.webhooks.drain()
    return sorted(e["table"] for e in received[count:])


async def test_several_tables_by_either_name_one_step_each_and_remove_cleans_all(
        trigger_emulator, connection, trigger_host):
    received: list[dict] = []
    inputs = {"entityType": "contacts", "moreTables": ["account", "leads"], "messages": ["Create"],
              "webhookKey": uuid.uuid4().hex}
    base = trigger_host([HostedTrigger("/several", KEY, inputs, connection, received.append)])
    url = f"{base}/several"
    state = await deploy_webhook(KEY, inputs, url, connection)
    assert state["tables"] == ["contact", "account", "lead"]
    assert set(state["steps"]) == {"Create", "Create account", "Create lead"}
    assert await deploy_webhook(KEY, inputs, url, connection) == state  # converges, nothing doubled

    conn = open_connection(connection)
    client = conn.open_client()
    try:
        report = await DataverseWebhook().verify(Context(client=client), parse_inputs(DataverseWebhook, inputs), url)
        assert report["matches"], report["differences"]
        assert sorted(s["table"] for s in report["steps"]) == ["account", "contact", "lead"]
        tables = await _events_for(trigger_emulator, client, received, [
            ("contacts", {"lastname": "Several"}), ("accounts", {"name": "Several"}),
            ("leads", {"subject": "Several", "lastname": "Lead"}), ("tasks", {"subject": "not watched"})])
        assert tables == ["account", "contact", "lead"]

        # one table fewer: its step goes, the others stay
        fewer = {**inputs, "moreTables": ["account"]}
        moved = await deploy_webhook(KEY, fewer, url, connection)
        assert set(moved["steps"]) == {"Create", "Create account"}
        assert moved["steps"]["Create account"] == state["steps"]["Create account"]

        await remove_webhook(KEY, fewer, moved, connection)
        wanted = registration_for(parse_inputs(DataverseWebhook, fewer), url)
        assert (await registration.survey(client, wanted.name)).endpoints == []
        assert await _events_for(trigger_emulator, client, received, [("contacts", {"lastname": "Gone"})]) == []
    finally:
        await conn.aclose()


async def test_any_table_registers_unfiltered_steps(trigger_emulator, connection, trigger_host):
    received: list[dict] = []
    inputs = {"entityType": "*", "messages": ["Create"], "webhookKey": uuid.uuid4().hex}
    base = trigger_host([HostedTrigger("/any", KEY, inputs, None, received.append)])
    state = await deploy_webhook(KEY, inputs, f"{base}/any", connection)
    conn = open_connection(connection)
    client = conn.open_client()
    try:
        assert state["tables"] == ["*"] and set(state["steps"]) == {"Create"}
        tables = await _events_for(trigger_emulator, client, received, [
            ("leads", {"subject": "Any", "lastname": "Lead"}), ("tasks", {"subject": "Any"})])
        assert {"lead", "task"} <= set(tables)
    finally:
        await remove_webhook(KEY, inputs, state, connection)
        await conn.aclose()


async def test_a_subscription_configured_by_hand_is_received(trigger_emulator, connection, trigger_host):
    """Registered in Dataverse by someone else (the Plug-in Registration Tool): the trigger only
    serves it, with the shared key; tables named by entity set are resolved through metadata."""
    received: list[dict] = []
    key = uuid.uuid4().hex
    inputs = {"entityType": "contacts", "moreTables": ["leads"], "webhookKey": key}
    base = trigger_host([HostedTrigger("/by-hand", KEY, inputs, connection, received.append)])
    conn = open_connection(connection)
    client = conn.open_client()
    endpoint = None
    try:
        endpoint = (await client.create("serviceendpoints", {
            "name": f"by hand {key[:8]}", "url": f"{base}/by-hand", "contract": 8, "authtype": 4,
            "authvalue": key, "messageformat": 2}))["id"]
        [message] = [row async for row in client.rows("sdkmessages", params={"$filter": "name eq 'Create'"})]
        [lead_filter] = [row async for row in client.rows("sdkmessagefilters", params={
            "$filter": f"primaryobjecttypecode eq 'lead' and _sdkmessageid_value eq {message['sdkmessageid']}"})]
        await client.create("sdkmessageprocessingsteps", {
            "name": "by hand: Create of lead", "stage": 40, "mode": 1, "rank": 1, "supporteddeployment": 0,
            "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint})",
            "sdkmessageid@odata.bind": f"/sdkmessages({message['sdkmessageid']})",
            "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({lead_filter['sdkmessagefilterid']})"})
        tables = await _events_for(trigger_emulator, client, received, [("leads", {"subject": "By hand", "lastname": "L"})])
        assert tables == ["lead"]
    finally:
        if endpoint:
            await registration.remove(client, {"name": f"by hand {key[:8]}"})
        await conn.aclose()
