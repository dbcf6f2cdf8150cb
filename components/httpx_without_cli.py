"""Import httpx without its command-line tool (cold start, issue 16).

httpx's package ``__init__`` imports ``httpx._main``, its command-line client, which imports click,
rich and pygments when they are installed (they are: our CLI uses click and rich). That was about
a quarter of the library's import time, for a tool a library never runs. While
``sys.modules["httpx._main"]`` is None that import fails the way httpx expects when its ``cli``
extra is missing (``httpx.main`` then says how to install it); the entry is removed right after,
so an explicit ``import httpx._main`` still works. The ``httpx`` command runs in a process of its
own and is not affected. Imported first by the package root; a process that imported httpx
before us keeps it as it is.
"""

import sys

_HIDDEN = "httpx" not in sys.modules and "httpx._main" not in sys.modules
if _HIDDEN:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # None: "not importable"

import httpx  # noqa: E402  (after hiding its CLI, which is the point of this module)

if _HIDDEN and sys.modules.get("httpx._main", "") is None:
    del sys.modules["httpx._main"]

__all__ = ["httpx"]
