"""Benchmark of Bulk Upsert / Bulk Create and fetch-all against the emulator on loopback (HTTPS).

Like for like: every trial of every mode gets a fresh emulator (a child process, service
protection lifted) and writes the same rows into an empty table; modes run interleaved
(A B A B ...); figures are medians with min-max over the trials. Client CPU is this process's CPU
time during the run (the emulator runs in another process), divided by the run's wall time.

1. writes, N rows (default 20,000), under the realistic-latency mode (`--latency`, default
   `30ms,per-row=0.2ms`: every request waits 30 ms plus 0.2 ms per written row, a sleep in the
   emulator, so concurrency shows as it does against Dataverse) and with no added latency (the
   emulator's CPU is then the bottleneck and the client's CPU share is what matters):
   * Bulk Upsert at its defaults vs Microsoft's SDK (`powerplatform-dataverse-client`) used as its
     documentation shows: `client.records.upsert("account", items)` with the whole list (one
     UpsertMultiple request);
   * Bulk Create at its defaults vs the SDK's `client.records.create("account", rows)`.
   The SDK's async client needs aiohttp; it runs as a third mode when aiohttp is installed
   (8 requests in flight, 1,000-row calls).
2. fetch-all, M rows (default 200,000 contacts): Query Entities with Fetch all vs a bare httpx page
   loop (same page size, same columns, same client settings), each in a fresh process so that its
   peak RSS (getrusage, the operating system's figure) is its own.

    .venv/bin/python bench/bulk_bench.py [--rows 20000] [--trials 3] [--latency 30ms,per-row=0.2ms] [--query-rows 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client_bench import bulk_insert

Result = dict[str, float]


def serve(pipe: Any, latency: str | None, contacts: int) -> None:
    from d365_components.emulator.server import Emulator

    with Emulator(seed="demo", latency=latency) as emulator:  # demo: upserts by its account key
        emulator.app.state.protection.configure(requests=10**9, execution_time=10**9)
        if contacts:
            bulk_insert(emulator, "contact", contacts)
        pipe.send(emulator.connection_inputs())
        while True:
            command, *args = pipe.recv()
            if command != "count":
                break
            pipe.send(emulator.app.state.store.count(args[0]))


class FreshEmulator:
    """An emulator of its own in a child process, for one trial."""

    def __init__(self, latency: str | None = None, contacts: int = 0) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, latency, contacts), daemon=True)

    def __enter__(self) -> FreshEmulator:
        self.process.start()
        self.inputs: dict[str, Any] = self.pipe.recv()
        return self

    def count(self, table: str) -> int:
        self.pipe.send(("count", table))
        return int(self.pipe.recv())

    def __exit__(self, *exc: object) -> None:
        self.pipe.send(("stop",))
        self.process.join(15)
        if self.process.is_alive():
            self.process.terminate()


def rows_for(count: int) -> list[dict[str, Any]]:
    return [{"accountnumber": f"B{i:07d}", "name": f"Bench {i}", "telephone1": "555-0100"} for i in range(count)]


def timed(run: Callable[[], None]) -> Result:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def library(key: str) -> Callable[[dict[str, Any], list[dict[str, Any]]], Result]:
    def mode(inputs: dict[str, Any], rows: list[dict[str, Any]]) -> Result:
        from d365_components.connections.oauth import ClientCredentialsConnection
        from d365_components.runtime import invoke

        async def main() -> Result:
            connection = ClientCredentialsConnection(inputs)
            await connection.open_client().whoami()  # token and pool warm, as for the SDK below
            body: dict[str, Any] = {"entityType": "accounts", "rows": rows}
            if key == "dynamics365.bulk_upsert":
                body["alternateKeyColumns"] = ["accountnumber"]
            wall, cpu = time.perf_counter(), time.process_time()
            await invoke(key, body, connection)
            result = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
            await connection.aclose()
            return result

        return asyncio.run(main())

    return mode


class _EmulatorCredential:
    """An azure-core TokenCredential that takes client-credentials tokens from the emulator."""

    def __init__(self, inputs: dict[str, Any]) -> None:
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


def sdk(operation: str) -> Callable[[dict[str, Any], list[dict[str, Any]]], Result]:
    def mode(inputs: dict[str, Any], rows: list[dict[str, Any]]) -> Result:
        from PowerPlatform.Dataverse.client import DataverseClient

        os.environ["REQUESTS_CA_BUNDLE"] = inputs["caBundle"]  # the SDK uses requests, which reads this
        client = DataverseClient(inputs["webApiUrl"], _EmulatorCredential(inputs))
        client.records.list("account", filter="name eq 'warm-up'", top=1)  # token and pool warm
        if operation == "upsert":
            items = [{"alternate_key": {"accountnumber": r["accountnumber"]},
                      "record": {k: v for k, v in r.items() if k != "accountnumber"}} for r in rows]
            return timed(lambda: client.records.upsert("account", items))
        return timed(lambda: client.records.create("account", rows))

    return mode


def sdk_available() -> bool:
    try:
        import PowerPlatform.Dataverse.client  # noqa: F401
    except ImportError:
        return False
    return True


def median_range(values: list[float], fmt: str = ",.0f") -> str:
    return f"{statistics.median(values):{fmt}} (min {min(values):{fmt}}, max {max(values):{fmt}})"


def write_section(args: argparse.Namespace, latency: str | None) -> None:
    title = f"latency {latency}" if latency else "no added latency (the emulator's CPU is the bottleneck)"
    print(f"\n1. writes of {args.rows:,} rows, {title}; {args.trials} trials, interleaved, fresh emulator each")
    rows = rows_for(args.rows)
    modes: dict[str, Callable[[dict[str, Any], list[dict[str, Any]]], Result]] = {
        "Bulk Upsert, defaults": library("dynamics365.bulk_upsert")}
    if sdk_available():
        modes["SDK records.upsert(list)"] = sdk("upsert")
    modes["Bulk Create, defaults"] = library("dynamics365.bulk_create")
    if sdk_available():
        modes["SDK records.create(list)"] = sdk("create")
    results: dict[str, list[Result]] = {name: [] for name in modes}
    for _ in range(args.trials):
        for name, mode in modes.items():
            with FreshEmulator(latency) as emulator:
                result = mode(emulator.inputs, rows)
                stored = emulator.count("account")
                assert stored == args.rows, f"{name}: {stored:,} rows stored, expected {args.rows:,}"
                results[name].append(result)
    rates = {name: [args.rows / r["wall"] for r in rs] for name, rs in results.items()}
    for name, rs in results.items():
        share = [100 * r["cpu"] / r["wall"] for r in rs]
        print(f"   {name:26} {median_range(rates[name])} rows/s; client CPU / wall {median_range(share, '.1f')} %")
    goal = 2.0 if latency else None
    for ours, theirs in (("Bulk Upsert, defaults", "SDK records.upsert(list)"),
                         ("Bulk Create, defaults", "SDK records.create(list)")):
        if theirs in rates:
            ratio = statistics.median(rates[ours]) / statistics.median(rates[theirs])
            verdict = f"; goal >= {goal}x: {'MET' if ratio >= goal else 'NOT MET'}" if goal else ""
            print(f"   -> median rows/s of {ours} / median rows/s of {theirs} = {ratio:.2f}x{verdict}")
    if not sdk_available():
        print("   Microsoft's SDK: not installed (it is in the test extra); its rows are left out")
    print("   Microsoft's async client (AsyncDataverseClient) needs aiohttp, not installed here: not measured")


def fetch_child(pipe: Any, mode: str, inputs: dict[str, Any], rows: int) -> None:
    """One fetch-all run in a fresh process: (rows, wall, cpu, peak RSS growth in bytes)."""
    from d365_components.connections.headers import ODATA_HEADERS
    from d365_components.connections.oauth import ClientCredentialsConnection
    from d365_components.runtime import invoke

    async def main() -> tuple[int, float, float, int]:
        connection = ClientCredentialsConnection(inputs)
        client = connection.open_client()
        await client.whoami()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        wall, cpu = time.perf_counter(), time.process_time()
        if mode == "action":
            out = await invoke("dynamics365.query_entities", {
                "entityType": "contacts", "fieldNames": ["lastname"], "fetchAll": True,
                "recordsPerPage": 5000, "maxRows": rows}, connection)
            got = len(out["value"])
        else:  # the bare page loop: an httpx client with the same TLS settings, every row kept
            token = await connection.tokens.token()
            headers = {**ODATA_HEADERS, "Prefer": "odata.maxpagesize=5000", "Authorization": f"Bearer {token}"}
            kept: list[Any] = []
            url: str | None = f"{client.api_url}/contacts?$select=lastname"
            async with httpx.AsyncClient(verify=connection.ssl_context, trust_env=False) as bare:
                while url:
                    response = await bare.get(url, headers=headers)
                    response.raise_for_status()
                    page = response.json()
                    kept.extend(page["value"])
                    url = page.get("@odata.nextLink")
            got = len(kept)
        elapsed, used = time.perf_counter() - wall, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await connection.aclose()
        return got, elapsed, used, (after - before) * 1024

    pipe.send(asyncio.run(main()))


def fetch_section(args: argparse.Namespace) -> None:
    if not args.query_rows:
        return
    print(f"\n2. fetch-all of {args.query_rows:,} contacts, page size 5,000; {args.trials} trials, interleaved, "
          "fresh emulator and fresh client process each")
    context = multiprocessing.get_context("spawn")
    results: dict[str, list[tuple[int, float, float, int]]] = {"action": [], "bare": []}
    for _ in range(args.trials):
        for mode in results:
            with FreshEmulator(None, args.query_rows) as emulator:
                parent, child = context.Pipe()
                process = context.Process(target=fetch_child, args=(child, mode, emulator.inputs, args.query_rows))
                process.start()
                results[mode].append(parent.recv())
                process.join(15)
    labels = {"action": "Query Entities, Fetch all", "bare": "bare httpx page loop"}
    rates = {m: [r[0] / r[1] for r in rs] for m, rs in results.items()}
    for mode, rs in results.items():
        rss = [r[3] / 2**20 for r in rs]
        print(f"   {labels[mode]:26} {median_range(rates[mode])} rows/s; peak RSS growth (OS) {median_range(rss)} MiB")
    ratio = statistics.median(rates["action"]) / statistics.median(rates["bare"])
    print(f"   -> median rows/s of Query Entities / median rows/s of the bare loop = {ratio:.2f}x; "
          f"goal >= 0.95x: {'MET' if ratio >= 0.95 else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows written per trial")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--latency", default="30ms,per-row=0.2ms", help="the realistic-latency mode's server time")
    parser.add_argument("--query-rows", type=int, default=200_000, help="rows read by fetch-all (0: skip)")
    parser.add_argument("--skip-cpu-bound", action="store_true", help="only the realistic-latency writes")
    parser.add_argument("--skip-writes", action="store_true", help="only fetch-all")
    args = parser.parse_args()
    if not args.skip_writes:
        write_section(args, args.latency)
    if not args.skip_writes and not args.skip_cpu_bound:
        write_section(args, None)
    fetch_section(args)


if __name__ == "__main__":
    main()
