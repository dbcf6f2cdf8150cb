"""Where an extract's records go: Singer messages on a text stream, or JSONL files per stream.

Singer (the spec at singer-io/getting-started): one JSON object per line. ``SCHEMA`` comes before a
stream's records and carries the JSON Schema, ``key_properties`` (the primary key) and, for the
incremental mode, ``bookmark_properties`` (``modifiedon``); ``RECORD`` carries the row and
``time_extracted``; ``STATE`` carries the whole state object, written after the records it
covers, so a target that saves it once it has stored them resumes exactly. A full read's records
carry its ``version``, and ``ACTIVATE_VERSION`` follows its last record: a target that supports it
drops the stream's rows of older versions (rows deleted since the last full read).

A RECORD line is a prefix computed once per page, the row's JSON and a suffix: each row is encoded
once, as it was decoded (:mod:`d365_components.fast_json`: orjson when installed), never copied.

JSONL: ``<stream>.jsonl`` (one row a line) and ``state.json`` in one folder. The state also
records each file's size when it was saved; a run resumed from it cuts every file back to that
size first, so rows written after the last saved state (a crash) are not there twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from d365_components import fast_json
from d365_components.connections.extract import Mode, Table

__all__ = ["JsonlWriter", "SingerWriter"]


def _line(message: dict[str, Any]) -> str:
    return fast_json.dumps(message) + "\n"


class SingerWriter:
    """Singer SCHEMA, RECORD and STATE messages on ``out`` (stdout for a pipe into a target)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def schema(self, table: Table, mode: Mode) -> None:
        message: dict[str, Any] = {"type": "SCHEMA", "stream": table.name, "schema": table.schema(mode),
                                   "key_properties": [table.primary_id]}
        if mode == "incremental":
            message["bookmark_properties"] = ["modifiedon"]
        self.out.write(_line(message))

    def records(self, stream: str, rows: list[dict[str, Any]], time_extracted: str,
                version: int | None = None) -> None:
        dumps = fast_json.dumps
        head = '{"type":"RECORD","stream":' + dumps(stream) + ',"record":'
        tail = (f',"version":{int(version)}' if version is not None else "") + \
            ',"time_extracted":' + dumps(time_extracted) + "}\n"
        self.out.write("".join([head + dumps(row) + tail for row in rows]))

    def activate_version(self, stream: str, version: int) -> None:
        self.out.write(_line({"type": "ACTIVATE_VERSION", "stream": stream, "version": int(version)}))

    def state(self, state: dict[str, Any]) -> None:
        self.out.write(_line({"type": "STATE", "value": state}))
        self.out.flush()


class JsonlWriter:
    """One ``<stream>.jsonl`` per stream and ``state.json`` in ``directory``."""

    STATE_FILE = "state.json"

    def __init__(self, directory: Path, state: dict[str, Any] | None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sizes: dict[str, int] = dict((state or {}).get("files") or {})
        self.files: dict[str, IO[str]] = {}

    def _file(self, stream: str) -> IO[str]:
        if stream not in self.files:
            handle = (self.directory / f"{stream}.jsonl").open("a+", encoding="utf-8", newline="\n")
            handle.truncate(self.sizes.get(stream, 0))  # what the saved state covers, no more
            handle.seek(0, os.SEEK_END)
            self.files[stream] = handle
        return self.files[stream]

    def schema(self, table: Table, mode: Mode) -> None:
        self._file(table.name)

    def records(self, stream: str, rows: list[dict[str, Any]], time_extracted: str,
                version: int | None = None) -> None:
        dumps = fast_json.dumps
        self._file(stream).write("".join([dumps(row) + "\n" for row in rows]))

    def activate_version(self, stream: str, version: int) -> None:
        """Files hold rows only: a full read appends every row again, deleted ones stay in earlier lines."""

    def state(self, state: dict[str, Any]) -> None:
        for stream, handle in self.files.items():
            handle.flush()
            os.fsync(handle.fileno())
            self.sizes[stream] = handle.tell()
        state["files"] = dict(self.sizes)
        temporary = self.directory / (self.STATE_FILE + ".tmp")
        temporary.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(temporary, self.directory / self.STATE_FILE)

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()
        self.files.clear()
