"""The tables webhooks need, added to a live schema once: `sdkmessageprocessingstepimage` (pre/post images) and `asyncoperation` (system jobs, defined in storage/system_jobs.py)."""

from __future__ import annotations

from d365_components.emulator.storage import system_jobs
from d365_components.emulator.storage.columns import (
    LookupSpec,
    choice_column,
    memo_column,
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
    for rel in builder.pending:
        if rel.schema_name not in schema.relationships:
            schema.add_relationship(rel)
    schema.link()
    store.create_table(schema.tables["sdkmessageprocessingstepimage"])
    system_jobs.add_tables(store)
