"""How every ``d365`` command reads a JSON option: inline text, ``@file``, ``@~/file`` or ``@-``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["load_json"]


def load_json(value: str, option: str) -> Any:
    """``--input '{"a": 1}'`` or ``--input @file.json`` (``@-`` reads stdin; ``@~/x`` is expanded,
    as the shell does not expand ``~`` after ``@``)."""
    try:
        if value.startswith("@"):
            source = value[1:]
            text = sys.stdin.read() if source == "-" else Path(source).expanduser().read_text(encoding="utf-8")
        else:
            text = value
        return json.loads(text)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}", param_hint=option) from None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", param_hint=option) from None
