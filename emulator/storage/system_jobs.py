"""The system-job tables: `asyncoperation` (System Job) and `bulkdeleteoperation` (Bulk Delete Operation).

Added to a live schema once by `add_tables(store)` (messages/built_in.py installs it in every new
store; events/webhook_tables.py calls it too, as webhook deliveries are system jobs). A job's
statecode/statuscode follow Dataverse: Ready/Waiting For Resources -> Locked/In Progress ->
Completed/Succeeded (or Failed).
"""

from __future__ import annotations

from d365_components.emulator.storage.columns import (
    LookupSpec,
    choice_column,
    datetime_column,
    entity_name_column,
    guid_column,
    integer_column,
    memo_column,
    state_option_sets,
    string_column,
)
from d365_components.emulator.storage.store import Store
from d365_components.emulator.storage.table_builder import TableBuilder

BULK_DELETE = 13                       # asyncoperation.operationtype: Bulk Delete
READY, LOCKED, COMPLETED = 0, 2, 3     # statecode
WAITING_FOR_RESOURCES, IN_PROGRESS, SUCCEEDED, FAILED = 0, 20, 30, 31   # statuscode
OPERATION_TYPES = {1: "System Event", 10: "Workflow", 12: "Update Match Code", 13: "Bulk Delete",
                   54: "Execute Async Request"}
ASYNC_STATES = state_option_sets({0: "Ready", 1: "Suspended", 2: "Locked", 3: "Completed"}, {
    0: ("Waiting For Resources", 0), 10: ("Waiting", 1), 20: ("In Progress", 2), 21: ("Pausing", 2),
    22: ("Canceling", 2), 30: ("Succeeded", 3), 31: ("Failed", 3), 32: ("Canceled", 3)})
BULK_DELETE_STATES = state_option_sets({0: "Ready", 1: "Suspended", 2: "Locked", 3: "Completed"}, {
    0: ("Waiting For Resources", 0), 10: ("Waiting", 1), 20: ("In Progress", 2), 21: ("Pausing", 2),
    22: ("Canceling", 2), 30: ("Succeeded", 3), 31: ("Failed", 3), 32: ("Canceled", 3)})


def add_tables(store: Store) -> None:
    """Add asyncoperation and bulkdeleteoperation to a live schema (once)."""
    schema = store.schema
    if "asyncoperation" in schema.tables and "bulkdeleteoperation" in schema.tables:
        return
    builder = TableBuilder(schema)
    if "asyncoperation" not in schema.tables:
        owning = [LookupSpec("owningextensionid", {"sdkmessageprocessingstep": (
            "sdkmessageprocessingstep_asyncoperations", "owningextensionid_sdkmessageprocessingstep")},
            "Owning Extension")] if "sdkmessageprocessingstep" in schema.tables else []
        builder.table("asyncoperation", "asyncoperations", "asyncoperationid", "name", 4700, "System Job", "System Jobs", [
            string_column("name", 256, "System Job Name"), memo_column("message", 100000, "Message"),
            memo_column("friendlymessage", 100000, "Friendly message"), integer_column("errorcode", "Error Code"),
            integer_column("retrycount", "Retry Count", 0), integer_column("depth", "Depth", 0),
            datetime_column("startedon", "Started On"), datetime_column("completedon", "Completed On"),
            guid_column("correlationid", "Correlation Id"), guid_column("regardingobjectid", "Regarding"),
            entity_name_column("primaryentitytype", "Entity Type"), string_column("messagename", 160, "Message Name"),
            memo_column("data", 1073741823, "Data"),
            choice_column("operationtype", OPERATION_TYPES, "System Job Type"), *owning,
        ], state=ASYNC_STATES, change_tracking=False, schema_name="AsyncOperation")
    if "bulkdeleteoperation" not in schema.tables:
        builder.table("bulkdeleteoperation", "bulkdeleteoperations", "bulkdeleteoperationid", "name", 4424,
                      "Bulk Delete Operation", "Bulk Delete Operations", [
            string_column("name", 256, "Name"), integer_column("successcount", "Success Count", 0),
            integer_column("failurecount", "Failure Count", 0), integer_column("processingqeindex", "Processing QE Index", 0),
            memo_column("orderedquerysetxml", 1073741823, "Query Set"),
            LookupSpec("asyncoperationid", {"asyncoperation": ("BulkDeleteOperation_AsyncOperation", "asyncoperationid")},
                       "System Job"),
        ], state=BULK_DELETE_STATES, ownership="UserOwned", change_tracking=False, schema_name="BulkDeleteOperation")
    builder.finish()
    for name in ("asyncoperation", "bulkdeleteoperation"):
        store.create_table(schema.tables[name])
