"""The README's promises: its test command is what CI runs, and its plugin example works."""

from __future__ import annotations

import re
import types
from pathlib import Path

from d365_components.registry import build_registry, make_plugin_manager

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    demo, tests = (block.strip() for block in _blocks("sh")[:2])
    assert "d365 demo" in demo and "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_plugin_example_registers_and_publishes() -> None:
    source = next(block for block in _blocks("python") if "hookimpl" in block)
    module = types.ModuleType("acme_d365_plugin")
    exec(compile(source, "README.md", "exec"), module.__dict__)
    pm = make_plugin_manager(entry_points=False)
    pm.register(module)
    registry = build_registry(pm)
    assert registry.actions["acme.count_rows"].input_schema()["required"] == ["entityType"]


def test_testing_kit_example_runs(run_action) -> None:
    source = next(block for block in _blocks("python") if "def test_new_accounts_are_found" in block)
    namespace: dict = {}
    exec(compile(source, "README.md", "exec"), namespace)
    namespace["test_new_accounts_are_found"](run_action)
