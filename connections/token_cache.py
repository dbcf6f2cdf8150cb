"""msal's token cache persisted to one file: what ``tokenCachePath`` and the CLI's sign-in keep.

Its own module because it subclasses msal's cache: msal (and requests under it) then load when a
file cache is used, not whenever the connections are imported (cold start, issue 16).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

import msal

from d365_components.redaction import get_logger

__all__ = ["FileTokenCache"]

log = get_logger("d365_components.connections.tokens")


class FileTokenCache(msal.SerializableTokenCache):  # type: ignore[misc]  # msal ships no types
    """msal's cache persisted to one file (mode 0600), rewritten atomically after each change."""

    has_state_changed: bool  # set by msal

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self._file_lock = threading.Lock()
        if self.path.exists():
            try:
                self.deserialize(self.path.read_text(encoding="utf-8"))
            except ValueError:
                log.warning("token cache %s is not readable JSON; starting with an empty cache", self.path)

    def save(self) -> None:
        """Write the cache if it changed: a temp file in the same folder, 0600, then rename."""
        with self._file_lock:
            if not self.has_state_changed:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(self.serialize())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self.has_state_changed = False
