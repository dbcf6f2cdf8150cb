"""The ``d365`` command: list, describe and run definitions; write manifests; run the emulator.

Errors are one line on stderr and a non-zero exit (2 for a bad argument, 1 for a failure),
never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem
from rich.console import Console
from rich.progress import Progress

from d365_components.actions.journal import finish_default_journal, interrupted_message, with_default_journal
from d365_components.cli_bulk import bulk
from d365_components.cli_extract import extract
from d365_components.cli_input import load_json
from d365_components.demo import run_demo
from d365_components.errors import D365Error, InputValidationError
from d365_components.extras import MissingExtraError, require
from d365_components.inputs import coerce_form_values
from d365_components.manifest import build_ui_schemas, default_directory, manifest_files, stale_files
from d365_components.redaction import redact
from d365_components.registry import check_schemas, get_registry
from d365_components.runtime import fetch_choices, invoke, open_connection, run_sync
from d365_components.runtime import poll as poll_trigger

__all__ = ["cli", "main"]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group()
@click.version_option(package_name="d365-components", prog_name="d365")
def cli() -> None:
    """Microsoft Dynamics 365 / Dataverse components for integration platforms."""


def _complete_keys(kinds: tuple[str, ...]) -> Any:
    """Shell completion of definition keys of ``kinds`` (see README: shell completion)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        registry = get_registry()
        return [
            CompletionItem(key, help=definition.label)
            for kind in kinds
            for key, definition in sorted(getattr(registry, kind).items())
            if key.startswith(incomplete)
        ]

    return complete


ALL_KINDS = ("connections", "actions", "triggers", "data_sources")


def _width() -> int:
    """The terminal's width (``COLUMNS`` if set; 80 through a pipe)."""
    return max(shutil.get_terminal_size().columns, 40)


def _wrap(text: str, width: int, indent: int) -> list[str]:
    """``text`` wrapped at word boundaries (never mid-word) into lines indented by ``indent``."""
    pad = " " * indent
    return textwrap.wrap(text, width=max(width, indent + 20), initial_indent=pad, subsequent_indent=pad,
                         break_long_words=False, break_on_hyphens=False) or [pad]


