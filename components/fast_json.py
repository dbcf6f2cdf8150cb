"""JSON for bulk data (an extract's pages and rows): orjson when installed, the standard library otherwise.

orjson is an optional speed-up (``pip install d365-components[fast]``): it encodes a row about three
times faster than :mod:`json`, which is most of an extract's own CPU. Both give the same JSON
(compact, UTF-8 text not escaped), so the output does not depend on which one runs. Call them as ``fast_json.dumps``
(not imported by name), so that :func:`use_standard_library` reaches every caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["ENGINE", "dumps", "loads", "use_standard_library"]

#: rows come from a JSON decode: no cycles to look for (check_circular off is a third faster)
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False, default=str).encode

loads: Callable[[bytes | str], Any] = json.loads
dumps: Callable[[Any], str] = _encode
ENGINE = "json"

try:
    import orjson
except ImportError:  # the core install: the standard library
    pass
else:

    def _dumps_fast(value: Any) -> str:
        return str(orjson.dumps(value, default=str).decode("utf-8"))

    loads, dumps, ENGINE = orjson.loads, _dumps_fast, "orjson"


def use_standard_library() -> None:
    """Use :mod:`json` even when orjson is installed (a benchmark of the core install)."""
    global loads, dumps, ENGINE
    loads, dumps, ENGINE = json.loads, _encode, "json"
