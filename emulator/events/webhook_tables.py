"""The tables webhooks need, added to a live schema once: `sdkmessageprocessingstepimage` (pre/post images) and `asyncoperation` (system jobs)."""

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

# ---- the tables webhooks need ------------------------------------------------------------------

def add_tables(store: Store) -> None:
    """Add sdkmessageprocessingstepimage and asyncoperation to a live schema (once)."""
    schema = store.schema
    if "sdkmessageprocessingstepimage" in schema.tables and "asyncoperation" in schema.tables:
        return
    if "sdkmessageprocessingstep" not in schema.tables:
        return

    builder = TableBuilder(schema)
    if "sdkmessageprocessingstepimage" not in schema.tables:
        builder.table("sdkmessageprocessingstepimage", "sdkmessageprocessingstepimages", "sdkmessageprocessingstepimageid",
                      "name", 4615, "Sdk Message Processing Step Image", "Sdk Message Processing Step Images", [
            string_column("name", 256, "Name"), string_column("entityalias", 256, "Entity Alias"), string_column("attributes", 100000, "Attributes"),
            string_column("messagepropertyname", 256, "Message Property Name"), memo_column("description", 256, "Description"),
            choice_column("imagetype", {0: "PreImage", 1: "PostImage", 2: "Both"}, "Image Type"),
            LookupSpec("sdkmessageprocessingstepid", {"sdkmessageprocessingstep": (
                "sdkmessageprocessingstepid_sdkmessageprocessingstepimage", "sdkmessageprocessingstepid")},
              "SDK Message Processing Step"),
        ], ownership="OrganizationOwned", change_tracking=False, schema_name="SdkMessageProcessingStepImage")
    if "asyncoperation" not in schema.tables:
        builder.table("asyncoperation", "asyncoperations", "asyncoperationid", "name", 4700, "System Job", "System Jobs", [
            string_column("name", 256, "System Job Name"), memo_column("message", 100000, "Message"), memo_column("friendlymessage", 100000, "Friendly message"),
            integer_column("errorcode", "Error Code"), integer_column("retrycount", "Retry Count", 0), integer_column("depth", "Depth", 0),
            datetime_column("startedon", "Started On"), datetime_column("completedon", "Completed On"), guid_column("correlationid", "Correlation Id"),
            guid_column("regardingobjectid", "Regarding"), entity_name_column("primaryentitytype", "Entity Type"), string_column("messagename", 160, "Message Name"),
            choice_column("operationtype", {1: "System Event", 10: "Workflow", 12: "Update Match Code", 54: "Execute Async Request"},
              "System Job Type"),
            LookupSpec("owningextensionid", {"sdkmessageprocessingstep": (
                "sdkmessageprocessingstep_asyncoperations", "owningextensionid_sdkmessageprocessingstep")}, "Owning Extension"),
        ], state=state_option_sets({0: "Ready", 1: "Suspended", 2: "Locked", 3: "Completed"}, {
            0: ("Waiting For Resources", 0), 10: ("Waiting", 1), 20: ("In Progress", 2), 21: ("Pausing", 2),
            22: ("Canceling", 2), 30: ("Succeeded", 3), 31: ("Failed", 3), 32: ("Canceled", 3)}),
            change_tracking=False, schema_name="AsyncOperation")
    for rel in builder.pending:
        if rel.schema_name not in schema.relationships:
            schema.add_relationship(rel)
    schema.link()
    for name in ("sdkmessageprocessingstepimage", "asyncoperation"):
        store.create_table(schema.tables[name])
