"""The runtime: validation before anything runs, JSON output, the sync facade."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import d365_test_acme
import pytest

from d365_components.definitions import Context, WebhookRequest, WebhookResponse, WebhookTrigger
from d365_components.errors import InputValidationError, UnknownKeyError, WebhookRejected
from d365_components.hookspecs import hookimpl
from d365_components.registry import build_registry, make_plugin_manager
from d365_components.runtime import fetch_choices, handle_webhook, invoke, invoke_sync, open_connection


@pytest.fixture(scope="module")
def registry():
    pm = make_plugin_manager(entry_points=False)
    pm.register(d365_test_acme)
    return build_registry(pm)


async def test_invoke_validates_exactly_and_returns_json(registry) -> None:
    result = await invoke("acme.echo", {"message": "hi", "recordsPerPage": 5}, registry=registry)
    assert result == {"message": "hi", "recordsPerPage": 5, "fetchAll": False}
    # text is not a number: coercion is the runtime's explicit step (coerce_form_values), never implicit
    with pytest.raises(InputValidationError):
        await invoke("acme.echo", {"message": "hi", "recordsPerPage": "5"}, registry=registry)


async def test_invalid_inputs_never_reach_perform(registry, monkeypatch) -> None:
    called = []
    monkeypatch.setattr(d365_test_acme.Echo, "perform", lambda *a: called.append(a))
    with pytest.raises(InputValidationError) as info:
        await invoke("acme.echo", {"recordsPerPage": 9999}, registry=registry)
    assert [e.pointer for e in info.value.errors] == ["/message", "/recordsPerPage"]
    assert called == []


async def test_unknown_action_and_connection_keys(registry) -> None:
    with pytest.raises(UnknownKeyError):
        await invoke("acme.nope", {}, registry=registry)
    with pytest.raises(InputValidationError, match="/key"):
        open_connection({"inputs": {}}, registry)
    with pytest.raises(UnknownKeyError):
        open_connection({"key": "acme.nope", "inputs": {}}, registry)


async def test_data_source_choices(registry) -> None:
    assert await fetch_choices("acme.colors", {}, registry=registry) == [{"label": "Red", "value": "red"}]


def test_sync_facade_runs_on_one_shared_loop(registry) -> None:
    first = invoke_sync("acme.echo", {"message": "a"}, registry=registry)
    second = invoke_sync("acme.echo", {"message": "b"}, registry=registry)
    assert (first["message"], second["message"]) == ("a", "b")


class _Refusing(WebhookTrigger):
    """Refuses every request by raising, as a third-party trigger may."""

    key = "acme.refusing"
    label = "Refusing"
    needs_connection = False

    async def handle(self, ctx: Context, inputs: Any, request: WebhookRequest) -> WebhookResponse:
        raise WebhookRejected("The webhook key is missing.", status=401)


async def test_a_refusal_raised_by_a_trigger_is_an_answer() -> None:
    """handle_webhook is the one place that turns WebhookRejected into a response: hosts never see it."""
    pm = make_plugin_manager(entry_points=False)
    pm.register(SimpleNamespace(register_triggers=hookimpl(lambda register: register(_Refusing))), name="refusing")
    request = WebhookRequest(method="POST", headers={}, query={}, body=b"{}")
    answer = await handle_webhook("acme.refusing", {}, request, registry=build_registry(pm))
    assert (answer.status, answer.body, answer.events) == (401, {"error": "The webhook key is missing."}, [])