@cli.command("list")
@click.option("--kind", type=click.Choice(list(ALL_KINDS)), help="Only this kind.")
@click.option("--wide", is_flag=True, help="Add each definition's description.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def list_definitions(kind: str | None, wide: bool, as_json: bool) -> None:
    """List every registered action, trigger, connection and data source: key and label, one a line."""
    registry = get_registry()
    kinds = [kind] if kind else list(ALL_KINDS)
    if as_json:
        rows = [
            {"kind": k.rstrip("s").replace("_", " "), "key": d.key, "label": d.label,
             "description": d.summary(), "plugin": registry.origins.get(d.key, "")}
            for k in kinds
            for d in sorted(getattr(registry, k).values(), key=lambda d: d.key)
        ]
        _print_json(rows)
        return
    width = _width()
    lines = [f"{len(registry.all()) if kind is None else len(getattr(registry, kind))} definitions"
             + ("" if wide else " (--wide adds descriptions)")]
    for k in kinds:
        definitions = sorted(getattr(registry, k).values(), key=lambda d: d.key)
        if not definitions:
            continue
        lines += ["", f"{k.replace('_', ' ').capitalize()} ({len(definitions)})"]
        pad = max(len(d.key) for d in definitions) + 4
        for d in definitions:
            label = _wrap(d.label, width, pad)
            lines.append(f"  {d.key}".ljust(pad) + label[0].lstrip())
            lines += label[1:]
            if wide:
                lines += _wrap(d.summary(), width, 6)
    click.echo("\n".join(lines))


def _type_of(prop: dict[str, Any]) -> str:
    declared = prop.get("type", "any")
    text = "|".join(t for t in declared if t != "null") if isinstance(declared, list) else str(declared)
    choices = prop.get("enum") or [v["const"] for v in prop.get("oneOf", []) if "const" in v]
    if choices:
        text += " (" + ", ".join(map(str, choices)) + ")"
    if prop.get("writeOnly"):
        text += " secret"
    return text


@cli.command()
@click.argument("key", shell_complete=_complete_keys(ALL_KINDS))
@click.option("--json", "as_json", is_flag=True, help="Print the input schema as JSON.")
def describe(key: str, as_json: bool) -> None:
    """Show the form of KEY: each input's name (as sent in JSON) and title (as a form shows it),
    type, default and description."""
    definition = get_registry().get(key)
    schema = definition.input_schema()
    if as_json:
        _print_json(schema)
        return
    width = _width()
    lines = [f"{definition.label}  ({definition.kind.replace('_', ' ')} {definition.key})"]
    lines += _wrap(definition.summary(), width, 0)
    if definition.deprecated:
        lines += _wrap(f"Deprecated: {definition.deprecated}", width, 0)
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    lines += ["", f"Inputs ({len(properties)}): name in JSON - title in the form" if properties else "No inputs."]
    for name, prop in properties.items():
        facts = [_type_of(prop)] + (["required"] if name in required else [])
        if "default" in prop:
            facts.append(f"default {json.dumps(prop['default'], ensure_ascii=False)}")
        lines += ["", *_wrap(f"{name} - {prop.get('title', name)} ({', '.join(facts)})", width, 2)]
        lines += _wrap(prop.get("description", ""), width, 6)
    click.echo("\n".join(lines))


@cli.command()
@click.argument("key", shell_complete=_complete_keys(("actions", "data_sources")))
@click.option("--input", "input_", default="{}", metavar="JSON|@FILE", help="Inputs as JSON, or @file.")
@click.option("--connection", metavar="@FILE|JSON", help='Connection: {"key": "...", "inputs": {...}}; prefer @file (inline JSON shows secrets in the process list).')
def run(key: str, input_: str, connection: str | None) -> None:
    """Run the action KEY (or fill the data source KEY) and print its JSON output."""
    inputs = load_json(input_, "--input")
    if isinstance(inputs, dict):  # typed on a command line is form text: the published coercion step ("50" -> 50)
        inputs = coerce_form_values(get_registry().get(key).input_schema(), inputs)
    spec = load_json(connection, "--connection") if connection else None
    if key in get_registry().data_sources:
        _print_json(run_sync(fetch_choices(key, inputs, spec)))
        return
    schema = get_registry().get(key).input_schema() if key in get_registry().actions else {}
    inputs, journal, made_here = with_default_journal(key, inputs, schema)
    bar = Progress(console=err, transient=True)
    task = bar.add_task(key, total=None)

    def progress(done: int, total: int | None) -> None:
        if not bar.live.is_started:  # only long runs report progress: draw the bar then
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        result = run_sync(invoke(key, inputs, spec, progress=progress))
    except KeyboardInterrupt:
        if bar.live.is_started:
            bar.stop()
        if journal is not None:
            err.print(interrupted_message(journal, sys.argv[1:]), markup=False, highlight=False)
        raise
    finally:
        if bar.live.is_started:
            bar.stop()
    finish_default_journal(journal, made_here, result)
    _print_json(result)


@cli.command("test-connection")
@click.option("--connection", required=True, metavar="@FILE|JSON", help='Connection: {"key": "...", "inputs": {...}}; prefer @file (inline JSON shows secrets in the process list).')
def test_connection(connection: str) -> None:
    """Sign in and call WhoAmI: prints who you are, or what is wrong in plain words."""
    conn = open_connection(load_json(connection, "--connection"))
    assert conn is not None  # a config dict always opens a connection

    async def check() -> dict[str, Any]:
        try:
            return await conn.test()
        finally:
            await conn.aclose()

    _print_json(run_sync(check()))


@cli.command()
@click.argument("key", shell_complete=_complete_keys(("triggers",)))
@click.option("--input", "input_", default="{}", metavar="JSON|@FILE", help="Trigger inputs as JSON, or @file.")
@click.option("--connection", required=True, metavar="JSON|@FILE", help="Connection config.")
@click.option("--cursor", "cursor_file", type=click.Path(dir_okay=False, path_type=Path), help="File holding the cursor between runs (read if present, then updated).")
def poll(key: str, input_: str, connection: str, cursor_file: Path | None) -> None:
    """Run the polling trigger KEY once: print its events as JSON lines and save the next cursor."""
    cursor = None
    if cursor_file is not None and cursor_file.exists():
        cursor = load_json(f"@{cursor_file}", "--cursor")
    result = run_sync(poll_trigger(key, load_json(input_, "--input"), cursor, load_json(connection, "--connection")))
    for event in result.events:
        click.echo(json.dumps(event, ensure_ascii=False, default=str))
    if cursor_file is not None:
        cursor_file.write_text(json.dumps(result.cursor), encoding="utf-8")
    count = len(result.events)
    err.print(f"{count} event{'' if count == 1 else 's'}" + (f"; cursor saved to {cursor_file}" if cursor_file else ""))


@cli.command()
@click.option("--check", is_flag=True, help="Fail if the checked-in manifests differ from the code.")
@click.option("--component", "components", multiple=True, help="Component key (default: dynamics365).")
@click.option("--out", "directory", type=click.Path(file_okay=False, path_type=Path), help="Folder to write to (default: the package's manifests/).")
@click.option("--ui", type=click.Choice(["rjsf", "jsonforms"]), help="Print each definition's ready-made UI schema for this renderer (JSON) instead.")
def manifest(check: bool, components: tuple[str, ...], directory: Path | None, ui: str | None) -> None:
    """Write manifests/<component>.json and manifests/manifest.schema.json from the code."""
    if ui:
        keys = components or ("dynamics365",)
        _print_json({k: v for c in keys for k, v in build_ui_schemas(get_registry(), c, ui).items()})
        return
    directory = directory or default_directory()
    check_schemas(get_registry())  # every definition's schemas, checked here rather than at each start
    files = manifest_files(get_registry(), list(components) or ["dynamics365"])
    if check:
        stale = stale_files(directory, files)
        if stale:
            raise D365Error(f"Manifests are stale: {', '.join(stale)} in {directory}; run `d365 manifest`.")
        click.echo(f"Manifests are up to date ({len(files)} files in {directory}).")
        return
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content, encoding="utf-8")
    click.echo(f"Wrote {', '.join(files)} to {directory}.")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to listen on.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(0, 65535), help="Port (0 picks a free one).")
