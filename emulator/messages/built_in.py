"""The built-in messages, listed explicitly: importing a module registers its messages, and each new
store gets the tables those messages need. A new message module is added to both lists here."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from d365_components.emulator.messages import (
    bulk,
    bulk_delete,
    crm,
    crm_queues,
    crm_rollups,
    crm_tables,
    file_blocks,
    record_counts,
    sdk_messages,
)
from d365_components.emulator.records import files
from d365_components.emulator.storage import system_jobs
from d365_components.emulator.storage.store import Store

MESSAGE_MODULES: tuple[ModuleType, ...] = (bulk, bulk_delete, crm, crm_queues, crm_rollups, file_blocks,
                                         record_counts)
TABLE_INSTALLERS: tuple[Callable[[Store], None], ...] = (crm_tables.add_tables, files.install, system_jobs.add_tables,
                                                         sdk_messages.install)   # last: it lists every table


def prepare_store(store: Store) -> None:
    """Add the tables the built-in messages use to a new store (each installer is idempotent)."""
    for install in TABLE_INSTALLERS:
        install(store)
