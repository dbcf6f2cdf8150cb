"""The sdkmessage and sdkmessagefilter rows a real org reports, generated from the table model.

A client asks which tables support a message the way Microsoft's docs recommend,
`GET sdkmessagefilters?$filter=sdkmessageid/name eq 'CreateMultiple' and primaryobjecttypecode eq 'account'`
(non-empty = supported), so the rows must agree with what the emulator serves:

- Create, Retrieve, RetrieveMultiple, Update, Delete, Upsert: every table;
- Assign, GrantAccess, ModifyAccess, RevokeAccess: user-owned tables; SetState: tables with a statecode;
- CreateMultiple, UpdateMultiple, UpsertMultiple: the tables they are bound to (messages/bulk.py);
- DeleteMultiple: elastic tables only, and the emulator models none, so the message has no filter;
- Associate, Disassociate, BulkDelete: one filter on no table (`none`), as Dataverse lists them.

`install(store)` runs for every new store (messages/built_in.py), after the seed: it reuses the
messages and filters already there and adds the missing ones, so it is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable

from d365_components.emulator import defaults
from d365_components.emulator.messages.registry import is_bound_action
from d365_components.emulator.storage.schema import Table
from d365_components.emulator.storage.store import Store


def _every(table: Table) -> bool:
    return True


def _user_owned(table: Table) -> bool:
    return table.ownership == "UserOwned"


def _stateful(table: Table) -> bool:
    return "statecode" in table.columns


def _bound(message: str) -> Callable[[Table], bool]:
    return lambda table: is_bound_action(message, table.logical_name)


def _elastic(table: Table) -> bool:
    return False          # the emulator models no elastic tables


NO_TABLE = "none"
MESSAGES: dict[str, Callable[[Table], bool] | None] = {   # None: one filter on no table
    "Create": _every, "Retrieve": _every, "RetrieveMultiple": _every, "Update": _every, "Delete": _every,
    "Upsert": _every, "Assign": _user_owned, "GrantAccess": _user_owned, "ModifyAccess": _user_owned,
    "RevokeAccess": _user_owned, "SetState": _stateful,
    "CreateMultiple": _bound("CreateMultiple"), "UpdateMultiple": _bound("UpdateMultiple"),
    "UpsertMultiple": _bound("UpsertMultiple"), "DeleteMultiple": _elastic,
    "Associate": None, "Disassociate": None, "BulkDelete": None,
}


def install(store: Store) -> None:
    """Add the missing sdkmessage and sdkmessagefilter rows for every table of the store's schema."""
    if "sdkmessage" not in store.schema.tables or "sdkmessagefilter" not in store.schema.tables:
        return
    system = {"user": defaults.APP_USER_ID}
    with store.transaction():
        ids = {r["name"]: r["sdkmessageid"] for r in store.select("sdkmessage", columns="t0.name, t0.sdkmessageid")}
        present = {(r["sdkmessageid"], r["primaryobjecttypecode"])
                   for r in store.select("sdkmessagefilter", columns="t0.sdkmessageid, t0.primaryobjecttypecode")}
        for message, supports in MESSAGES.items():
            if message not in ids:
                ids[message] = store.insert("sdkmessage", {
                    "name": message, "categoryname": message, "isprivate": False, "isactive": True,
                    "autotransact": True}, **system)["sdkmessageid"]
            tables = [NO_TABLE] if supports is None else [
                t.logical_name for t in store.schema.tables.values() if supports(t)]
            for name in tables:
                if (ids[message], name) in present:
                    continue
                store.insert("sdkmessagefilter", {
                    "name": f"{message} {name}", "primaryobjecttypecode": name, "secondaryobjecttypecode": NO_TABLE,
                    "sdkmessageid": ids[message], "isvisible": True, "iscustomprocessingstepallowed": True}, **system)
