"""Benchmark of ``d365 extract`` against the emulator: rows/s and peak memory.

Extracts N contacts (default 1,000,000; every row in one modifiedon second, the keyset's worst
case) as Singer messages to /dev/null, and compares with a bare httpx loop that follows
``@odata.nextLink`` and parses each page (the least a client can do). Prints, as ratios:

1. rows/s of the extract over rows/s of the bare loop (goal >= 0.9);
2. peak RSS of each, read from the OS (``ru_maxrss`` of the child process that ran it, via
   ``os.wait4``), goal < 150 MB for the extract.

Trials alternate (bare, extract, extract, bare, ...); medians with min-max. The emulator runs in
its own process, rows inserted straight into its SQLite store. The extract runs with a rate limit
high enough not to bind (the default 15 requests/s would cap it at 75,000 rows/s by design).

    .venv/bin/python bench/extract_bench.py [--rows 1000000] [--trials 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import httpx

PAGE = 5000


# -- the emulator, in a child process --------------------------------------------------------


def bulk_insert(emulator: Any, table: str, rows: int) -> None:
    """``rows`` copies of one template row, with their own ids and names, in one SQL statement."""
    from d365_components.emulator import defaults

    store = emulator.app.state.store
    template = store.insert(table, {"lastname": "bench", "jobtitle": "bench"}, user=defaults.APP_USER_ID)
    primary = store.schema.tables[table].primary_id
    columns = [c for c in store.columns_of(table) if template.get(c) is not None]
    expressions, params = [], []
    for column in columns:
        if column == primary:
            expressions.append("printf('%08x-0000-4000-8000-%012x', i, i)")
        elif column in ("lastname", "fullname"):
            expressions.append("'bench-' || i")
        elif column == "versionnumber":
            expressions.append("? + i")
            params.append(template[column])
        else:
            expressions.append("?")
            params.append(template[column])
    names = ", ".join(f'"{c}"' for c in columns)
    sql = (
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {int(rows) - 1}) "
        f'INSERT INTO "{table}" ({names}) SELECT {", ".join(expressions)} FROM n'
    )
    with store.lock:
        store.conn.execute(sql, params)


def serve(pipe: Any, rows: int) -> None:
    from d365_components.emulator.server import Emulator

    with Emulator(seed=None) as emulator:
        protection = getattr(emulator.app.state, "protection", None)
        if protection is not None:  # measure the extract, not the 6,000-requests-per-5-minutes limit
            protection.configure(requests=10**9, execution_time=10**9)
        started = time.perf_counter()
        bulk_insert(emulator, "contact", rows)
        inserted = time.perf_counter() - started
        time.sleep(1.1)  # the rows' second is over: the extract's cutoff includes them
        pipe.send({"inputs": emulator.connection_inputs(), "token": emulator.get_token(),
                   "api_url": emulator.api_url, "insert_seconds": inserted})
        pipe.recv()


# -- one trial, in a child process --------------------------------------------------------------


async def bare(spec: dict[str, Any]) -> int:
    headers = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0",
               "Authorization": f"Bearer {spec['token']}", "Prefer": f"odata.maxpagesize={PAGE}"}
    seen = 0
    async with httpx.AsyncClient(verify=spec["inputs"]["caBundle"], timeout=120, trust_env=False) as client:
        url: str | None = f"{spec['api_url']}/contacts"
        if os.environ.get("BENCH_FILTERED"):
            url += "?$filter=modifiedon%20ge%202000-01-01T00:00:00Z%20and%20modifiedon%20lt%202100-01-01T00:00:00Z&$orderby=modifiedon%20asc,contactid%20asc"
        while url:
            response = await client.get(url, headers=headers)
            response.raise_for_status()
            body = response.json()
            seen += len(body["value"])
            url = body.get("@odata.nextLink")
    return seen


async def ours(spec: dict[str, Any]) -> int:
    from d365_components.connections.extract import extract, parse_streams
    from d365_components.extract_output import SingerWriter
    from d365_components.runtime import open_connection

    connection = open_connection({"key": "dynamics365.oauth2_client_credentials", "inputs": spec["inputs"]})
    assert connection is not None
    try:
        with open(os.devnull, "w", encoding="utf-8") as out:
            summary = await extract(connection.open_client(), SingerWriter(out),
                                    streams=parse_streams("contacts", "incremental"),
                                    anchor=datetime(2000, 1, 1, tzinfo=UTC), rate_limit=10_000, page_size=PAGE)
    finally:
        await connection.aclose()
    return summary.counts["contacts"]


def trial(kind: str, spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as file:
        spec = json.load(file)
    started = time.perf_counter()
    rows = asyncio.run(bare(spec) if kind == "bare" else ours(spec))
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))


def run_trial(kind: str, spec_path: str) -> tuple[float, float, float, int]:
    """rows/s, peak RSS (MB), CPU seconds and rows of one trial in a fresh process."""
    child = subprocess.Popen([sys.executable, __file__, "--trial", kind, spec_path], stdout=subprocess.PIPE)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the {kind} trial failed ({child.returncode})")
    result = json.loads(output)
    cpu = usage.ru_utime + usage.ru_stime
    return result["rows"] / result["seconds"], usage.ru_maxrss / 1024, cpu, result["rows"]


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} (min {min(values):,.0f}, max {max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="contacts to extract")
    parser.add_argument("--trials", type=int, default=3, help="trials of each")
    parser.add_argument("--trial", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        trial(*args.trial)
        return
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(child, args.rows), daemon=True)
    process.start()
    with tempfile.TemporaryDirectory() as folder:
        try:
            spec = parent.recv()
            print(f"emulator ready; {args.rows:,} contacts inserted in {spec['insert_seconds']:.1f} s")
            spec_path = os.path.join(folder, "spec.json")
            with open(spec_path, "w", encoding="utf-8") as file:
                json.dump(spec, file)
            rates: dict[str, list[float]] = {"bare": [], "ours": []}
            memory: dict[str, list[float]] = {"bare": [], "ours": []}
            cpu: dict[str, list[float]] = {"bare": [], "ours": []}
            for number in range(args.trials):
                for kind in (("bare", "ours") if number % 2 == 0 else ("ours", "bare")):
                    rate, rss, seconds, rows = run_trial(kind, spec_path)
                    if rows != args.rows:
                        raise SystemExit(f"the {kind} trial read {rows:,} rows, not {args.rows:,}")
                    rates[kind].append(rate)
                    memory[kind].append(rss)
                    cpu[kind].append(seconds * 1e6 / rows)
                    print(f"  trial {number + 1} {kind:4}: {rate:,.0f} rows/s, peak RSS {rss:,.0f} MB, "
                          f"client CPU {seconds:.1f} s", flush=True)
        finally:
            parent.send("stop")
            process.join(15)
            if process.is_alive():
                process.terminate()
    speed = statistics.median(rates["ours"]) / statistics.median(rates["bare"])
    paired = [ours / bare for ours, bare in zip(rates["ours"], rates["bare"], strict=True)]
    print(f"1. rows/s: extract {summary(rates['ours'])}, bare httpx nextLink loop {summary(rates['bare'])} "
          f"-> ratio {speed:.2f}; per trial pair {statistics.median(paired):.2f} "
          f"(min {min(paired):.2f}, max {max(paired):.2f}) (goal >= 0.90)")
    peak = statistics.median(memory["ours"])
    print(f"2. peak RSS (MB): extract {summary(memory['ours'])}, bare loop {summary(memory['bare'])} "
          f"-> ratio {peak / statistics.median(memory['bare']):.2f}; extract {peak:.0f} MB of the 150 MB goal "
          f"({peak / 150:.2f})")
    print(f"3. client CPU per row (µs): extract {summary(cpu['ours'])}, bare loop {summary(cpu['bare'])} "
          f"-> ratio {statistics.median(cpu['ours']) / statistics.median(cpu['bare']):.2f} "
          "(the extract decodes each page and encodes every row again as a Singer message)")


if __name__ == "__main__":
    main()
