"""The Microsoft Dynamics 365 component: its display data and the hooks that register it.

The built-ins go through the same hooks as any third-party plugin. Every module of the
``actions``, ``triggers`` and ``connections`` packages is scanned for definitions, so adding an
action means adding a class — nothing to list here.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from d365_components.definitions import Action, Component, Connection, DataSource, Trigger
from d365_components.hookspecs import Register, hookimpl
from d365_components.registry import definitions_in
from d365_components.version import __version__

COMPONENT = Component(
    key="dynamics365",
    label="Microsoft Dynamics 365",
    description=(
        "Create, read, update, upsert and delete Dataverse rows; query with OData and FetchXML; "
        "run batches and bulk loads; read and change metadata; run CRM workflows (leads, "
        "opportunities, cases, queues, activities); and start flows from webhooks or changes."
    ),
    icon=(
        "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 64 64'>"
        "<path fill='%23002050' d='M14 4l36 13v30L14 60z'/>"
        "<path fill='%230b53ce' d='M14 4l36 13-16 7-20-6z'/>"
        "<path fill='%232266e3' d='M50 47L14 60l20-14 16-29z'/></svg>"
    ),
    documentation_url="https://learn.microsoft.com/power-apps/developer/data-platform/webapi/overview",
    version=__version__,
    category="CRM",
)


def _modules(package: str) -> list[ModuleType]:
    """Every public module of one of our packages, imported (sorted for a stable order)."""
    root = importlib.import_module(f"d365_components.{package}")
    names = sorted(
        info.name for info in pkgutil.iter_modules(root.__path__) if not info.name.startswith("_")
    )
    return [importlib.import_module(f"{root.__name__}.{name}") for name in names]


@hookimpl
def register_components(register: Register) -> None:
    register(COMPONENT)


@hookimpl
def register_connections(register: Register) -> None:
    for definition in definitions_in(_modules("connections"), Connection):
        register(definition)


@hookimpl
def register_actions(register: Register) -> None:
    for definition in definitions_in(_modules("actions"), Action):
        register(definition)


@hookimpl
def register_triggers(register: Register) -> None:
    for definition in definitions_in(_modules("triggers"), Trigger):
        register(definition)


@hookimpl
def register_data_sources(register: Register) -> None:
    for package in ("actions", "triggers", "connections"):
        for definition in definitions_in(_modules(package), DataSource):
            register(definition)
