"""``d365 extract``: replicate tables into a warehouse, as Singer messages or JSONL files.

    d365 extract --connection @conn.json --streams accounts,contacts --state state.json | target-jsonl

Singer messages go to stdout (pipe them into any Singer target); progress and warnings go to
stderr. ``--output jsonl`` writes ``<stream>.jsonl`` files and ``state.json`` into
``--output-dir`` instead. The engine is :mod:`d365_components.connections.extract`.

With Singer output, ``--state FILE`` is written when the run ends (a crashed run is resumed
from the STATE the target last saved, as Meltano does); with JSONL it is saved after every page.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from d365_components.cli_input import load_json
from d365_components.connections import extract as engine
from d365_components.connections.client import WebApiClient
from d365_components.connections.extract import MODES, Mode, Sink, Summary, default_anchor, parse_streams
from d365_components.errors import D365Error
from d365_components.extract_output import JsonlWriter, SingerWriter
from d365_components.runtime import open_connection, run_sync

__all__ = ["extract", "extract_command"]


def _anchor(value: str | None) -> datetime:
    if not value:
        return default_anchor()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not an ISO date (2024-01-01 or 2024-01-01T00:00:00Z)",
                                 param_hint="--anchor-date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _run(connection: dict[str, Any], sink: Sink, **options: Any) -> Summary:
    conn = open_connection(connection)
    assert conn is not None  # a config dict always opens a connection
    try:
        client = conn.open_client()
        assert isinstance(client, WebApiClient)
        return await engine.extract(client, sink, **options)
    finally:
        await conn.aclose()


@click.command("extract")
@click.option("--connection", required=True, metavar="@FILE|JSON",
              help='Connection: {"key": "...", "inputs": {...}}; prefer @file (inline JSON shows secrets).')
@click.option("--streams", default="*", show_default=True, metavar="a,b[:mode]|*",
              help="Tables (entity set or logical names), '*' for every readable table; name:mode sets one's mode.")
@click.option("--mode", type=click.Choice(MODES), default="incremental", show_default=True,
              help="incremental (by modifiedon), full (every row each run), changes (change tracking, deletes).")
@click.option("--anchor-date", metavar="ISO", help="Read rows modified from this date on (default: one year ago).")
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path),
              help="State file: read if present (resume), written with the new state.")
@click.option("--output", type=click.Choice(["singer", "jsonl"]), default="singer", show_default=True,
              help="singer: messages on stdout; jsonl: files in --output-dir.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder of the JSONL files and state.json (with --output jsonl).")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True,
              help="Requests per second at most (narrows when Dataverse's burst budget runs low).")
@click.option("--concurrency", type=click.IntRange(1, 52), default=4, show_default=True,
              help="Streams read at the same time.")
@click.option("--page-size", type=click.IntRange(1, 5000), default=None,
              help="Rows per request (default: 5000, fewer for tables of more than 80 columns, to bound memory).")
@click.option("--settle", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Incremental: leave rows modified in the last SECONDS for the next run (late commits).")
@click.option("--activate-version/--no-activate-version", default=True, show_default=True,
              help="Full mode: versioned records and ACTIVATE_VERSION (targets drop deleted rows); "
                   "off for targets that refuse the message.")
def extract_command(connection: str, streams: str, mode: Mode, anchor_date: str | None, state_file: Path | None,
                    output: str, output_dir: Path, rate_limit: float, concurrency: int, page_size: int | None,
                    settle: float, activate_version: bool) -> None:
    """Extract tables as streams, incrementally and resumably: Singer messages on stdout, or JSONL files."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="d365 extract: %(message)s")
    engine.log.setLevel(logging.INFO)  # progress per stream; not every HTTP request
    config = load_json(connection, "--connection")
    state_path = state_file or (output_dir / JsonlWriter.STATE_FILE if output == "jsonl" else None)
    state = load_json(f"@{state_path}", "--state") if state_path is not None and state_path.exists() else None
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")  # what Singer targets read, whatever the locale
    sink: Sink = JsonlWriter(output_dir, state) if output == "jsonl" else SingerWriter(sys.stdout)
    try:
        summary = run_sync(_run(
            config, sink, streams=parse_streams(streams, mode), state=state, anchor=_anchor(anchor_date),
            rate_limit=rate_limit, concurrency=concurrency, page_size=page_size, settle=settle,
            activate_versions=activate_version))
    except D365Error as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if isinstance(sink, JsonlWriter):
            sink.close()
    if state_file is not None:
        state_file.write_text(json.dumps(summary.state, indent=1), encoding="utf-8")
    total = sum(summary.counts.values())
    click.echo(f"d365 extract: {total} records from {len(summary.counts) - len(summary.skipped)} streams"
               + (f"; skipped (no such table): {', '.join(summary.skipped)}" if summary.skipped else ""), err=True)


#: the name the CLI registers (``cli.add_command(extract)``)
extract = extract_command

if __name__ == "__main__":
    extract_command()
