"""Benchmark of ``d365 extract`` against the emulator: rows/s and peak memory.

Extracts N contacts (default 1,000,000; every row in one modifiedon second, the keyset's worst
case; a contact of the fresh org has 192 columns, ~4.8 KB of JSON) as Singer messages to
/dev/null, and compares with the least a client doing the same job can do:

* **bare**: an httpx loop that sends the extract's own query (same ``$filter``/``$orderby``, all
  columns, ``odata.maxpagesize=2000`` for both, same TLS and HTTP/1.1 settings), follows
  ``@odata.nextLink``, decodes each page with :mod:`json` and writes each row to /dev/null as a
  JSON line (stdlib encoder, compact), in one write per page;
* **extract-json**: ``extract()`` with the core install's :mod:`json` (orjson switched off);
* **extract-orjson**: ``extract()`` with the optional orjson (``[fast]`` extra), if installed.

Prints, as ratios over bare:

1. rows/s (goal >= 0.9);
2. peak RSS, read from the OS (``ru_maxrss`` of the child process that ran it, via ``os.wait4``),
   goal < 150 MB for the extract;
3. client CPU per row (user + system time of that child process).

Every trial gets a fresh emulator (its own process, rows inserted straight into its SQLite store)
and a fresh client process; kinds alternate (A B C, C B A, ...); medians with min-max. The extract
runs with a rate limit high enough not to bind (the default 15 requests/s would cap it at 75,000
rows/s by design). On a shared machine the emulator and the client compete for the same cores:
client CPU saved is server CPU gained, and the ratios move with the neighbours' load.

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

#: rows a page, for both: about what the extract picks by default for a contact (400,000 values a
#: page over 193 columns: 2,072 rows); 5,000-row pages of contacts are 24 MB of JSON each
PAGE = 2000


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
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
    seen = 0
    async with httpx.AsyncClient(verify=spec["inputs"]["caBundle"], timeout=120, trust_env=False,
                                 http1=True, http2=False) as client:
        url: str | None = f"{spec['api_url']}/contacts"
        params: dict[str, str] | None = {
            "$filter": "modifiedon ge 2000-01-01T00:00:00Z and modifiedon lt 2100-01-01T00:00:00Z",
            "$orderby": "modifiedon asc,contactid asc"}
        with open(os.devnull, "w", encoding="utf-8") as out:
            while url:
                response = await client.get(url, params=params, headers=headers)
                response.raise_for_status()
                body = json.loads(response.content)
                response.stream = httpx.ByteStream(b"")  # freed on last use, as our client does
                del response
                rows = body["value"]
                out.write("".join([dumps(row) + "\n" for row in rows]))
                seen += len(rows)
                url, params = body.get("@odata.nextLink"), None
                del body, rows
    return seen


async def ours(spec: dict[str, Any], engine: str) -> int:
    from d365_components import fast_json
    from d365_components.connections.extract import extract, parse_streams
    from d365_components.extract_output import SingerWriter
    from d365_components.runtime import open_connection

    if engine == "json":
        fast_json.use_standard_library()
    assert fast_json.ENGINE == engine, f"{engine} is not installed"
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
    rows = asyncio.run(bare(spec) if kind == "bare" else ours(spec, kind.split("-")[1]))
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


def kinds() -> list[str]:
    try:
        import orjson  # noqa: F401
    except ImportError:
        return ["bare", "extract-json"]
    return ["bare", "extract-json", "extract-orjson"]


def one(kind: str, rows: int, folder: str) -> tuple[float, float, float, int]:
    """One trial of ``kind`` against a fresh emulator holding ``rows`` contacts."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(child, rows), daemon=True)
    process.start()
    try:
        spec = parent.recv()
        spec_path = os.path.join(folder, "spec.json")
        with open(spec_path, "w", encoding="utf-8") as file:
            json.dump(spec, file)
        return run_trial(kind, spec_path)
    finally:
        parent.send("stop")
        process.join(30)
        if process.is_alive():
            process.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="contacts to extract")
    parser.add_argument("--trials", type=int, default=3, help="trials of each")
    parser.add_argument("--trial", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        trial(*args.trial)
        return
    names = kinds()
    rates: dict[str, list[float]] = {kind: [] for kind in names}
    memory: dict[str, list[float]] = {kind: [] for kind in names}
    cpu: dict[str, list[float]] = {kind: [] for kind in names}
    print(f"{args.rows:,} contacts, a fresh emulator per trial; kinds: {', '.join(names)}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for number in range(args.trials):
            for kind in (names if number % 2 == 0 else names[::-1]):
                rate, rss, seconds, rows = one(kind, args.rows, folder)
                if rows != args.rows:
                    raise SystemExit(f"the {kind} trial read {rows:,} rows, not {args.rows:,}")
                rates[kind].append(rate)
                memory[kind].append(rss)
                cpu[kind].append(seconds * 1e6 / rows)
                print(f"  trial {number + 1} {kind:14}: {rate:,.0f} rows/s, peak RSS {rss:,.0f} MB, "
                      f"client CPU {seconds:.1f} s", flush=True)
    base_rate, base_rss, base_cpu = (statistics.median(v["bare"]) for v in (rates, memory, cpu))
    print(f"bare = httpx nextLink loop, same query and client settings, json.loads per page, "
          f"each row written to /dev/null as a JSON line ({summary(rates['bare'])} rows/s, "
          f"peak RSS {summary(memory['bare'])} MB, client CPU {summary(cpu['bare'])} µs/row)")
    for kind in names[1:]:
        speed = statistics.median(rates[kind]) / base_rate
        paired = [ours / bare for ours, bare in zip(rates[kind], rates["bare"], strict=True)]
        peak = statistics.median(memory[kind])
        print(f"{kind}:")
        print(f"  1. rows/s {summary(rates[kind])} -> ratio {speed:.2f} over bare; per trial pair "
              f"{statistics.median(paired):.2f} (min {min(paired):.2f}, max {max(paired):.2f}) (goal >= 0.90)")
        print(f"  2. peak RSS {summary(memory[kind])} MB -> ratio {peak / base_rss:.2f} over bare; "
              f"{peak:.0f} MB of the 150 MB goal ({peak / 150:.2f})")
        print(f"  3. client CPU {summary(cpu[kind])} µs/row -> ratio {statistics.median(cpu[kind]) / base_cpu:.2f} over bare")


if __name__ == "__main__":
    main()