@click.option("--db", default=":memory:", show_default=True, help="SQLite file, or :memory:.")
@click.option("--seed", type=click.Choice(["none", "fresh", "demo"]), default="fresh", show_default=True,
              help="Seed profile: a fresh org, the demo's sample data and keys, or only the org and its users.")
@click.option("--faults", default=None, metavar="SPEC", help="Fault injection, e.g. '429=0.1,503=0.05,latency=20ms,seed=7'.")
@click.option("--latency", default=None, metavar="SPEC", help="Server time per request and per written row (a sleep, for benchmarks), e.g. '30ms,per-row=0.2ms'.")
def emulator(host: str, port: int, db: str, seed: str, faults: str | None, latency: str | None) -> None:
    """Run the embedded Dataverse emulator (HTTPS Web API and token endpoint) until Ctrl-C."""
    require("emulator", "d365 emulator")
    # optional dependency (the `emulator` extra), checked just above
    from d365_components.emulator.limits.faults import Faults
    from d365_components.emulator.limits.latency import Latency
    from d365_components.emulator.server import run_standalone

    try:
        spec = Faults.parse(faults) if faults else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    try:
        delay = Latency.parse(latency) if latency else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--latency") from None
    try:
        run_standalone(host=host, port=port, db=db, seed=seed, faults=spec, latency=delay)
    except OSError as exc:  # the port is taken, the address is not local, the db cannot be opened
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


@cli.command("serve-trigger")
@click.argument("key", shell_complete=_complete_keys(("triggers",)))
@click.option("--input", "input_", default="{}", metavar="JSON|@FILE", help="Trigger inputs as JSON, or @file.")
@click.option("--connection", metavar="JSON|@FILE", help="Connection (needed with --deploy).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--deploy", is_flag=True, help="Register the webhook in Dataverse on start, remove it on exit.")
@click.option("--public-url", default=None, help="URL Dataverse should call, if not http://HOST:PORT/.")
def serve_trigger(key: str, input_: str, connection: str | None, host: str, port: int, deploy: bool, public_url: str | None) -> None:
    """Host the webhook trigger KEY locally and print each event it receives as JSON."""
    spec = load_json(connection, "--connection") if connection else None
    if deploy and spec is None:
        raise click.UsageError("--deploy needs --connection")
    require("webhook", "d365 serve-trigger")
    # optional dependency (the `webhook` extra), checked just above
    from d365_components.webhook_host import serve

    serve(key, load_json(input_, "--input"), spec, host=host, port=port, deploy=deploy, public_url=public_url)


@cli.command()
def demo() -> None:
    """Start the emulator and walk through a sales day with the actions."""
    run_demo(out)


cli.add_command(extract)
cli.add_command(bulk)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors, exit 2 for usage errors and 1 for failures."""
    try:
        cli.main(args=argv, prog_name="d365", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("d365: aborted")
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see `d365 {exc.ctx.info_name} --help`)" if exc.ctx and exc.ctx.parent else " (see `d365 --help`)"
        click.echo(f"d365: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"d365: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except InputValidationError as exc:
        if len(exc.errors) == 1:
            click.echo(f"d365: error: {exc}", err=True)
        else:
            click.echo(f"d365: error: Invalid {exc.subject} ({len(exc.errors)} problems):", err=True)
            for item in exc.errors:
                click.echo(f"  {redact(str(item))}", err=True)
        sys.exit(1)
    except (D365Error, MissingExtraError) as exc:
        click.echo(f"d365: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug or an environment problem: still one line, unless asked
        if os.environ.get("D365_DEBUG"):
            raise
        click.echo(f"d365: error: unexpected {type(exc).__name__}: {redact(str(exc))} (set D365_DEBUG=1 for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
