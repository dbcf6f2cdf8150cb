"""Test your own flows offline: a pytest plugin (loaded automatically once installed) and helpers.

Fixtures:

- ``dataverse_emulator`` — a running embedded Dataverse (HTTPS, demo data), one per session;
- ``dataverse_connection`` — the connection config for it, ready for ``invoke``;
- ``run_action`` — ``run_action("dynamics365.create_entity", {...})`` runs an action on it.

Outside pytest, :func:`emulated_org` is the same thing as a context manager::

    with emulated_org() as org:
        invoke_sync("dynamics365.query_entities", {"entityType": "accounts"}, org.connection)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from d365_components.emulator.server import Emulator

__all__ = ["EmulatedOrg", "emulated_org"]


@dataclass(frozen=True)
class EmulatedOrg:
    """A running emulator and the connection config that reaches it."""

    emulator: Emulator
    connection: dict[str, Any]


@contextmanager
def emulated_org(**emulator_options: Any) -> Iterator[EmulatedOrg]:
    """Start an emulator (``Emulator`` options: seed, db, token_lifetime, faults...) and stop it after."""
    from d365_components.emulator.server import Emulator  # imported late: pytest loads this module early

    with Emulator(**emulator_options) as emulator:
        connection = {"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()}
        yield EmulatedOrg(emulator, connection)


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
    from d365_components.runtime import invoke_sync, open_connection, run_sync

    connection = open_connection(dataverse_connection)

    def run(key: str, inputs: dict[str, Any] | None = None) -> Any:
        return invoke_sync(key, inputs or {}, connection)

    yield run
    if connection is not None:
        run_sync(connection.aclose())
