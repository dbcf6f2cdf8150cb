"""A time limit per request on the store's SQL, like Dataverse's SQL timeout.

`install(conn)` gives a connection a progress handler that interrupts the running statement once
the calling thread's deadline has passed; `time_limit(seconds)` sets that deadline for the SQL the
current thread runs inside it, and turns the interruption into Dataverse's timeout error. The
deadline is per thread (each request runs in its own worker thread), and it is cleared the moment
it fires, so the rollback that follows an interrupted statement runs to the end.

SQLite calls progress handlers while it executes statements, not while it plans them: a query
too big to plan quickly is refused before it gets here (`query.complexity`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from d365_components.emulator.protocol.errors import DataverseError

QUERY_SECONDS = 120.0          # Dataverse's SQL timeout is 2 minutes (UNCONFIRMED for every org)
PROGRESS_STEPS = 10_000        # SQLite virtual-machine steps between two checks of the clock
# UNCONFIRMED: the code and message Dataverse answers with when SQL Server times out a query are
# taken from OLE DB's DB_E_ABORTLIMITREACHED (0x80040E31, "SQL timeout expired"); the status is ours.
TIMEOUT_CODE = "0x80040E31"
TIMEOUT_MESSAGE = "SQL timeout expired."

_deadlines = threading.local()


def install(conn: sqlite3.Connection) -> None:
    conn.set_progress_handler(_over_time, PROGRESS_STEPS)


def _over_time() -> int:
    deadline: float | None = getattr(_deadlines, "at", None)
    if deadline is None or time.monotonic() < deadline:
        return 0
    _deadlines.at = None
    _deadlines.fired = True
    return 1


@contextmanager
def time_limit(seconds: float = QUERY_SECONDS) -> Iterator[None]:
    """SQL run by this thread inside the block stops after `seconds`: 500 with the timeout error."""
    outer = getattr(_deadlines, "at", None)
    _deadlines.at = time.monotonic() + seconds if outer is None else min(outer, time.monotonic() + seconds)
    _deadlines.fired = False
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not getattr(_deadlines, "fired", False):
            raise
        raise DataverseError(500, TIMEOUT_CODE, TIMEOUT_MESSAGE) from exc
    finally:
        _deadlines.at = outer
