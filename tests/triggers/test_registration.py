"""Webhook registration against the emulator: deploy creates the endpoint and steps, a second
deploy converges instead of duplicating, verify reports drift, remove deletes everything."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from d365_components.definitions import Context
from d365_components.errors import InputValidationError
from d365_components.runtime import deploy_webhook, open_connection, parse_inputs, remove_webhook
from d365_components.triggers import registration
from d365_components.triggers.webhook import DataverseWebhook

KEY = "dynamics365.webhook"

async def _verify(connection, inputs, url):
    conn = open_connection(connection)
    try:
        return await DataverseWebhook().verify(Context(client=conn.open_client()), parse_inputs(DataverseWebhook, inputs), url)
    finally:
        await conn.aclose()


async def _endpoints(connection, name):
    conn = open_connection(connection)
    try:
        return await registration.survey(conn.open_client(), name)
    finally:
        await conn.aclose()


async def test_deploy_is_idempotent_verifiable_and_removable(connection):
    url = f"https://127.0.0.1:9/hooks/{uuid.uuid4()}"
    inputs = {"entityType": "contact", "webhookKey": "k-1", "messages": ["Create", "Update"],
              "filteringColumns": ["lastname", "firstname"]}
    state = await deploy_webhook(KEY, inputs, url, connection)
    assert set(state["steps"]) == {"Create", "Update"} and state["name"].startswith("d365-components contact ")
    report = await _verify(connection, inputs, url)
    assert report["registered"] and report["matches"], report["differences"]
    assert {s["message"] for s in report["steps"]} == {"Create", "Update"}
    update = next(s for s in report["steps"] if s["message"] == "Update")
    assert update["filteringattributes"] == "firstname,lastname" and update["mode"] == 1 and update["stage"] == 40
    assert report["endpoint"]["url"] == url and "authvalue" not in report["endpoint"]

    again = await deploy_webhook(KEY, inputs, url, connection)
    assert again == state  # same endpoint, same steps: nothing duplicated
    found = await _endpoints(connection, state["name"])
    assert len(found.endpoints) == 1 and len(found.steps[state["endpointId"]]) == 2

    # drift: verify names it, a redeploy with new inputs reconciles it
    changed = {**inputs, "messages": ["Update", "Delete"], "filteringColumns": None}
    drift = await _verify(connection, changed, url)
    assert not drift["matches"]
    assert "no step for Delete" in drift["differences"] and "unexpected step for Create" in drift["differences"]
    moved = await deploy_webhook(KEY, changed, url, connection)
    assert set(moved["steps"]) == {"Update", "Delete"} and moved["endpointId"] == state["endpointId"]
    assert moved["steps"]["Update"] == state["steps"]["Update"]
    assert (await _verify(connection, changed, url))["matches"]

    await remove_webhook(KEY, changed, moved, connection)
    gone = await _verify(connection, changed, url)
    assert gone == {"registered": False, "matches": False, "differences": [gone["differences"][0]],
                    "endpoint": None, "steps": []}
    await remove_webhook(KEY, changed, moved, connection)  # removing twice is harmless


async def test_duplicates_left_by_someone_else_are_merged(connection):
    url = f"https://127.0.0.1:9/hooks/{uuid.uuid4()}"
    inputs = {"entityType": "account", "name": f"dup-{uuid.uuid4().hex[:8]}", "messages": ["Create"]}
    conn = open_connection(connection)
    client = conn.open_client()
    try:
        wanted = registration.Registration(name=inputs["name"], url=url, key=None, table="account", messages=("Create",))
        for _ in range(2):
            await client.create("serviceendpoints", wanted.endpoint_fields())
        assert len((await registration.survey(client, wanted.name)).endpoints) == 2
        drift = await registration.verify(client, wanted)
        assert any("duplicates" in note for note in drift["differences"])
        await registration.deploy(client, wanted)
        found = await registration.survey(client, wanted.name)
        assert len(found.endpoints) == 1
        assert (await registration.verify(client, wanted))["matches"]
        await registration.remove(client, {"name": wanted.name})
    finally:
        await conn.aclose()


async def test_unknown_tables_and_bad_inputs_are_named(connection):
    with pytest.raises(registration.RegistrationError, match="nosuchtable"):
        await deploy_webhook(KEY, {"entityType": "nosuchtable"}, "https://127.0.0.1:9/x", connection)
    with pytest.raises(InputValidationError, match="/messages"):
        await deploy_webhook(KEY, {"entityType": "account", "messages": ["Merge"]}, "https://127.0.0.1:9/x", connection)


def test_registration_repr_hides_the_key():
    wanted = registration.Registration(name="n", url="https://x", key="top-secret", table="account", messages=("Create",))
    assert "top-secret" not in repr(wanted)


async def test_two_deploys_at_once_make_one_registration(connection):
    """Deploys of one registration in one process are serialized; across processes the loser's
    duplicates are what verify reports and the next deploy folds (see the test above)."""
    url = f"https://127.0.0.1:9/hooks/{uuid.uuid4()}"
    inputs = {"entityType": "contact", "messages": ["Create", "Update"], "includeOldValues": True}
    conn = open_connection(connection)
    try:
        hook, typed = DataverseWebhook(), parse_inputs(DataverseWebhook, inputs)
        ctx = Context(client=conn.open_client())
        first, second = await asyncio.gather(hook.deploy(ctx, typed, url), hook.deploy(ctx, typed, url))
        assert first == second
        found = await registration.survey(ctx.client, first["name"])
        assert len(found.endpoints) == 1 and len(found.steps[first["endpointId"]]) == 2
        assert (await hook.verify(ctx, typed, url))["matches"]
        await hook.remove(ctx, typed, first)
    finally:
        await conn.aclose()
