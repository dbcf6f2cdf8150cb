"""Fault soak: Bulk Create and Bulk Upsert of many rows through injected faults, exactly once.

The emulator runs in a child process with its service-protection limits lifted and the faults
``429=0.05,503=0.01,drop=0.005`` (seeded) on its Web API. Each action runs ONCE over N rows
(default 100,000); the soak then counts the rows in the emulator's store: every row must be
there exactly once (0 lost, 0 duplicated). It prints the retries, the resends (writes sent again
after an ambiguous failure) and the rows reconciled (found already written after a resend).

The emulator's ``drop`` closes the connection before the request reaches its handler, so the
server never acts on a dropped request. A real network also loses answers to requests that DID
land; ``--lost-answers P`` (default 0.002) adds that on the client side: a transport that sends
the request, lets the server act, and then throws the answer away (a RemoteProtocolError), so
the reconciling path (duplicate key -> read which ids exist) is exercised too.

    .venv/bin/python bench/fault_soak.py [--rows 100000] [--faults SPEC] [--lost-answers 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import time
from typing import Any

import httpx

FAULTS = "429=0.05,503=0.01,drop=0.005,seed=7"


def serve(pipe: Any, faults: str) -> None:
    from d365_components.emulator.server import Emulator

    with Emulator(seed=None, faults=faults) as emulator:
        protection = getattr(emulator.app.state, "protection", None)
        if protection is not None:
            protection.configure(requests=10**9, execution_time=10**9)
        pipe.send({"inputs": emulator.connection_inputs()})
        store = emulator.app.state.store
        while True:
            command, *args = pipe.recv()
            if command == "tally":  # rows, and distinct values of the column, among the prefix
                table, column, prefix = args
                [row] = store.execute(f"SELECT count(*) AS n, count(DISTINCT {column}) AS d FROM {table} "
                                      f"WHERE {column} LIKE ?", (f"{prefix}%",))
                pipe.send((row["n"], row["d"]))
            elif command == "faults":
                history = list(emulator.app.state.faults.history)
                pipe.send({outcome: sum(1 for _, o in history if o == outcome) for outcome in {o for _, o in history}})
            else:
                break


class LostAnswers(httpx.AsyncBaseTransport):
    """Sends each write, then (with probability ``rate``) loses the answer after the server acted."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rate: float, seed: int = 11) -> None:
        self.inner, self.rate, self.random, self.lost = inner, rate, random.Random(seed), 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and self.random.random() < self.rate:
            await response.aread()
            await response.aclose()
            if response.status_code < 300:  # only an answer that says "done" is worth losing
                self.lost += 1
                raise httpx.RemoteProtocolError("soak: the answer was lost after the server acted", request=request)
            return httpx.Response(response.status_code, headers=response.headers, content=response.content,
                                  request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def soak(inputs: dict[str, Any], pipe: Any, args: argparse.Namespace) -> bool:
    from d365_components.connections.oauth import ClientCredentialsConnection
    from d365_components.runtime import invoke

    connection = ClientCredentialsConnection(inputs)
    inner = httpx.AsyncHTTPTransport(verify=connection.ssl_context or True, http1=True, http2=False,
                                     limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
    lost = LostAnswers(inner, args.lost_answers)
    client = connection.open_client(transport=lost)
    ok = True
    tag = f"soak{int(time.time())}-"
    runs = [
        ("Bulk Create", "dynamics365.bulk_create", {"rows": [{"name": f"{tag}c{i:07d}"} for i in range(args.rows)]},
         ("account", "name", f"{tag}c")),
        ("Bulk Upsert", "dynamics365.bulk_upsert",
         {"rows": [{"accountnumber": f"{tag}u{i:07d}", "name": "soak"} for i in range(args.rows)],
          "alternateKeyColumns": ["accountnumber"]},
         ("account", "accountnumber", f"{tag}u")),
    ]
    print(f"faults: {args.faults}; answers lost after the server acted: {args.lost_answers:g} of POSTs")
    for label, key, extra, (table, column, prefix) in runs:
        before = (client.attempts.retries, client.attempts.ambiguous, lost.lost)
        started = time.perf_counter()
        out = await invoke(key, {"entityType": "accounts", "maxConcurrency": args.concurrency, **extra}, connection)
        seconds = time.perf_counter() - started
        pipe.send(("tally", table, column, prefix))
        stored, distinct = pipe.recv()
        lost_rows, doubled = args.rows - distinct, stored - distinct
        passed = (out["nextChunk"] is None and out["written"] == args.rows and lost_rows == 0 and doubled == 0
                  and out["written"] + out["failed"] + out["notWritten"] == out["total"])
        ok = ok and passed
        print(f"{label}: {args.rows:,} rows in {seconds:.1f} s, one run ({out['method']}) -> "
              f"{'PASS' if passed else 'FAIL'}")
        print(f"  written {out['written']:,}, failed {out['failed']:,}, not written {out['notWritten']:,}; "
              f"in the store {stored:,} rows, lost {lost_rows:,}, duplicated {doubled:,}")
        print(f"  retries {out['retries']:,}, resends {out['resends']:,}, reconciled rows {out['reconciled']:,}; "
              f"answers lost on purpose {lost.lost - before[2]:,} "
              f"(client totals: retries {client.attempts.retries - before[0]:,}, "
              f"resends {client.attempts.ambiguous - before[1]:,})")
    pipe.send(("faults",))
    print(f"emulator fault draws: {dict(sorted(pipe.recv().items()))}")
    await connection.aclose()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--faults", default=FAULTS)
    parser.add_argument("--lost-answers", type=float, default=0.002)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(child, args.faults), daemon=True)
    server.start()
    ready = parent.recv()
    try:
        ok = asyncio.run(soak(ready["inputs"], parent, args))
    finally:
        parent.send(("stop",))
        server.join(10)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
