"""Optional parts of the install: the emulator and the webhook host are extras of the core.

A runtime embeds the core (actions, connections, triggers, manifests, the CLI) without any
server. A command or API that needs an extra calls :func:`require` first, so a missing package
is one line that says what to install, never an import traceback.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "missing", "require"]

#: extra -> the top-level modules it brings (what ``pip install 'd365-components[extra]'`` adds)
EXTRAS: dict[str, tuple[str, ...]] = {
    "emulator": ("starlette", "uvicorn", "trustme", "jwt", "lark"),
    "webhook": ("starlette", "uvicorn"),
    "redis": ("redis",),
    "celery": ("celery", "redis"),
}


class MissingExtraError(ImportError):
    """``what`` needs an extra that is not installed; the message says how to install it."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the {extra} extra: pip install 'd365-components[{extra}]'")
        self.extra = extra


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``what`` (e.g. ``d365 emulator``) if ``extra`` is missing."""
    if missing(extra):
        raise MissingExtraError(what, extra)
