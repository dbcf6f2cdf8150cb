"""Bulk loads fanned out on real Celery worker processes over two app users; a worker killed
mid-run (kill -9) loses and doubles nothing, and the fleet asks one token per app user."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from d365_components import scale


def _accounts(emulator: Any, prefix: str) -> list[str]:
    """Every accountnumber starting with ``prefix`` (all pages), read over HTTPS."""
    token = emulator.get_token()
    numbers: list[str] = []
    url: str | None = (f"{emulator.api_url}/accounts?$select=accountnumber"
                       f"&$filter=startswith(accountnumber,'{prefix}')")
    with httpx.Client(verify=emulator.ca_bundle, headers={"Authorization": f"Bearer {token}",
                                                          "Prefer": "odata.maxpagesize=5000"}) as client:
        while url:
            page = client.get(url).raise_for_status().json()
            numbers += [row["accountnumber"] for row in page["value"]]
            url = page.get("@odata.nextLink")
    return numbers


def _rows(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"name": f"Fan {i}", "accountnumber": f"{prefix}{i:05d}"} for i in range(count)]


def _use(url: str) -> None:
    scale.app.conf.update(broker_url=url, result_backend=url)


def test_a_killed_worker_loses_and_doubles_nothing(org, connection_spec, clean_redis, workers) -> None:
    _use(clean_redis)
    first = workers(2)
    pool = [connection_spec(0), connection_spec(1)]
    rows = _rows("K-", 3000)
    killed = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 300 and not killed.is_set():  # mid-run: the other chunks are queued or in flight
            os.kill(first[0].pid, signal.SIGKILL)
            killed.set()
            workers(1)  # a supervisor would start a new one; the lost chunk comes back to the fleet

    summary = scale.run_bulk(pool, rows, table="accounts", action="create", chunk_size=100, request_size=50,
                             progress=progress, timeout=90, url=clean_redis)
    assert killed.is_set()
    assert first[0].wait(5) == -signal.SIGKILL
    tokens = [org.identity.issued_to[client_id] for client_id, _ in org.app_user_credentials]
    numbers = _accounts(org, "K-")
    assert len(numbers) == 3000, "a row was lost or doubled"
    assert collections.Counter(numbers).most_common(1)[0][1] == 1
    assert summary["written"] == 3000 and summary["failed"] == 0 and summary["notWritten"] == 0, summary["errors"]
    assert summary["chunksDone"] == 30
    # three worker processes, two app users: one token request per app user for the whole fleet
    assert tokens == [1, 1]


def test_upsert_by_key_through_the_cli(org, connection_spec, clean_redis, tmp_path: Path) -> None:
    files = []
    for user in (0, 1):
        path = tmp_path / f"app{user}.json"
        path.write_text(json.dumps(connection_spec(user)))
        files.append(f"@{path}")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(row) + "\n" for row in _rows("U-", 400)))
    command = [sys.executable, "-m", "d365_components.cli", "bulk", "--table", "accounts", "--action", "upsert",
               "--key", "accountnumber", "--rows", f"@{rows}", "--workers", "2", "--redis", clean_redis,
               "--chunk-size", "50", "--timeout", "60", *files]
    for _ in range(2):  # twice: the second run updates the same 400 rows
        done = subprocess.run(command, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stdout[-3000:]
        summary = json.loads(done.stdout)
        assert summary["written"] == 400 and summary["chunks"] == 8
    assert sorted(_accounts(org, "U-")) == [f"U-{i:05d}" for i in range(400)]
