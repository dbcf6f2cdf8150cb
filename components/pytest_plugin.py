"""The pytest plugin users get once the library is installed (entry point ``pytest11``).

Fixtures:

- ``dataverse_emulator`` — a running embedded Dataverse (HTTPS, demo data), one per session;
- ``dataverse_connection`` — the connection config for it, ready for ``invoke``;
- ``run_action`` — ``run_action("dynamics365.create_entity", {...})`` runs an action on it.

They need the ``emulator`` extra only when a test uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from d365_components.runtime import invoke_sync, open_connection, run_sync
from d365_components.testing import EmulatedOrg, emulated_org

__all__ = ["dataverse_connection", "dataverse_emulator", "run_action"]


@pytest.fixture(scope="session")
def dataverse_emulator() -> Iterator[EmulatedOrg]:
    """An emulated Dataverse org for the whole test session."""
    with emulated_org(seed="demo") as org:
        yield org


@pytest.fixture(scope="session")
def dataverse_connection(dataverse_emulator: EmulatedOrg) -> dict[str, Any]:
    """Connection config for ``dataverse_emulator``: pass it to ``invoke`` as the connection."""
    return dataverse_emulator.connection


@pytest.fixture(scope="session")
def run_action(dataverse_connection: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """``run_action(key, inputs)``: run an action against the emulator, synchronously."""
    connection = open_connection(dataverse_connection)

    def run(key: str, inputs: dict[str, Any] | None = None) -> Any:
        return invoke_sync(key, inputs or {}, connection)

    yield run
    if connection is not None:
        run_sync(connection.aclose())
