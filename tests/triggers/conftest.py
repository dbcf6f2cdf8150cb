"""Fixtures of the trigger tests: a webhook host (our ASGI app on uvicorn) on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
