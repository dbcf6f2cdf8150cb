"""A real redis-server on a free loopback port (no persistence), and an emulator with several app users."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from d365_components.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server; .ci/run does it)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


@pytest.fixture(scope="module")
def org() -> Iterator[Emulator]:
    """An org with two app users (two client ids, two budgets) and the demo alternate keys (accountnumber)."""
    with Emulator(app_users=2, seed="demo") as emulator:
        yield emulator


@pytest.fixture
def connection_spec(org: Emulator) -> Callable[..., dict[str, object]]:
    """The connection config of app user ``user`` of ``org`` (extra inputs merged)."""

    def spec(user: int = 0, **inputs: object) -> dict[str, object]:
        client_id, secret = org.app_user_credentials[user]
        return {"key": "dynamics365.oauth2_client_credentials",
                "inputs": org.connection_inputs(clientId=client_id, clientSecret=secret, **inputs)}

    return spec


@pytest.fixture
def workers(clean_redis: str) -> Iterator[Callable[[int], list[subprocess.Popen[bytes]]]]:
    """Start real Celery worker processes (solo pools) on the test Redis; all stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "D365_SCALE_REDIS_URL": clean_redis, "D365_SCALE_VISIBILITY_TIMEOUT": "6"}

    def start(count: int) -> list[subprocess.Popen[bytes]]:
        batch = [
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "d365_components.scale", "worker", "--pool=solo",
                 "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", f"test-{len(started) + n}-{os.getpid()}@%h"],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
            for n in range(count)
        ]
        started.extend(batch)
        return batch

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
