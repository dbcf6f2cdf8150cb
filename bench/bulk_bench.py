"""Benchmark of Bulk Upsert and fetch-all against the emulator on loopback (HTTPS).

Prints:

1. rows per second for Bulk Upsert of N rows (default 100,000; chunked UpsertMultiple, concurrent)
   next to one request per row (measured on a smaller sample, default 2,000 rows, sequential and
   16 in flight), and the ratio;
2. the same upsert through Microsoft's Python SDK (``powerplatform-dataverse-client``) as a peer,
   when it is installed (it is not a dependency: ``pip install powerplatform-dataverse-client``),
   in its own way: ``records.upsert`` with 100-row UpsertMultiple calls, one after another;
3. Query Entities with Fetch all and Max rows raised: rows per second and the growth of the
   process's peak memory for M rows (default 1,000,000; the output itself holds every row).

The emulator runs in a child process with its service-protection limits lifted, so the numbers
are the client's and the protocol's, not the 6,000-requests-per-5-minutes budget.

    .venv/bin/python bench/bulk_bench.py [--rows 100000] [--per-row 2000] [--peer-rows 20000] [--query-rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import time
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client_bench import bulk_insert


def serve(pipe: Any, query_rows: int) -> None:
    from d365_components.emulator.server import Emulator

    with Emulator(seed="demo") as emulator:      # demo: upserts by its account.accountnumber key
        protection = getattr(emulator.app.state, "protection", None)
        if protection is not None:
            protection.configure(requests=10**9, execution_time=10**9)
        started = time.perf_counter()
        if query_rows:
            bulk_insert(emulator, "contact", query_rows)
        pipe.send({"inputs": emulator.connection_inputs(), "insert_seconds": time.perf_counter() - started})
        while True:
            command, *args = pipe.recv()
            if command == "count":
                pipe.send(emulator.app.state.store.count(args[0], args[1], args[2:]))
            else:
                break


def rows_for(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"accountnumber": f"{prefix}{i:07d}", "name": f"Bench {i}", "telephone1": "555-0100"} for i in range(count)]


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s ({rows:,} rows in {seconds:.1f} s)"


async def bulk_vs_per_row(inputs: dict, pipe: Any, args: argparse.Namespace) -> float:
    from d365_components.connections.oauth import ClientCredentialsConnection
    from d365_components.runtime import invoke

    connection = ClientCredentialsConnection(inputs)
    client = connection.open_client()
    await client.whoami()  # token and pool warm
    results = {}
    for label, chunk, concurrency in (("chunks of 100, 4 in flight (defaults)", 100, 4),
                                      ("chunks of 1000, 8 in flight", 1000, 8)):
        prefix = f"B{chunk}-"
        rows = rows_for(prefix, args.rows)
        started = time.perf_counter()
        out = await invoke("dynamics365.bulk_upsert", {
            "entityType": "accounts", "rows": rows, "alternateKeyColumns": ["accountnumber"],
            "chunkSize": chunk, "maxConcurrency": concurrency,
        }, connection)
        elapsed = time.perf_counter() - started
        pipe.send(("count", "account", "accountnumber LIKE ?", f"{prefix}%"))
        stored = pipe.recv()
        assert out["written"] == args.rows == stored, (out["written"], stored)
        results[label] = args.rows / elapsed
        print(f"1. Bulk Upsert, {label} [{out['method']}]: {rate(args.rows, elapsed)}")

    sample = rows_for("P-", args.per_row)
    started = time.perf_counter()
    for row in sample:
        await client.upsert("accounts", {"accountnumber": row["accountnumber"]},
                            {k: v for k, v in row.items() if k != "accountnumber"})
    sequential = args.per_row / (time.perf_counter() - started)
    print(f"   one request per row, sequential: {sequential:,.0f} rows/s ({args.per_row:,} rows)")
    sample = rows_for("Q-", args.per_row)
    gate = asyncio.Semaphore(16)

    async def one(row: dict[str, Any]) -> None:
        async with gate:
            await client.upsert("accounts", {"accountnumber": row["accountnumber"]},
                                {k: v for k, v in row.items() if k != "accountnumber"})

    started = time.perf_counter()
    await asyncio.gather(*(one(row) for row in sample))
    parallel = args.per_row / (time.perf_counter() - started)
    print(f"   one request per row, 16 in flight: {parallel:,.0f} rows/s ({args.per_row:,} rows)")
    best = max(results.values())
    print(f"   -> Bulk Upsert is {results['chunks of 100, 4 in flight (defaults)'] / sequential:.1f}x one-request-per-row "
          f"sequential and {best / parallel:.1f}x 16-in-flight (best configuration)")
    await connection.aclose()
    return results["chunks of 100, 4 in flight (defaults)"]


class _EmulatorCredential:
    """An azure-core TokenCredential that takes client-credentials tokens from the emulator."""

    def __init__(self, inputs: dict) -> None:
        self.inputs = inputs

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        response = httpx.post(self.inputs["tokenUrl"], verify=self.inputs.get("caBundle", True), data={
            "grant_type": "client_credentials", "client_id": self.inputs["clientId"],
            "client_secret": self.inputs["clientSecret"], "scope": f"{self.inputs['webApiUrl']}/.default",
        })
        response.raise_for_status()
        body = response.json()
        return AccessToken(body["access_token"], int(time.time()) + int(body.get("expires_in", 3600)))


def peer(inputs: dict, pipe: Any, rows: int, ours: float) -> None:
    try:
        from PowerPlatform.Dataverse.client import DataverseClient
    except ImportError as exc:
        print(f"2. Microsoft's SDK: skipped, not installed ({exc.name}); `pip install powerplatform-dataverse-client` to compare")
        return
    if inputs.get("caBundle"):
        os.environ["REQUESTS_CA_BUNDLE"] = inputs["caBundle"]  # the SDK uses requests, which reads this
    try:
        client = DataverseClient(inputs["webApiUrl"], _EmulatorCredential(inputs))
        data = rows_for("S-", rows)
        started = time.perf_counter()
        for start in range(0, rows, 100):
            items = [{"alternate_key": {"accountnumber": r["accountnumber"]},
                      "record": {k: v for k, v in r.items() if k != "accountnumber"}} for r in data[start : start + 100]]
            client.records.upsert("account", items)
        elapsed = time.perf_counter() - started
    except Exception as exc:
        print(f"2. Microsoft's SDK: could not run against the emulator: {type(exc).__name__}: {exc}")
        return
    pipe.send(("count", "account", "accountnumber LIKE ?", "S-%"))
    stored = pipe.recv()
    print(f"2. Microsoft's SDK records.upsert, 100-row UpsertMultiple calls in sequence: {rate(rows, elapsed)} "
          f"[{stored:,} stored] -> Bulk Upsert (defaults) is {ours / (rows / elapsed):.1f}x")


async def fetch_all(inputs: dict, rows: int) -> None:
    from d365_components.connections.oauth import ClientCredentialsConnection
    from d365_components.runtime import invoke

    if not rows:
        return
    connection = ClientCredentialsConnection(inputs)
    await connection.open_client().whoami()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    out = await invoke("dynamics365.query_entities", {
        "entityType": "contacts", "fieldNames": ["lastname"], "fetchAll": True,
        "recordsPerPage": 5000, "maxRows": rows,
    }, connection)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = len(out["value"])
    del out
    await connection.aclose()
    print(f"3. Query Entities, Fetch all with Max rows {rows:,}: {rate(got, elapsed)}; peak memory grew "
          f"{(after - before) / 1024:,.0f} MiB ({(after - before) * 1024 / max(got, 1):,.0f} bytes per row held in the output)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows for Bulk Upsert")
    parser.add_argument("--per-row", type=int, default=2_000, help="rows for the one-request-per-row sample")
    parser.add_argument("--peer-rows", type=int, default=20_000, help="rows through Microsoft's SDK")
    parser.add_argument("--query-rows", type=int, default=1_000_000, help="rows read by Query Entities fetch-all")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(child, args.query_rows), daemon=True)
    process.start()
    try:
        ready = parent.recv()
        print(f"emulator ready in a child process; {args.query_rows:,} contacts inserted in {ready['insert_seconds']:.1f} s")
        ours = asyncio.run(bulk_vs_per_row(ready["inputs"], parent, args))
        peer(ready["inputs"], parent, args.peer_rows, ours)
        asyncio.run(fetch_all(ready["inputs"], args.query_rows))
    finally:
        parent.send(("stop",))
        process.join(15)
        if process.is_alive():
            process.terminate()


if __name__ == "__main__":
    main()
