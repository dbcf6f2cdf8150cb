"""The tables the CRM messages use, added to a live schema once by `add_tables(store)`: `opportunityclose`, `incidentresolution` and `activityparty` (the close messages call it the first time they run; the app calls it for each new store)."""

from __future__ import annotations

from d365_components.emulator.storage.columns import (
    ColumnSpec,
    LookupSpec,
    StateOptionSets,
    choice_column,
    datetime_column,
    integer_column,
    memo_column,
    money_column,
    state_option_sets,
    string_column,
)
from d365_components.emulator.storage.store import Store
from d365_components.emulator.storage.table_builder import TableBuilder

PARTY_RELATIONSHIP = {"systemuser": "system_user"}
NEW_TABLES = ("opportunityclose", "incidentresolution", "activityparty")
PARTICIPATION = {1: "Sender", 2: "To Recipient", 3: "CC Recipient", 4: "BCC Recipient", 5: "Required attendee",
                 6: "Optional attendee", 7: "Organizer", 8: "Regarding", 9: "Owner", 10: "Resource", 11: "Customer"}


# ---- the tables the close messages need --------------------------------------------------------

def add_tables(store: Store) -> None:
    """Add opportunityclose, incidentresolution and activityparty to a live schema, once.

    activityparty rows are the senders, recipients and attendees of emails, phone calls and
    appointments: `email_activity_parties` (deep insert) with `partyid_<table>@odata.bind`."""
    schema = store.schema
    if all(name in schema.tables for name in NEW_TABLES):
        return

    def common() -> list[ColumnSpec]:
        return [string_column("subject", 200, "Subject"), memo_column("description", 2000, "Description"),
                datetime_column("actualstart", "Actual Start"), datetime_column("actualend", "Actual End"),
                integer_column("actualdurationminutes", "Actual Duration", 0, 2147483647),
                choice_column("prioritycode", {0: "Low", 1: "Normal", 2: "High"}, "Priority")]

    def closed() -> StateOptionSets:
        return state_option_sets({0: "Open", 1: "Completed", 2: "Canceled"},
                                 {1: ("Open", 0), 2: ("Completed", 1), 3: ("Canceled", 2)})

    with store.lock:
        builder = TableBuilder(schema)
        if "opportunityclose" not in schema.tables:
            builder.table("opportunityclose", "opportunitycloses", "activityid", "subject", 4208,
                          "Opportunity Close", "Opportunity Closes", [
                *common(), money_column("actualrevenue", "Actual Revenue"), string_column("competitorid", 100, "Competitor"),
                LookupSpec("opportunityid", {"opportunity": ("Opportunity_OpportunityClose", "opportunityid")}, "Opportunity"),
            ], activity=True, state=closed(), schema_name="OpportunityClose")
        if "incidentresolution" not in schema.tables:
            builder.table("incidentresolution", "incidentresolutions", "activityid", "subject", 4206,
                          "Case Resolution", "Case Resolutions", [
                *common(), integer_column("timespent", "Time Spent", 0, 2147483647),
                LookupSpec("incidentid", {"incident": ("Incident_IncidentResolutions", "incidentid")}, "Case"),
            ], activity=True, state=closed(), schema_name="IncidentResolution")
        if "activityparty" not in schema.tables:
            activities = [t for t in ("email", "phonecall", "appointment", "task") if t in schema.tables]
            parties = [t for t in ("account", "contact", "lead", "systemuser", "queue") if t in schema.tables]
            builder.table("activityparty", "activityparties", "activitypartyid", "addressused", 135,
                          "Activity Party", "Activity Parties", [
                string_column("addressused", 320, "Address"),
                choice_column("participationtypemask", PARTICIPATION, "Participation Type"),
                LookupSpec("activityid", {t: (f"{t}_activity_parties", f"activityid_{t}") for t in activities}, "Activity"),
                LookupSpec("partyid", {t: (f"{PARTY_RELATIONSHIP.get(t, t)}_activity_parties", f"partyid_{t}") for t in parties},
                  "Party"),
            ], ownership="None", change_tracking=False, schema_name="ActivityParty")
        for rel in builder.pending:
            if rel.schema_name not in schema.relationships:
                schema.add_relationship(rel)
        schema.link()
        for name in NEW_TABLES:
            store.create_table(schema.tables[name])
