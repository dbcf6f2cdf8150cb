"""A bulk run's progress in a checkpoint file, so an interrupted run resumes where it stopped.

The journal holds the run's id (which seeds the client-assigned row ids, so a resumed Bulk Create
sends the same ids again and a chunk that landed before the crash is recognised, never doubled),
a digest of the rows and chunk size (a journal never resumes a different run), and the chunks
that are done. It is rewritten atomically (a temporary file, then ``os.replace``) after every
chunk, so a crash or a killed worker leaves either the old or the new state, never half of one.

A connection that shares its state on Redis (``sharedStateUrl``) keeps the journal there instead,
under the journal file's name (:func:`open_journal`), so any worker of the fleet resumes the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d365_components.connections.shared_state import InProcessState, SharedState
from d365_components.errors import FieldError, InputValidationError

__all__ = ["DEFAULT_DIRECTORY", "Journal", "finish_default_journal", "interrupted_message", "open_journal",
           "rows_digest", "with_default_journal"]

_VERSION = 1
#: where the CLI keeps a journal for each bulk run it starts (relative to the working directory)
DEFAULT_DIRECTORY = Path(".d365") / "journals"


def rows_digest(key: str, entity_type: str, rows: list[dict[str, Any]], chunk_size: int, keys: tuple[str, ...]) -> str:
    """What makes two runs the same run: action, table, rows, chunk size and key columns."""
    digest = hashlib.sha256()
    digest.update(json.dumps([key, entity_type, chunk_size, list(keys)]).encode())
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class Journal:
    """The checkpoint of one bulk run. ``path`` None keeps it in memory only (no file given)."""

    path: Path | None
    digest: str
    run_id: str
    done: set[int] = field(default_factory=set)
    #: a shared store keeping the journal under ``str(path)`` instead of a file
    store: SharedState | None = None

    @classmethod
    def open(cls, path: str | None, digest: str, run_id: str | None) -> Journal:
        """The journal at ``path`` when it holds this run; a new one otherwise (no file yet)."""
        if path is None:
            return cls(None, digest, run_id or str(uuid.uuid4()))
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(file, digest, run_id or str(uuid.uuid4()))
        except OSError as exc:
            raise InputValidationError([FieldError("/journalFile", f"cannot be read: {exc.strerror or exc}")]) from None
        return cls._resumed(file, text, digest, run_id)

    @classmethod
    def open_shared(cls, store: SharedState, name: str, digest: str, run_id: str | None) -> Journal:
        """The journal kept in ``store`` under ``name`` when it holds this run; a new one otherwise."""
        text = store.read(f"journal:{name}")
        if text is None:
            return cls(Path(name), digest, run_id or str(uuid.uuid4()), store=store)
        journal = cls._resumed(Path(name), text, digest, run_id)
        journal.store = store
        return journal

    @classmethod
    def _resumed(cls, file: Path, text: str, digest: str, run_id: str | None) -> Journal:
        try:
            state = json.loads(text)
            saved_digest, saved_id = str(state["digest"]), str(uuid.UUID(str(state["runId"])))
            done = {int(i) for i in state["done"]}
        except (ValueError, KeyError, TypeError):
            raise InputValidationError([FieldError("/journalFile", "is not a bulk run journal (remove it to start over)")]) from None
        if saved_digest != digest:
            raise InputValidationError([FieldError(
                "/journalFile", "holds the progress of a different run (other rows, table or chunk size); "
                "give another file, or remove it to start over")])
        if run_id is not None and str(uuid.UUID(run_id)) != saved_id:
            raise InputValidationError([FieldError("/runId", "differs from the run id kept in the journal file")])
        return cls(file, digest, saved_id, done)

    def mark(self, chunk: int) -> None:
        """Record ``chunk`` as done (and save at once)."""
        self.done.add(chunk)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        state = {"version": _VERSION, "digest": self.digest, "runId": self.run_id, "done": sorted(self.done)}
        if self.store is not None:
            self.store.write(f"journal:{self.path}", json.dumps(state))
            return
        directory = self.path.parent if str(self.path.parent) else Path(".")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".journal-", dir=directory)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(state, out)
            os.replace(temporary, self.path)
        except OSError as exc:
            raise InputValidationError([FieldError("/journalFile", f"cannot be written: {exc.strerror or exc}")]) from None


def open_journal(connection: Any, path: str | None, digest: str, run_id: str | None) -> Journal:
    """The run's journal: in the connection's shared store when it has one (Redis), else the file."""
    shared = getattr(connection, "shared", None)
    if path is not None and shared is not None and not isinstance(shared, InProcessState):
        return Journal.open_shared(shared, path, digest, run_id)
    return Journal.open(path, digest, run_id)


# -- the CLI's default journal ------------------------------------------------------------------


def with_default_journal(key: str, inputs: Any, schema: dict[str, Any]) -> tuple[Any, Path | None, bool]:
    """For the CLI: ``(inputs, journal path, made here)``. An action that takes ``journalFile``
    gets one named after the action and a digest of its inputs when none is given, so running
    the same command again resumes it."""
    if not isinstance(inputs, dict) or "journalFile" not in schema.get("properties", {}):
        return inputs, None, False
    if inputs.get("journalFile"):
        return inputs, Path(str(inputs["journalFile"])), False
    text = json.dumps([key, inputs], sort_keys=True, default=str, separators=(",", ":"))
    path = DEFAULT_DIRECTORY / f"{key.rsplit('.', 1)[-1]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    return {**inputs, "journalFile": str(path)}, path, True


def finish_default_journal(path: Path | None, made_here: bool, output: Any) -> None:
    """Remove a journal the CLI made once its run is complete (running the command again then
    writes again, as a user expects); a journal the user named is kept."""
    if path is not None and made_here and isinstance(output, dict) and output.get("nextChunk", 0) is None:
        path.unlink(missing_ok=True)


def interrupted_message(path: Path, argv: list[str]) -> str:
    """What the CLI prints on Ctrl-C during a journaled run: where the progress is, and the command."""
    return (f"d365: interrupted; the progress is kept in {path}. Resume it (no row is written twice) with:\n"
            f"  d365 {shlex.join(argv)}")
