"""Helpers for tests that install this repository as a user would, in a fresh venv."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).parents[2]
_IGNORED = shutil.ignore_patterns(".venv", ".git", "node_modules", "__pycache__", "*.egg-info", "build", "dist",
                                  ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis")


def copy_of_the_repository(destination: Path) -> Path:
    """The source tree without venvs, caches and build output (a build never writes into ours)."""
    return Path(shutil.copytree(ROOT, destination, ignore=_IGNORED))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what points Python at our venv or source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, **extra}
