"""Bulk Create fanned out on Celery workers, with the emulator's per-user service-protection
limits switched on (and lowered, so a run is short): one app user vs four, one worker vs four.

Prints per scenario: rows/s, the share of the allowed request rate used (the app users' window
budget over the run: ``users * requests * (1 + seconds / window)``, the first window being a
burst), 429s answered, failures, lost and duplicated rows (counted in the org), token requests
per app user, and the CPU the bench process (the emulator's thread) used, which caps the figures
when it nears one core. Needs ``redis-server`` on the PATH (it starts its own on loopback).

    .venv/bin/python bench/scale_bench.py [--rows-per-user 600] [--requests 20] [--window 5]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import redis

from d365_components import scale
from d365_components.cli_bulk import start_workers
from d365_components.emulator import Emulator
from d365_components.emulator.extensions import EmulatorFeatures
from d365_components.emulator.limits.protection import Limits


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accounts(emulator: Emulator, prefix: str) -> list[str]:
    numbers: list[str] = []
    url: str | None = f"{emulator.api_url}/accounts?$select=accountnumber&$filter=startswith(accountnumber,'{prefix}')"
    headers = {"Authorization": f"Bearer {emulator.get_token()}", "Prefer": "odata.maxpagesize=5000"}
    with httpx.Client(verify=emulator.ssl_context, headers=headers, timeout=60) as client:
        while url:
            page = client.get(url).raise_for_status().json()
            numbers += [row["accountnumber"] for row in page["value"]]
            url = page.get("@odata.nextLink")
    return numbers


def _wait_for_workers(count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answers = scale.app.control.ping(timeout=0.5) or []
        if len(answers) >= count:
            return
    raise RuntimeError(f"{count} workers did not start")


def scenario(emulator: Emulator, url: str, users: int, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"S{users}w{workers}-"
    rows = [{"name": f"Scale {i}", "accountnumber": f"{prefix}{i:06d}"} for i in range(args.rows_per_user * users)]
    shared = f"{url}?requests={args.requests}&window={args.window}&concurrent={args.concurrent}"
    pool = []
    for client_id, secret in emulator.app_user_credentials[:users]:
        pool.append({"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs(
            clientId=client_id, clientSecret=secret, sharedStateUrl=shared)})
    redis.Redis.from_url(url).flushdb()
    emulator.app.state.protection.reset()
    tokens_before = {c: emulator.identity.issued_to[c] for c, _ in emulator.app_user_credentials[:users]}
    processes = start_workers(workers, url)
    try:
        _wait_for_workers(workers)
        cpu, started = time.process_time(), time.monotonic()
        summary = scale.run_bulk(pool, rows, table="accounts", action="create", chunk_size=args.chunk_size,
                                 request_size=args.request_size, concurrency=args.task_concurrency, url=url,
                                 timeout=600)
        seconds = time.monotonic() - started
        cpu = time.process_time() - cpu
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
    tokens = [emulator.identity.issued_to[c] - tokens_before[c] for c in tokens_before]
    numbers = _accounts(emulator, prefix)  # (its own token, after the count)
    counts = collections.Counter(numbers)
    requests = -(-len(rows) // args.request_size)
    allowed = users * args.requests * (1 + seconds / args.window)
    return {
        "users": users, "workers": workers, "rows": len(rows), "seconds": seconds,
        "rows_per_s": summary["written"] / seconds, "share": requests / allowed,
        "retries": summary["retries"], "failures": summary["failed"] + summary["notWritten"],
        "lost": len(rows) - len(counts), "duplicated": sum(n - 1 for n in counts.values()),
        "tokens": tokens,
        "cpu": cpu / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-user", type=int, default=600)
    parser.add_argument("--requests", type=int, default=20, help="the emulator's requests per window per user")
    parser.add_argument("--window", type=float, default=5.0, help="the emulator's window (seconds)")
    parser.add_argument("--concurrent", type=int, default=8, help="the emulator's concurrent requests per user")
    parser.add_argument("--chunk-size", type=int, default=50, help="rows per Celery task")
    parser.add_argument("--request-size", type=int, default=10, help="rows per CreateMultiple request")
    parser.add_argument("--task-concurrency", type=int, default=2, help="requests in flight per task")
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="scale-bench-")
    redis_process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["D365_SCALE_REDIS_URL"] = url
    scale.app.conf.update(broker_url=url, result_backend=url)
    limits = Limits(requests=args.requests, window=args.window, concurrent=args.concurrent, execution_time=10_000)
    try:
        time.sleep(0.3)
        with Emulator(app_users=4, seed="demo", features=EmulatorFeatures(limits=limits)) as emulator:
            print(f"emulator limits per app user: {args.requests} requests / {args.window:g} s, "
                  f"{args.concurrent} concurrent; {args.request_size} rows per request")
            print(f"{'users':>5} {'workers':>7} {'rows':>6} {'s':>6} {'rows/s':>8} {'share':>6} {'retries':>7} "
                  f"{'failed':>6} {'lost':>5} {'dup':>4} {'tokens/user':>12} {'cpu':>5}")
            results = []
            for users, workers in ((1, 1), (1, 4), (4, 1), (4, 4)):
                r = scenario(emulator, url, users, workers, args)
                results.append(r)
                print(f"{r['users']:>5} {r['workers']:>7} {r['rows']:>6} {r['seconds']:>6.1f} {r['rows_per_s']:>8.1f} "
                      f"{r['share']:>6.0%} {r['retries']:>7} {r['failures']:>6} {r['lost']:>5} {r['duplicated']:>4} "
                      f"{','.join(map(str, r['tokens'])):>12} {r['cpu']:>5.0%}", flush=True)
            one = next(r for r in results if r["users"] == 1 and r["workers"] == 4)
            four = next(r for r in results if r["users"] == 4 and r["workers"] == 4)
            print(f"four app users vs one (4 workers each): {four['rows_per_s'] / one['rows_per_s']:.2f}x")
    finally:
        redis_process.terminate()
        redis_process.wait(10)


if __name__ == "__main__":
    main()
