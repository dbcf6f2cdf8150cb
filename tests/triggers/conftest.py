"""Fixtures of the trigger tests: a webhook host (our ASGI app on uvicorn) on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from d365_components.emulator.extensions import EmulatorFeatures
from d365_components.emulator.server import Emulator
from d365_components.webhook_host import HostedTrigger, create_trigger_app

CONNECTION = "dynamics365.oauth2_client_credentials"


@pytest.fixture(scope="session")
def trigger_emulator() -> Iterator[Emulator]:
    """An emulated org with change tracking and webhook delivery turned on (demo seed)."""
    with Emulator(seed="demo", features=EmulatorFeatures(limits=None)) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def untracked_table(trigger_emulator: Emulator) -> tuple[str, str, str]:
    """(entity set, id column, name column) of a new table without change tracking, created once:
    a fresh org's standard tables all track changes, the modifiedon cursor needs a table that does not."""
    label = {"LocalizedLabels": [{"Label": "Poll Note", "LanguageCode": 1033}]}
    body = {"@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata", "SchemaName": "new_PollNote", "DisplayName": label,
            "DisplayCollectionName": label, "OwnershipType": "UserOwned", "HasActivities": False, "HasNotes": False,
            "ChangeTrackingEnabled": False,
            "Attributes": [{"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "AttributeType": "String",
                            "SchemaName": "new_Subject", "MaxLength": 200, "IsPrimaryName": True, "DisplayName": label}]}
    response = httpx.post(trigger_emulator.api_url + "/EntityDefinitions", json=body, verify=trigger_emulator.ssl_context,
                          headers={"Authorization": f"Bearer {trigger_emulator.get_token()}"}, timeout=30)
    assert response.status_code == 204, response.text
    return "new_pollnotes", "new_pollnoteid", "new_subject"


@pytest.fixture
def connection(trigger_emulator: Emulator) -> dict:
    """Connection config of our client-credentials connection to `trigger_emulator`."""
    return {"key": CONNECTION, "inputs": trigger_emulator.connection_inputs()}


@contextmanager
def running_app(app) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the trigger host did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def trigger_host() -> Iterator[Callable[[list[HostedTrigger]], str]]:
    """``trigger_host([HostedTrigger(...)])`` serves the triggers until the test ends; returns the base URL."""
    stack: list = []

    def start(triggers: list[HostedTrigger]) -> str:
        context = running_app(create_trigger_app(triggers))
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)
