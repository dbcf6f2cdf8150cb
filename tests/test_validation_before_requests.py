"""For every registered action: bad inputs report every field at once, and nothing is sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from d365_components.errors import InputValidationError
from d365_components.registry import get_registry
from d365_components.runtime import invoke, open_connection

ACTIONS = sorted(get_registry().actions)


class _Refuse(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        raise AssertionError(f"no request expected, got {request.method} {request.url}")


def _wrong_value(prop: dict[str, Any]) -> Any:
    """A value of the wrong type for this field, or None when every type is accepted."""
    types = prop.get("type")
    types = set(types if isinstance(types, list) else [types] if types else [])
    if not types:
        return None
    if types & {"integer", "number", "boolean"} and "string" not in types:
        return "not a number"
    if types & {"object", "array"} and "string" not in types:
        return 42
    if types == {"string"} or types == {"string", "null"}:
        return 42
    return None


@pytest.mark.parametrize("key", ACTIONS)
async def test_every_bad_field_is_named_and_no_request_is_sent(key: str) -> None:
    schema = get_registry().actions[key].input_schema()
    raw: dict[str, Any] = {"noSuchInput": 1}
    expected = {"/noSuchInput"}
    for name, prop in schema["properties"].items():
        wrong = _wrong_value(prop)
        if wrong is not None:
            raw[name] = wrong
            expected.add(f"/{name}")
    expected |= {f"/{name}" for name in schema.get("required", []) if name not in raw}

    connection = open_connection(
        {
            "key": "dynamics365.oauth2_client_credentials",
            "inputs": {
                "webApiUrl": "https://127.0.0.1:9",
                "allowCustomHost": True,
                "tenantId": "00000000-0000-4000-8000-00000000e1e1",
                "clientId": "00000000-0000-4000-8000-00000000c11e",
                "clientSecret": "never-used-secret",
            },
        }
    )
    transport = _Refuse()
    connection.open_client(transport=transport)
    try:
        with pytest.raises(InputValidationError) as info:
            await invoke(key, raw, connection)
    finally:
        await connection.aclose()
    assert {e.pointer for e in info.value.errors} == expected
    assert transport.sent == []
