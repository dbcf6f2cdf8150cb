"""``d365 bulk``: load rows through several worker processes and app users, with Celery on Redis.

    d365 bulk --table accounts --action upsert --key accountnumber --rows @rows.jsonl \\
        --workers 4 --redis redis://127.0.0.1:6379/0 @app1.json @app2.json

Each trailing argument is a connection (``@file`` or JSON), one per app user of the same org;
chunk ``n`` goes through connection ``n mod count``. ``--workers N`` starts N local Celery
workers for the run (and stops them after); ``--workers 0`` uses workers already running
(``celery -A d365_components.scale worker``). Progress goes to stderr, the summary (JSON) to
stdout; the exit status is 1 when a row was refused or not written. Running the same command
with ``--run-id`` of an interrupted run finishes it (chunks done are not sent again).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from d365_components.cli_input import load_json
from d365_components.extras import require

__all__ = ["bulk", "read_rows", "start_workers"]


def read_rows(value: str) -> Iterator[dict[str, Any]]:
    """Rows from ``@file.jsonl`` (one object a line, read as it goes), ``@file.json`` or inline JSON."""
    if value.startswith("@") and value.endswith((".jsonl", ".ndjson")):
        path = Path(value[1:]).expanduser()
        try:
            handle = path.open(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--rows") from None
        with handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise click.BadParameter(f"line {number} is not JSON ({exc.msg})", param_hint="--rows") from None
                    if not isinstance(row, dict):
                        raise click.BadParameter(f"line {number} is not a JSON object", param_hint="--rows")
                    yield row
        return
    rows = load_json(value, "--rows")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise click.BadParameter("must be a JSON array of objects (or @file.jsonl)", param_hint="--rows")
    yield from rows


def start_workers(count: int, url: str, *, concurrency: int = 1) -> list[subprocess.Popen[bytes]]:
    """``count`` local Celery worker processes on ``url`` (each a solo pool, one chunk at a time)."""
    env = {**os.environ, "D365_SCALE_REDIS_URL": url}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "d365_components.scale", "worker", "--pool=solo",
             "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"d365-bulk-{os.getpid()}-{n}@%h"],
            env=env, stdout=subprocess.DEVNULL)
        for n in range(count)
    ]


@click.command("bulk")
@click.argument("connections", nargs=-1, required=True, metavar="@CONNECTION...")
@click.option("--table", required=True, help="The table (entity set or logical name), e.g. accounts.")
@click.option("--rows", "rows_option", required=True, metavar="@FILE|JSON",
              help="The rows: @rows.jsonl (one JSON object a line), @rows.json or an inline JSON array.")
@click.option("--action", type=click.Choice(["upsert", "create"]), default="upsert", show_default=True)
@click.option("--key", "keys", multiple=True, help="An alternate key column (upsert; repeat for several).")
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Local worker processes to start for the run (0: use running workers).")
@click.option("--redis", "url", default=None, metavar="URL",
              help="Redis for the queue and the shared state [env D365_SCALE_REDIS_URL, else redis://127.0.0.1:6379/0].")
@click.option("--chunk-size", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Rows per task.")
@click.option("--request-size", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Rows per request within a task.")
@click.option("--concurrency", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Requests in flight per task.")
@click.option("--continue-on-error", is_flag=True, help="Write every row Dataverse accepts and report the others.")
@click.option("--run-id", default=None, help="Finish the run with this id (chunks done are skipped).")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
def bulk(connections: tuple[str, ...], table: str, rows_option: str, action: str, keys: tuple[str, ...],
         workers: int, url: str | None, chunk_size: int, request_size: int, concurrency: int,
         continue_on_error: bool, run_id: str | None, timeout: float | None) -> None:
    """Write rows through Celery workers over one or more app users (connections)."""
    require("celery", "d365 bulk")
    # optional dependency (the `celery` extra), checked just above
    from d365_components import scale

    url = url or scale.redis_url()
    os.environ["D365_SCALE_REDIS_URL"] = url
    scale.app.conf.update(broker_url=url, result_backend=url)
    pool = [load_json(value, "CONNECTION") for value in connections]
    started = start_workers(workers, url) if workers else []
    console = Console(stderr=True)
    try:
        with Progress(TextColumn("[bold]bulk {task.fields[table]}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=False) as bar:
            task = bar.add_task("rows", total=None, table=table)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = scale.run_bulk(
                pool, read_rows(rows_option), table=table, action=action, alternate_key_columns=keys,
                chunk_size=chunk_size, request_size=request_size, concurrency=concurrency,
                continue_on_error=continue_on_error, run_id=run_id, url=url, progress=progress, timeout=timeout)
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(10)
    click.echo(json.dumps(summary, indent=2))
    if summary["failed"] or summary["notWritten"]:
        sys.exit(1)
