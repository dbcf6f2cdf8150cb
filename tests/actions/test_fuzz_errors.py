"""Fuzzing every action's published input schema: whatever the inputs, valid or not, an action
either answers or raises a ``d365_components.errors`` type; nothing else escapes (issue 13).

Valid inputs come from hypothesis-jsonschema over the published schema; invalid ones are the
schema's own fields (and strangers) holding any JSON, with the strings that broke actions before
(control characters, a trailing newline, lone surrogates). Every call goes to a private emulator,
so what a fuzzed create or delete does stays out of the other tests. Bounded: a few examples per
action, derandomized, so the test stays well under a minute.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from d365_components.definitions import Connection
from d365_components.emulator.server import Emulator
from d365_components.errors import D365Error
from d365_components.registry import get_registry
from d365_components.runtime import invoke_sync, open_connection, run_sync

ACTIONS = sorted(get_registry().actions)
#: examples per action; raise it (D365_FUZZ_EXAMPLES=200, D365_FUZZ_RANDOM=1) for a longer hunt
EXAMPLES = int(os.environ.get("D365_FUZZ_EXAMPLES", "8"))
#: inputs that reach the file system: never fuzzed (a fuzzed journal file would be written anywhere)
_LOCAL_FILES = ("journalFile",)

_ODD_TEXT = st.sampled_from(["", "\n", "x\n", "\u0006x", "\ud800", "a\r\nb: c", "' or 1 eq 1", "%00", "../..", "(", "{", "😀",
                             "https://elsewhere.example/api/data/v9.2/accounts", "00000000-0000-0000-0000-000000000000"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12) | _ODD_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6) | _ODD_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _invalid(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    names = sorted(schema.get("properties", {})) or ["x"]
    return st.dictionaries(st.sampled_from(names) | _ODD_TEXT, _JSON, max_size=5)


def _safe(inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return {k: v for k, v in inputs.items() if k not in _LOCAL_FILES}
    return inputs


@pytest.fixture(scope="module")
def fuzz_connection() -> Iterator[Connection]:
    with Emulator(seed="demo") as emulator:
        connection = open_connection({"key": "dynamics365.oauth2_client_credentials",
                                      "inputs": emulator.connection_inputs(retryBudgetSeconds=2)})
        yield connection
        run_sync(connection.aclose())


@pytest.mark.parametrize("key", ACTIONS)
def test_only_library_errors_escape_an_action(key: str, fuzz_connection: Connection) -> None:
    schema = get_registry().get(key, "actions").input_schema()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.environ.get("D365_FUZZ_RANDOM"),
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(from_schema(schema), _invalid(schema)))
    def call(inputs: Any) -> None:
        try:
            invoke_sync(key, _safe(inputs), fuzz_connection)
        except D365Error:
            pass  # a library error is an answer; anything else fails the test with its traceback

    call()
