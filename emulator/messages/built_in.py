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
    process_flows,
    quote_to_cash,
    record_counts,
    routing,
    sdk_messages,
    sla,
)
from d365_components.emulator.records import files
from d365_components.emulator.storage import system_jobs
from d365_components.emulator.storage.store import Store

MESSAGE_MODULES: tuple[ModuleType, ...] = (bulk, bulk_delete, crm, crm_queues, crm_rollups, file_blocks,
                                         record_counts)
TABLE_INSTALLERS: tuple[Callable[[Store], None], ...] = (crm_tables.add_tables, files.install, system_jobs.add_tables,
                                                         sdk_messages.install)   # last: it lists every table

MESSAGE_MODULES += (process_flows,)
TABLE_INSTALLERS += (process_flows.install,)
MESSAGE_MODULES += (sla,)
TABLE_INSTALLERS += (sla.install,)
MESSAGE_MODULES += (routing,)
TABLE_INSTALLERS = (routing.add_tables, *TABLE_INSTALLERS)   # before sdk_messages, which lists every table
MESSAGE_MODULES += (quote_to_cash,)
TABLE_INSTALLERS = (quote_to_cash.install, *TABLE_INSTALLERS)


def prepare_store(store: Store) -> None:
    """Add the tables the built-in messages use to a new store (each installer is idempotent)."""
    for install in TABLE_INSTALLERS:
        install(store)
