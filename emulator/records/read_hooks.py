"""Work done before a table is read, for values Dataverse moves with time (an SLA KPI turns
Nearing Noncompliance, then Noncompliant, as the clock passes its warning and failure times).

A higher layer registers `before_read(table, hook)`; `handler.handle` runs the table's hooks before
serving a GET on it."""

from __future__ import annotations

from collections.abc import Callable

from d365_components.emulator.storage.store import Store

ReadHook = Callable[[Store], None]
_hooks: dict[str, list[ReadHook]] = {}


def before_read(table: str, hook: ReadHook) -> None:
    """Run `hook(store)` before each GET on `table` (once per hook)."""
    hooks = _hooks.setdefault(table, [])
    if hook not in hooks:
        hooks.append(hook)


def run_hooks(store: Store, table: str) -> None:
    for hook in _hooks.get(table, ()):
        hook(store)
