"""The webhook trigger end to end: deploy it into the emulator, let the emulator call our host
over a real socket while rows change, check old and new values, verify, remove, and see silence."""

from __future__ import annotations

import uuid

from d365_components.definitions import Context
from d365_components.runtime import deploy_webhook, open_connection, parse_inputs, remove_webhook
from d365_components.triggers import registration
from d365_components.triggers.webhook import DataverseWebhook, registration_for
from d365_components.webhook_host import HostedTrigger

KEY = "dynamics365.webhook"


async def test_deploy_change_rows_verify_remove(trigger_emulator, connection, trigger_host):
    received: list[dict] = []
    key = uuid.uuid4().hex
    inputs = {"entityType": "contact", "webhookKey": key, "includeOldValues": True, "includePostImage": True}
    base = trigger_host([HostedTrigger("/contacts", KEY, inputs, None, received.append)])
    url = f"{base}/contacts"
    webhooks = trigger_emulator.app.state.webhooks

    state = await deploy_webhook(KEY, inputs, url, connection)
    assert await deploy_webhook(KEY, inputs, url, connection) == state  # redeploy: nothing new

    conn = open_connection(connection)
    client = conn.open_client()
    try:
        made = await client.create("contacts", {"firstname": "Ada", "lastname": "Lovelace", "jobtitle": "Analyst"})
        await webhooks.drain()
        await client.update("contacts", made["id"], {"jobtitle": "Engineer", "lastname": "Lovelace"})
        await webhooks.drain()
        await client.delete("contacts", made["id"])
        outcomes = await webhooks.drain()
        assert all(o.ok for o in outcomes if o.url.startswith(base)), [o for o in outcomes if not o.ok]

        mine = [e for e in received if e["id"] == made["id"]]
        assert [e["message"] for e in mine] == ["Create", "Update", "Delete"]
        created, updated, deleted = mine
        assert created["attributes"]["firstname"] == "Ada" and created["changed"]["jobtitle"] == {"old": None, "new": "Analyst"}
        assert created["postImage"]["jobtitle"] == "Analyst"
        assert updated["changed"]["jobtitle"] == {"old": "Analyst", "new": "Engineer"}
        assert "lastname" not in updated["changed"]  # sent, but the same value
        assert updated["preImage"]["jobtitle"] == "Analyst" and updated["postImage"]["jobtitle"] == "Engineer"
        assert deleted["preImage"]["firstname"] == "Ada" and deleted["trimmed"] is False
        assert all(e["table"] == "contact" and e["organization"]["id"] for e in mine)

        report = await DataverseWebhook().verify(Context(client=client), parse_inputs(DataverseWebhook, inputs), url)
        assert report["registered"] and report["matches"], report["differences"]
        assert sorted(s["message"] for s in report["steps"]) == ["Create", "Delete", "Update"]
        assert all(s["images"] for s in report["steps"])

        await remove_webhook(KEY, inputs, state, connection)
        count = len(received)
        await client.create("contacts", {"firstname": "Grace", "lastname": "Hopper"})
        await webhooks.drain()
        assert len(received) == count  # removed: no more calls
        wanted = registration_for(parse_inputs(DataverseWebhook, inputs), url)
        assert (await registration.survey(client, wanted.name)).endpoints == []
    finally:
        await conn.aclose()


async def test_a_wrong_key_is_refused_and_dataverse_records_the_failure(trigger_emulator, connection, trigger_host):
    received: list[dict] = []
    inputs = {"entityType": "account", "webhookKey": "the-right-key", "messages": ["Create"]}
    base = trigger_host([HostedTrigger("/accounts", KEY, inputs, None, received.append)])
    deployed_with_other_key = {**inputs, "webhookKey": "a-stale-key"}
    state = await deploy_webhook(KEY, deployed_with_other_key, f"{base}/accounts", connection)
    conn = open_connection(connection)
    client = conn.open_client()
    try:
        await client.create("accounts", {"name": f"Refused {uuid.uuid4().hex[:6]}"})
        outcomes = await trigger_emulator.app.state.webhooks.drain()
        mine = [o for o in outcomes if o.url.startswith(base)]
        assert mine and mine[-1].status == 401 and not received
        # redeploying with the right key fixes it in place
        again = await deploy_webhook(KEY, inputs, f"{base}/accounts", connection)
        assert again["endpointId"] == state["endpointId"]
        await client.create("accounts", {"name": f"Accepted {uuid.uuid4().hex[:6]}"})
        await trigger_emulator.app.state.webhooks.drain()
        assert [e["message"] for e in received] == ["Create"]
    finally:
        await remove_webhook(KEY, inputs, state, connection)
        await conn.aclose()



async def test_synchronous_steps_deliver_before_the_save_returns(connection, trigger_host):
    received: list[dict] = []
    inputs = {"entityType": "task", "messages": ["Create"], "synchronous": True}
    base = trigger_host([HostedTrigger("/tasks", KEY, inputs, None, received.append)])
    state = await deploy_webhook(KEY, inputs, f"{base}/tasks", connection)
    conn = open_connection(connection)
    client = conn.open_client()
    try:
        made = await client.create("tasks", {"subject": "Call back"})
        assert [e["id"] for e in received] == [made["id"]]  # no waiting: it ran inside the save
        assert received[0]["mode"] == 0
    finally:
        await remove_webhook(KEY, inputs, state, connection)
        await conn.aclose()


async def test_oversized_payloads_arrive_trimmed_with_the_row_id(trigger_emulator, connection, trigger_host):
    received: list[dict] = []
    inputs = {"entityType": "annotation", "messages": ["Update"], "includeOldValues": True}
    base = trigger_host([HostedTrigger("/big", KEY, inputs, None, received.append)])
    state = await deploy_webhook(KEY, inputs, f"{base}/big", connection)
    conn = open_connection(connection)
    client = conn.open_client()
    try:
        made = await client.create("annotations", {"subject": "Big attachment"})
        await client.update("annotations", made["id"], {"documentbody": "QUJD" * 75_000})  # 300 KB
        await trigger_emulator.app.state.webhooks.drain()
        [event] = [e for e in received if e["id"] == made["id"]]
        assert event["trimmed"] is True and event["attributes"] == {} and event["preImage"] is None
    finally:
        await remove_webhook(KEY, inputs, state, connection)
        await conn.aclose()
