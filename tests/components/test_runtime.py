"""The runtime: validation before anything runs, JSON output, the sync facade."""

from __future__ import annotations

import d365_test_acme
import pytest

from d365_components.errors import InputValidationError, UnknownKeyError
from d365_components.registry import build_registry, make_plugin_manager
from d365_components.runtime import fetch_choices, invoke, invoke_sync, open_connection


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
