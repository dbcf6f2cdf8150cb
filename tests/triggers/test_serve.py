"""``serve`` as ``d365 serve-trigger`` runs it: a child process that registers the webhook, prints
each event as one JSON line, and removes the registration on Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import httpx

from d365_components.runtime import open_connection, parse_inputs
from d365_components.triggers import registration
from d365_components.triggers.webhook import DataverseWebhook, registration_for
from tests.triggers.test_host import ODD_NAME, odd_body

SERVE = (
    "import json, sys\n"
    "from d365_components.webhook_host import serve\n"
    "serve('dynamics365.webhook', json.loads(sys.argv[1]), json.loads(sys.argv[2]), port=int(sys.argv[3]), deploy=True)\n"
)


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def _next_line(lines: queue.Queue, contains: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if contains in line:
            return line
    raise AssertionError(f"no line with {contains!r} within {timeout} s")


async def test_serve_deploys_prints_events_and_removes_on_ctrl_c(trigger_emulator, connection):
    inputs = {"entityType": "lead", "webhookKey": uuid.uuid4().hex, "messages": ["Create"]}
    port = 0  # the real port is only known once bound: it must be the one registered
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE, json.dumps(inputs), json.dumps(connection), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = queue.Queue(), queue.Queue()
    for stream, into in ((child.stdout, out), (child.stderr, err)):
        threading.Thread(target=_lines, args=(stream, into), daemon=True).start()
    conn = open_connection(connection)
    client = conn.open_client()
    try:
        registered = _next_line(err, "Registered")
        port = int(registered.rsplit(":", 1)[1].strip("/"))
        assert port != 0 and f"http://127.0.0.1:{port}/" in _next_line(err, "Listening")
        made = await client.create("leads", {"subject": "From serve", "lastname": "Serve"})
        await trigger_emulator.app.state.webhooks.drain()
        event = json.loads(_next_line(out, made["id"]))
        assert event["message"] == "Create" and event["attributes"]["subject"] == "From serve"

        child.send_signal(signal.SIGINT)
        assert child.wait(20) == 0
        assert "Registration removed" in _next_line(err, "removed")
        wanted = registration_for(parse_inputs(DataverseWebhook, inputs), f"http://127.0.0.1:{port}/")
        assert (await registration.survey(client, wanted.name)).endpoints == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        await conn.aclose()


def test_a_refused_deploy_is_one_error_and_nothing_is_served(trigger_emulator, connection):
    result = subprocess.run(
        [sys.executable, "-c", "from d365_components.cli import main; main()", "serve-trigger", "dynamics365.webhook",
         "--input", '{"entityType": "nosuchtable"}', "--connection", json.dumps(connection), "--deploy", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("d365: error:") and "nosuchtable" in result.stderr


def test_serve_prints_odd_text_as_json_and_a_client_leaving_mid_body_is_quiet():
    """A lone surrogate in a delivery is printed escaped (never a 503 that Dataverse retries
    forever); a caller that disconnects mid-body leaves no traceback on stderr."""
    script = ("import sys\nfrom d365_components.webhook_host import serve\n"
              "serve('dynamics365.webhook', {'entityType': 'account'}, None, port=0)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out, err = queue.Queue(), queue.Queue()
    for stream, into in ((child.stdout, out), (child.stderr, err)):
        threading.Thread(target=_lines, args=(stream, into), daemon=True).start()
    try:
        port = int(_next_line(err, "Listening").split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n{")
            time.sleep(0.2)
        answer = httpx.post(f"http://127.0.0.1:{port}/", content=odd_body(), timeout=10,
                            headers={"Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        event = json.loads(_next_line(out, "account"))
        assert event["attributes"]["name"] == ODD_NAME
        child.send_signal(signal.SIGINT)
        assert child.wait(20) == 0
        stderr = "\n".join(err.get_nowait() for _ in range(err.qsize()))
        assert "Traceback" not in stderr and "ClientDisconnect" not in stderr, stderr
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
