"""``tap-dynamics365``: the extract as a Singer tap, the way Meltano runs one.

    tap-dynamics365 --about
    tap-dynamics365 --config config.json --discover > catalog.json
    tap-dynamics365 --config config.json --catalog catalog.json --state state.json | target-...

The tap conventions (singer-io/getting-started, Meltano's extractor contract) mapped onto the same
engine as ``d365 extract`` (:mod:`d365_components.connections.extract`):

* ``--config``: the connection and the settings, one JSON object (:data:`SETTINGS`);
* ``--discover``: a catalog on stdout: per table its JSON Schema, ``key_properties``, the
  replication method and key, and metadata (``table-key-properties``, ``valid-replication-keys``,
  ``inclusion``, ``selected-by-default``) for each stream and column;
* ``--catalog``/``--properties``: the streams and columns to read, by ``selected`` metadata
  (``selected-by-default`` where ``selected`` is absent; key and modifiedon are ``automatic``),
  and each stream's ``replication-method``: INCREMENTAL (by modifiedon), FULL_TABLE, LOG_BASED
  (change tracking, deletes as ``_sdc_deleted_at`` records). Without a catalog: the ``streams``
  setting, every column;
* ``--state``: the value of the last STATE message, as Meltano passes it;
* ``--about``: name, capabilities (catalog, discover, state, properties, about) and settings.
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

from d365_components.connections import extract as engine
from d365_components.connections.client import WebApiClient
from d365_components.connections.extract import MODES, Mode, Table, default_anchor, parse_streams
from d365_components.errors import D365Error
from d365_components.extract_output import SingerWriter
from d365_components.runtime import open_connection, run_sync
from d365_components.version import __version__

__all__ = ["METHODS", "SETTINGS", "catalog", "main", "selection"]

NAME = "tap-dynamics365"
#: Singer replication methods and the engine's modes
METHODS: dict[str, Mode] = {"INCREMENTAL": "incremental", "FULL_TABLE": "full", "LOG_BASED": "changes"}
_METHOD_OF = {mode: method for method, mode in METHODS.items()}

#: the config's JSON Schema (also what ``--about`` lists as settings)
SETTINGS: dict[str, Any] = {
    "type": "object",
    "required": ["connection"],
    "additionalProperties": False,
    "properties": {
        "connection": {"type": "object", "required": ["key"],
                       "description": 'The connection: {"key": "dynamics365.oauth2_client_credentials", '
                                      '"inputs": {...}}, as d365 --connection takes it.'},
        "streams": {"type": ["string", "array"], "items": {"type": "string"}, "default": "*",
                    "description": "Tables without a catalog (and for --discover): names, or '*' for every readable one."},
        "mode": {"enum": list(MODES), "default": "incremental",
                 "description": "The replication of streams the catalog says nothing about."},
        "anchor_date": {"type": "string", "description": "ISO date: read rows modified from then on (default: a year ago)."},
        "rate_limit": {"type": "number", "exclusiveMinimum": 0, "default": 15.0,
                       "description": "Requests per second at most."},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 52, "default": 4,
                        "description": "Streams read at the same time."},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 5000,
                      "description": "Rows a request (default: 5000, fewer for wide tables)."},
        "settle": {"type": "number", "minimum": 0, "default": 0,
                   "description": "Incremental: leave rows modified in the last this many seconds for the next run."},
        "activate_version": {"type": "boolean", "default": True,
                             "description": "Full table: versioned records and ACTIVATE_VERSION messages."},
    },
}


class TapError(click.ClickException):
    """A config, catalog or state the tap cannot use: one line on stderr, exit status 1."""


def _read(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TapError(f"{what}: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise TapError(f"{what}: {path} is not JSON ({exc.msg} at line {exc.lineno})") from None


def _config(path: Path) -> dict[str, Any]:
    config = _read(path, "--config")
    if not isinstance(config, dict):
        raise TapError("--config: expected a JSON object of settings.")
    unknown = sorted(set(config) - set(SETTINGS["properties"]))
    if unknown:
        raise TapError(f"--config: unknown settings {', '.join(unknown)}; known: {', '.join(SETTINGS['properties'])}.")
    if not isinstance(config.get("connection"), dict):
        raise TapError('--config: "connection" is required: {"key": "dynamics365.oauth2_client_credentials", "inputs": {...}}.')
    if config.get("mode", "incremental") not in MODES:
        raise TapError(f"--config: mode must be one of {', '.join(MODES)}.")
    return config


def _anchor(config: dict[str, Any]) -> datetime:
    value = config.get("anchor_date")
    if not value:
        return default_anchor()
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise TapError(f"--config: anchor_date '{value}' is not an ISO date (2024-01-01).") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def effective_mode(table: Table, mode: Mode) -> Mode:
    """What the engine reads ``table`` by when asked for ``mode`` (it falls back, with a warning)."""
    if mode == "changes" and not table.change_tracking:
        mode = "incremental"
    if mode == "incremental" and not table.has_modifiedon:
        mode = "full"
    return mode


def catalog(tables: list[Table], mode: Mode) -> dict[str, Any]:
    """The Singer catalog of ``tables``, each with the replication ``mode`` would give it."""
    streams = []
    for table in tables:
        chosen = effective_mode(table, mode)
        automatic = {table.primary_id, "modifiedon"}
        stream_metadata: dict[str, Any] = {
            "inclusion": "available", "selected-by-default": True, "table-key-properties": [table.primary_id],
            "valid-replication-keys": ["modifiedon"] if table.has_modifiedon else [],
            "replication-method": _METHOD_OF[chosen], "dynamics365-logical-name": table.logical_name,
            "dynamics365-change-tracking": table.change_tracking,
        }
        if chosen == "incremental":
            stream_metadata["replication-key"] = "modifiedon"
        schema = table.schema(chosen)
        metadata = [{"breadcrumb": [], "metadata": stream_metadata}] + [
            {"breadcrumb": ["properties", name],
             "metadata": {"inclusion": "automatic" if name in automatic else "available", "selected-by-default": True}}
            for name in schema["properties"]
        ]
        entry: dict[str, Any] = {"tap_stream_id": table.name, "stream": table.name, "schema": schema,
                                 "key_properties": [table.primary_id], "replication_method": _METHOD_OF[chosen],
                                 "metadata": metadata}
        if chosen == "incremental":
            entry["replication_key"] = "modifiedon"
        streams.append(entry)
    return {"streams": streams}


def _selected(metadata: dict[str, Any], default: bool = False) -> bool:
    if metadata.get("inclusion") == "automatic":
        return True
    if metadata.get("inclusion") == "unsupported":
        return False
    if "selected" in metadata:
        return bool(metadata["selected"])
    return bool(metadata.get("selected-by-default", default))


def selection(document: Any, mode: Mode) -> tuple[list[tuple[str, Mode]], dict[str, list[str]]]:
    """The streams a catalog selects with their modes, and the columns of those that leave some out."""
    if not isinstance(document, dict) or not isinstance(document.get("streams"), list):
        raise TapError('--catalog: expected a Singer catalog: {"streams": [...]}.')
    streams: list[tuple[str, Mode]] = []
    columns: dict[str, list[str]] = {}
    for entry in document["streams"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("tap_stream_id") or entry.get("stream"), str):
            raise TapError("--catalog: every stream needs a tap_stream_id.")
        name = entry.get("tap_stream_id") or entry["stream"]
        by_crumb = {tuple(m.get("breadcrumb") or ()): m.get("metadata") or {}
                    for m in entry.get("metadata") or [] if isinstance(m, dict)}
        top = by_crumb.get((), {})
        legacy = (entry.get("schema") or {}).get("selected")  # catalogs before metadata: schema.selected
        if not (_selected(top) if ("selected" in top or legacy is None) else bool(legacy)):
            continue
        method = top.get("replication-method") or entry.get("replication_method")
        if method is not None and method not in METHODS:
            raise TapError(f"--catalog: {name}: replication-method '{method}'; use one of {', '.join(METHODS)}.")
        streams.append((name, METHODS[method] if method else mode))
        properties = (entry.get("schema") or {}).get("properties") or {}
        kept = [column for column in properties
                if column != engine.DELETED_AT and _selected(by_crumb.get(("properties", column), {}), True)]
        if len(kept) < len([c for c in properties if c != engine.DELETED_AT]):
            columns[name] = kept
    try:
        parse_streams([name for name, _ in streams] or ["x"], mode)  # names a $filter may hold
    except engine.ExtractError as exc:
        raise TapError(f"--catalog: {exc}") from None
    return streams, columns


async def _discover(connection: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    names = [name for name, _ in parse_streams(config.get("streams", "*"), "incremental")]
    conn = open_connection(connection)
    assert conn is not None
    try:
        client = conn.open_client()
        assert isinstance(client, WebApiClient)
        tables, missing = await engine.describe_tables(client, names)
    finally:
        await conn.aclose()
    for name in missing:
        engine.log.warning("%s: no such table; left out of the catalog", name)
    return catalog(tables, config.get("mode", "incremental"))


async def _sync(connection: dict[str, Any], config: dict[str, Any], streams: list[tuple[str, Mode]],
                columns: dict[str, list[str]], state: Any) -> engine.Summary:
    conn = open_connection(connection)
    assert conn is not None
    try:
        client = conn.open_client()
        assert isinstance(client, WebApiClient)
        return await engine.extract(
            client, SingerWriter(sys.stdout), streams=streams, columns=columns, state=state, anchor=_anchor(config),
            rate_limit=float(config.get("rate_limit", 15.0)), concurrency=int(config.get("concurrency", 4)),
            page_size=config.get("page_size"), settle=float(config.get("settle", 0)),
            activate_versions=bool(config.get("activate_version", True)))
    finally:
        await conn.aclose()


def about() -> dict[str, Any]:
    return {"name": NAME, "description": "Dynamics 365 / Dataverse tables as Singer streams (d365-components)",
            "version": __version__, "capabilities": ["catalog", "discover", "state", "properties", "about"],
            "settings": SETTINGS}


@click.command(NAME)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Settings and connection, a JSON file.")
@click.option("--discover", is_flag=True, help="Print the catalog of the tables and exit.")
@click.option("--catalog", "catalog_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A Singer catalog: the streams, columns and replication methods selected.")
@click.option("--properties", "properties_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The older name of --catalog.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The state to resume from: the value of the last STATE message.")
@click.option("--about", "show_about", is_flag=True, help="Print the tap's name, capabilities and settings.")
@click.option("--format", "about_format", type=click.Choice(["json"]), default="json", help="--about's format.")
def main(config_file: Path | None, discover: bool, catalog_file: Path | None, properties_file: Path | None,
         state_file: Path | None, show_about: bool, about_format: str) -> None:
    """Dynamics 365 / Dataverse as a Singer tap: Singer messages on stdout, logs on stderr."""
    if show_about:
        click.echo(json.dumps(about(), indent=2))
        return
    if config_file is None:
        raise TapError("--config FILE is required (the connection and settings).")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format=f"{NAME}: %(levelname)s %(message)s")
    engine.log.setLevel(logging.INFO)
    config = _config(config_file)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")
    mode: Mode = config.get("mode", "incremental")
    try:
        if discover:
            click.echo(json.dumps(run_sync(_discover(config["connection"], config)), indent=1))
            return
        chosen = catalog_file or properties_file
        if chosen is not None:
            streams, columns = selection(_read(chosen, "--catalog"), mode)
        else:
            streams, columns = parse_streams(config.get("streams", "*"), mode), {}
        state = _read(state_file, "--state") if state_file is not None else None
        if not streams:
            engine.log.warning("the catalog selects no stream")
            return
        summary = run_sync(_sync(config["connection"], config, streams, columns, state or None))
    except D365Error as exc:
        raise TapError(str(exc)) from None
    engine.log.info("%d records from %d streams", sum(summary.counts.values()),
                    len(summary.counts) - len(summary.skipped))


if __name__ == "__main__":
    main()
