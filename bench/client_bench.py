"""Benchmark of the Web API client against the emulator on loopback (HTTPS).

Prints four numbers:

1. token requests per 10,000 calls (target: one per token lifetime, never one per call);
2. client wall time per request compared with a bare httpx request to the same URL
   (target: within 10%; printed as a ratio);
3. client CPU per invoke of Get Entity (validation, connection, action, output) against a bare GET
   of the same row with the same httpx client (goal, issue 16: <= 1.05x);
4. the growth of the process's peak RSS (operating system) while paging N rows (default
   1,000,000; target: flat, one page at a time).

The emulator runs in a child process so its work and memory are not counted against the client.
Rows are inserted straight into the emulator's SQLite store with one INSERT ... SELECT (the store
has no bulk-insert call; a per-row insert of a million rows would take minutes).

    .venv/bin/python bench/client_bench.py [--rows 1000000] [--calls 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import resource
import statistics
import time
from typing import Any

import httpx

TOKEN_LIFETIME = 10


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

    with Emulator(seed=None, token_lifetime=TOKEN_LIFETIME) as emulator:
        protection = getattr(emulator.app.state, "protection", None)
        if protection is not None:  # measure the client, not the 6,000-requests-per-5-minutes limit
            protection.configure(requests=10**9, execution_time=10**9)
        started = time.perf_counter()
        bulk_insert(emulator, "contact", rows)
        pipe.send({"inputs": emulator.connection_inputs(), "insert_seconds": time.perf_counter() - started})
        while True:
            command, *args = pipe.recv()
            if command == "issued":
                pipe.send(sum(emulator.identity.issued.values()))
            elif command == "lifetime":
                emulator.identity.token_lifetime = args[0]
                pipe.send(None)
            else:
                break


# -- the measurements ---------------------------------------------------------------------------


async def token_requests(inputs: dict, pipe: Any, calls: int) -> None:
    from d365_components.connections.oauth import ClientCredentialsConnection
    from d365_components.connections.tokens import refresh_margin

    connection = ClientCredentialsConnection(inputs)
    client = connection.open_client()
    pipe.send(("issued",))
    before = pipe.recv()
    started = time.perf_counter()
    gate = asyncio.Semaphore(50)

    async def call() -> None:
        async with gate:
            await client.whoami()

    await asyncio.gather(*(call() for _ in range(calls)))
    elapsed = time.perf_counter() - started
    pipe.send(("issued",))
    issued = pipe.recv() - before
    lifetimes = 1 + math.floor(elapsed / (TOKEN_LIFETIME - 1 - refresh_margin(TOKEN_LIFETIME)))
    await connection.aclose()
    print(f"1. token requests per {calls:,} calls: {issued} "
          f"(run {elapsed:.1f} s, token lifetime {TOKEN_LIFETIME} s -> at most {lifetimes} expected, one per lifetime; "
          f"{calls / elapsed:,.0f} calls/s at 50 in flight)")


async def overhead(inputs: dict, pipe: Any, rounds: int = 7, per_round: int = 400) -> None:
    from d365_components.connections.headers import ODATA_HEADERS
    from d365_components.connections.oauth import ClientCredentialsConnection

    pipe.send(("lifetime", 3600))
    pipe.recv()
    connection = ClientCredentialsConnection(inputs)
    client = connection.open_client()
    token = await connection.tokens.token()
    url = f"{client.api_url}/WhoAmI"
    headers = {**ODATA_HEADERS, "If-None-Match": "null", "Authorization": f"Bearer {token}"}
    bare = httpx.AsyncClient(verify=connection.ssl_context, trust_env=False)

    async def ours() -> None:
        await client.get_json("WhoAmI")

    async def plain() -> None:
        response = await bare.get(url, headers=headers)
        response.raise_for_status()
        response.json()

    for _ in range(100):  # warm both pools and caches
        await ours()
        await plain()
    mine, theirs = [], []
    for _ in range(rounds):
        for runner, times in ((plain, theirs), (ours, mine)):
            started = time.perf_counter()
            for _ in range(per_round):
                await runner()
            times.append((time.perf_counter() - started) / per_round)
    await bare.aclose()
    await connection.aclose()
    ours_ms, bare_ms = statistics.median(mine) * 1000, statistics.median(theirs) * 1000
    print(f"2. per request: client {ours_ms:.3f} ms, bare httpx {bare_ms:.3f} ms -> ratio {ours_ms / bare_ms:.3f} "
          f"(overhead {(ours_ms - bare_ms) * 1000:+.0f} µs; target <= 1.10)")


async def invoke_cpu(inputs: dict, rounds: int = 7, per_round: int = 300) -> None:
    """Client CPU per Get Entity invoke against one bare GET of the same row with the same httpx
    client (the connection's own pool, TLS and token); interleaved rounds, medians."""
    from d365_components.connections.headers import ODATA_HEADERS
    from d365_components.connections.oauth import ClientCredentialsConnection
    from d365_components.runtime import invoke

    connection = ClientCredentialsConnection(inputs)
    client = connection.open_client()
    row_id = (await client.create("contacts", {"lastname": "invoke bench"}))["id"]
    token = await connection.tokens.token()
    url = f"{client.api_url}/contacts({row_id})?$select=lastname"
    headers = {**ODATA_HEADERS, "Authorization": f"Bearer {token}"}
    http = client._http  # the same httpx client the action uses
    request = {"entityType": "contacts", "entityId": row_id, "fieldNames": ["lastname"]}

    async def ours() -> None:
        await invoke("dynamics365.get_entity", request, connection)

    async def plain() -> None:
        response = await http.get(url, headers=headers)
        response.raise_for_status()
        response.json()

    for _ in range(100):  # warm pools, caches and the table's metadata
        await ours()
        await plain()
    cpu: dict[str, list[float]] = {"bare": [], "invoke": []}
    wall: dict[str, list[float]] = {"bare": [], "invoke": []}
    for _ in range(rounds):
        for name, runner in (("bare", plain), ("invoke", ours)):
            started, used = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                await runner()
            cpu[name].append((time.process_time() - used) / per_round * 1e6)
            wall[name].append((time.perf_counter() - started) / per_round * 1e6)
    await connection.aclose()
    ratio = statistics.median(cpu["invoke"]) / statistics.median(cpu["bare"])
    print(f"3. client CPU per call (the emulator runs in another process): invoke Get Entity "
          f"{statistics.median(cpu['invoke']):.0f} µs (min {min(cpu['invoke']):.0f}, max {max(cpu['invoke']):.0f}), "
          f"bare GET with the same httpx client {statistics.median(cpu['bare']):.0f} µs "
          f"(min {min(cpu['bare']):.0f}, max {max(cpu['bare']):.0f}); median invoke CPU / median bare CPU = "
          f"{ratio:.2f}x, goal <= 1.05x: {'MET' if ratio <= 1.05 else 'NOT MET'}; wall: median invoke / median bare = "
          f"{statistics.median(wall['invoke']) / statistics.median(wall['bare']):.2f}x")


async def paging_memory(inputs: dict, rows: int) -> None:
    from d365_components.connections.oauth import ClientCredentialsConnection

    connection = ClientCredentialsConnection(inputs)
    client = connection.open_client()
    await client.whoami()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    seen = 0
    async for page in client.pages("contacts", params={"$select": "lastname"}, page_size=5000):
        seen += len(page.rows)
    elapsed = time.perf_counter() - started
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    await connection.aclose()
    print(f"4. paged {seen:,} rows in {elapsed:.1f} s ({seen / elapsed:,.0f} rows/s): the process's peak RSS "
          f"(getrusage, from the operating system) grew {grown:,.0f} MiB while paging "
          f"(flat = one 5,000-row page held at a time)")


async def run(inputs: dict, pipe: Any, args: argparse.Namespace) -> None:
    if args.invoke_only:
        await invoke_cpu(inputs)
        return
    await token_requests(inputs, pipe, args.calls)
    await overhead(inputs, pipe)
    await invoke_cpu(inputs)
    await paging_memory(inputs, args.rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to page through")
    parser.add_argument("--calls", type=int, default=10_000, help="calls for the token count")
    parser.add_argument("--invoke-only", action="store_true", help="only the invoke CPU comparison")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(child, args.rows), daemon=True)
    process.start()
    try:
        ready = parent.recv()
        print(f"emulator ready; {args.rows:,} contacts inserted in {ready['insert_seconds']:.1f} s")
        asyncio.run(run(ready["inputs"], parent, args))
    finally:
        parent.send(("stop",))
        process.join(15)
        if process.is_alive():
            process.terminate()


if __name__ == "__main__":
    main()
