"""CRM messages that move rows through their life cycle the way Dataverse does (§8).

* `leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead` creates the account, contact and opportunity
  asked for (linked to each other and to the lead), closes the lead as Qualified and answers the
  created references as a `crmbaseentity` collection.
* `WinOpportunity` / `LoseOpportunity` record an `opportunityclose` activity and close the
  opportunity as Won / Lost (actual revenue and close date set).
* `CloseIncident` records an `incidentresolution` activity and resolves the case.
* `queues(<id>)/Microsoft.Dynamics.CRM.AddToQueue` puts a case or activity in a queue (moving it
  if it already waits in one) and answers its `QueueItemId`; `PickFromQueue` assigns a worker
  (and can take the item out of the queue); `queueitems(<id>)/...ReleaseToQueue` clears it.
* `CalculateRollupField(Target=@p1,FieldName=@p2)` recomputes the account rollups `opendeals`
  and `openrevenue` from the account's open opportunities, and answers the row with the value,
  `<field>_date` and `<field>_state`.

Each message runs in one transaction, so a failure leaves nothing half done. A row in the wrong
state is refused as Dataverse refuses it (400); a bad status reason with 0x80048408.

`opportunityclose`, `incidentresolution` and `activityparty` are added to a live schema by
`add_tables(store)` (the close messages call it the first time they run; call it when the app is
created to have them from the start). Importing this module registers the messages.
"""

from __future__ import annotations

from typing import Any

from d365_components.emulator.messages.registry import NAMESPACE, Bound, register_action, register_function
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    INVALID_OPERATION,
    INVALID_STATE_STATUS,
    DataverseError,
    bad_request,
    record_not_found,
)
from d365_components.emulator.protocol.literals import GUID_RE
from d365_components.emulator.records.representation import represent
from d365_components.emulator.records.rows import resolve_reference
from d365_components.emulator.records.write import convert_body
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.columns import (
    ColumnSpec,
    LookupSpec,
    choice_column,
    datetime_column,
    integer_column,
    memo_column,
    money_column,
    state_option_sets,
    string_column,
)
from d365_components.emulator.storage.schema import Table
from d365_components.emulator.storage.store import Store, utc_now
from d365_components.emulator.storage.table_builder import TableBuilder

QUALIFIED = 1
WON, LOST = 1, 2
RESOLVED = 1
COMPLETED, COMPLETED_STATUS = 1, 2
QUEUE_TARGETS = ("task", "email", "phonecall", "appointment", "incident")
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

    closed = lambda: state_option_sets({0: "Open", 1: "Completed", 2: "Canceled"},  # noqa: E731
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


# ---- parameters ---------------------------------------------------------------------------------

def _required(params: dict, name: str, message: str) -> Any:
    if params.get(name) is None:
        raise bad_request(f"Required parameter '{name}' of the message '{message}' is missing.", INVALID_ARGUMENT)
    return params[name]


def _boolean(params: dict, name: str, message: str) -> bool:
    value = _required(params, name, message)
    if not isinstance(value, bool):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean' "
                          f"(parameter '{name}').")
    return value


def _integer(params: dict, name: str, message: str) -> int:
    value = _required(params, name, message)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32' "
                          f"(parameter '{name}').")
    return value


def _entity(params: dict, name: str, message: str) -> dict:
    value = _required(params, name, message)
    if not isinstance(value, dict):
        raise bad_request(f"The parameter '{name}' must be an entity (a JSON object).")
    return value


def _reference(ctx: Ctx, value: Any, what: str, targets: tuple[str, ...] | None = None) -> tuple[Table, dict]:
    """An entity parameter -> (table, row): `{'@odata.id': 'accounts(<id>)'}`, a bind URL, or
    `{"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": "<id>"}`."""
    if isinstance(value, str):
        return resolve_reference(ctx, value, targets, what)
    if not isinstance(value, dict):
        raise bad_request(f"The parameter '{what}' must be an entity reference.")
    if value.get("@odata.id"):
        return resolve_reference(ctx, value["@odata.id"], targets, what)
    typed = str(value.get("@odata.type", "")).lstrip("#").removeprefix(NAMESPACE)
    if not typed and targets and len(targets) == 1:
        typed = targets[0]
    table = ctx.schema.tables.get(typed)
    if table is None:
        raise bad_request(f"The parameter '{what}' needs '@odata.type' naming its table "
                          "(EdmEntityObject passed should have the key property value set).")
    if targets is not None and table.logical_name not in targets:
        raise bad_request(f"The parameter '{what}' cannot be a '{table.logical_name}': expected "
                          f"{' or '.join(targets)}.")
    row_id = value.get(table.primary_id) or (value.get("activityid") if table.is_activity else None)
    if not isinstance(row_id, str) or not GUID_RE.match(row_id):
        raise bad_request(f"EdmEntityObject passed should have the key property value set ('{what}' has no "
                          f"'{table.primary_id}').")
    row = ctx.store.get(table.logical_name, row_id.lower())
    if row is None:
        raise record_not_found(table.logical_name, row_id.lower())
    return table, row


def _optional_reference(ctx: Ctx, params: dict, name: str, targets: tuple[str, ...]) -> tuple[Table, dict] | None:
    """A reference given as `Name` (entity) or `Name@odata.bind` (URL), or None."""
    if params.get(name + "@odata.bind") is not None:
        return _reference(ctx, params[name + "@odata.bind"], name, targets)
    if params.get(name) is not None:
        return _reference(ctx, params[name], name, targets)
    return None


def _status(ctx: Ctx, table: Table, row_id: str, state: int, status: int) -> int:
    """The status reason to set with `state`; -1 means the state's default (as in Dataverse)."""
    options = table.columns["statuscode"].option_set.options
    valid = [o.value for o in options if o.state == state]
    if status == -1:
        return valid[0]
    if status not in valid:
        state_label = table.columns["statecode"].option_set.label(state)
        raise bad_request(f"{status} is not a valid status code for state code {table.schema_name}State."
                          f"{state_label} on {table.logical_name} with Id {row_id}.", INVALID_STATE_STATUS)
    return status


def _not_open(table: Table, row: dict, doing: str) -> DataverseError:
    state = table.columns["statecode"].option_set.label(row.get("statecode"))
    return DataverseError(400, INVALID_OPERATION,
                          f"Cannot {doing} the {table.logical_name} with Id {row[table.primary_id]} because it is "
                          f"{state}, not open.")


def _insert(ctx: Ctx, table: str, values: dict) -> dict:
    return ctx.store.insert(table, {k: v for k, v in values.items() if v is not None},
                            user=ctx.user_id, on_behalf_of=ctx.on_behalf_of)


def _update(ctx: Ctx, table: str, row: dict, values: dict) -> dict:
    return ctx.store.update(table, row[ctx.schema.tables[table].primary_id], values, user=ctx.user_id,
                            on_behalf_of=ctx.on_behalf_of, before=row)[1]


def _date_only(value: str) -> str:
    return value[:10] + "T00:00:00Z"


# ---- QualifyLead --------------------------------------------------------------------------------

def qualify_lead(ctx: Ctx, params: dict, bound: Bound | None) -> Reply:
    """Create what the flags ask for from the lead's data, link it all, close the lead as Qualified."""
    assert bound is not None, "registered bound to lead"
    lead_table, lead = bound.table, bound.row
    if lead is None:
        raise bad_request("QualifyLead is bound to one lead: leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead.")
    create_account = _boolean(params, "CreateAccount", "QualifyLead")
    create_contact = _boolean(params, "CreateContact", "QualifyLead")
    create_opportunity = _boolean(params, "CreateOpportunity", "QualifyLead")
    status = _integer(params, "Status", "QualifyLead")
    lead_id = lead["leadid"]
    if lead.get("statecode") != 0:
        raise _not_open(lead_table, lead, "qualify")
    status = _status(ctx, lead_table, lead_id, QUALIFIED, status)
    currency = _optional_reference(ctx, params, "OpportunityCurrencyId", ("transactioncurrency",))
    customer = _optional_reference(ctx, params, "OpportunityCustomerId", ("account", "contact"))
    if create_account and not lead.get("companyname"):
        raise bad_request("The lead has no company name, so no account can be created from it (set companyname, or "
                          "qualify with CreateAccount false).", INVALID_ARGUMENT)
    address = {k: lead.get(k) for k in ("address1_line1", "address1_city", "address1_stateorprovince",
                                         "address1_postalcode", "address1_country")}
    created: list[tuple[str, dict]] = []
    with ctx.store.transaction():
        account = contact = opportunity = None
        if create_account:
            account = _insert(ctx, "account", {
                "name": lead["companyname"], "telephone1": lead.get("telephone1"),
                "emailaddress1": lead.get("emailaddress1"), "industrycode": lead.get("industrycode"),
                "originatingleadid": lead_id, **address})
            created.append(("account", account))
        if create_contact:
            contact = _insert(ctx, "contact", {
                "firstname": lead.get("firstname"), "lastname": lead.get("lastname") or lead.get("fullname"),
                "emailaddress1": lead.get("emailaddress1"), "telephone1": lead.get("telephone1"),
                "jobtitle": lead.get("jobtitle"), "originatingleadid": lead_id, **address,
                **({"parentcustomerid": account["accountid"], "parentcustomeridtype": "account"} if account else {})})
            created.append(("contact", contact))
            if account is not None:
                account = _update(ctx, "account", account, {"primarycontactid": contact["contactid"]})
        if create_opportunity:
            buyer = _opportunity_customer(lead, customer, account, contact)
            opportunity = _insert(ctx, "opportunity", {
                "name": lead.get("subject") or lead.get("fullname") or lead.get("companyname") or "Opportunity",
                "description": lead.get("description"), "estimatedvalue": lead.get("estimatedamount"),
                "estimatedclosedate": lead.get("estimatedclosedate"), "originatingleadid": lead_id,
                "customerid": buyer[1], "customeridtype": buyer[0] if buyer[1] else None,
                "parentaccountid": buyer[1] if buyer[0] == "account" else (account["accountid"] if account else None),
                "parentcontactid": contact["contactid"] if contact else (buyer[1] if buyer[0] == "contact" else None),
                "transactioncurrencyid": currency[1]["transactioncurrencyid"] if currency else None})
            created.append(("opportunity", opportunity))
        changes = {"statecode": QUALIFIED, "statuscode": status}
        if account is not None:
            changes["parentaccountid"] = account["accountid"]
        if contact is not None:
            changes["parentcontactid"] = contact["contactid"]
        if opportunity is not None:
            changes["qualifyingopportunityid"] = opportunity["opportunityid"]
        _update(ctx, "lead", lead, changes)
    return Reply.json(200, {
        "@odata.context": f"{ctx.api}/$metadata#Collection({NAMESPACE}crmbaseentity)",
        "value": [{"@odata.type": f"#{NAMESPACE}{name}", ctx.schema.tables[name].primary_id:
                   row[ctx.schema.tables[name].primary_id]} for name, row in created],
    })


def _opportunity_customer(lead: dict, given: Any, account: dict | None, contact: dict | None) -> tuple[str | None, str | None]:
    """(table, id) of the new opportunity's customer: the one given, else the new account or
    contact, else the lead's own customer, parent account or parent contact."""
    if given is not None:
        return given[0].logical_name, given[1][given[0].primary_id]
    if account is not None:
        return "account", account["accountid"]
    if contact is not None:
        return "contact", contact["contactid"]
    if lead.get("customerid"):
        return lead.get("customeridtype"), lead["customerid"]
    if lead.get("parentaccountid"):
        return "account", lead["parentaccountid"]
    return ("contact", lead["parentcontactid"]) if lead.get("parentcontactid") else (None, None)


# ---- WinOpportunity / LoseOpportunity -----------------------------------------------------------

def _close_activity(ctx: Ctx, params: dict, message: str, parameter: str, activity: str, column: str,
                    target: str) -> tuple[dict, Table, dict]:
    """Create the close activity (`opportunityclose`, `incidentresolution`) from its entity
    parameter; returns (values given, the created activity, the closed row's table row)."""
    add_tables(ctx.store)
    body = _entity(params, parameter, message)
    table = ctx.schema.tables[activity]
    fields = {k: v for k, v in body.items() if k not in ("@odata.type", "activityid", "statecode", "statuscode")}
    values, _ = convert_body(ctx, table, fields, creating=True)
    if not values.get(column):
        raise bad_request(f"The {parameter} must name its {target}: \"{column}@odata.bind\": "
                          f"\"/{ctx.schema.tables[target].entity_set}(<id>)\".", INVALID_ARGUMENT)
    row = ctx.store.get(target, values[column])
    if row is None:
        raise record_not_found(target, values[column])
    return values, table, row


def _close_opportunity(ctx: Ctx, params: dict, state: int, message: str) -> Reply:
    status = _integer(params, "Status", message)
    values, close_table, opportunity = _close_activity(
        ctx, params, message, "OpportunityClose", "opportunityclose", "opportunityid", "opportunity")
    table = ctx.schema.tables["opportunity"]
    if opportunity.get("statecode") != 0:
        raise _not_open(table, opportunity, "close")
    status = _status(ctx, table, opportunity["opportunityid"], state, status)
    with ctx.store.transaction():
        closed_on = values.get("actualend") or utc_now()
        activity = {"subject": f"Opportunity Close - {'Won' if state == WON else 'Lost'}", **values,
                    "actualend": closed_on, "statecode": COMPLETED, "statuscode": COMPLETED_STATUS}
        _insert(ctx, close_table.logical_name, activity)
        revenue = values.get("actualrevenue")
        if revenue is None and state == WON:
            revenue = opportunity.get("estimatedvalue")
        _update(ctx, "opportunity", opportunity, {
            "statecode": state, "statuscode": status, "actualvalue": revenue,
            "actualclosedate": _date_only(closed_on)})
    return Reply.empty(204)


def win_opportunity(ctx: Ctx, params: dict, bound: Bound | None) -> Reply:
    return _close_opportunity(ctx, params, WON, "WinOpportunity")


def lose_opportunity(ctx: Ctx, params: dict, bound: Bound | None) -> Reply:
    return _close_opportunity(ctx, params, LOST, "LoseOpportunity")


# ---- CloseIncident ------------------------------------------------------------------------------

def close_incident(ctx: Ctx, params: dict, bound: Bound | None) -> Reply:
    """Record the resolution and resolve the case (Status must be a Resolved reason: 5 or 1000)."""
    status = _integer(params, "Status", "CloseIncident")
    values, resolution_table, incident = _close_activity(
        ctx, params, "CloseIncident", "IncidentResolution", "incidentresolution", "incidentid", "incident")
    table = ctx.schema.tables["incident"]
    if incident.get("statecode") != 0:
        raise _not_open(table, incident, "resolve")
    status = _status(ctx, table, incident["incidentid"], RESOLVED, status)
    with ctx.store.transaction():
        _insert(ctx, resolution_table.logical_name, {
            "subject": "Case Resolved", **values, "actualend": values.get("actualend") or utc_now(),
            "statecode": COMPLETED, "statuscode": COMPLETED_STATUS})
        _update(ctx, "incident", incident, {"statecode": RESOLVED, "statuscode": status})
    return Reply.empty(204)


# ---- queues -------------------------------------------------------------------------------------

def add_to_queue(ctx: Ctx, params: dict, bound: Bound | None) -> Reply:
    """Put a case or activity in the bound queue; an item already waiting in a queue moves here."""
    assert bound is not None, "registered bound to queue"
    queue = bound.row
    if queue is None:
        raise bad_request("AddToQueue is bound to one queue: queues(<id>)/Microsoft.Dynamics.CRM.AddToQueue.")
    if queue.get("statecode") != 0:
        raise DataverseError(400, INVALID_OPERATION, f"The queue with Id {queue['queueid']} is inactive.")
    target_table, target = _reference(ctx, _required(params, "Target", "AddToQueue"), "Target", QUEUE_TARGETS)
    target_id = target[target_table.primary_id]
    items = ctx.schema.tables["queueitem"]
    extra: dict = {}
    if isinstance(params.get("QueueItemProperties"), dict):
        properties = {k: v for k, v in params["QueueItemProperties"].items()
                      if k not in ("@odata.type", "queueitemid", "queueid", "objectid")}
        extra, _ = convert_body(ctx, items, properties, creating=True)
    source = _optional_reference(ctx, params, "SourceQueueId", ("queue",))
    where, args = "t0.objectid = ? AND t0.statecode = 0", [target_id]
    if source is not None:
        where, args = where + " AND t0.queueid = ?", args + [source[1]["queueid"]]
    existing = ctx.store.select("queueitem", where, args, limit=1)
    with ctx.store.transaction():
        if existing:
            item = _update(ctx, "queueitem", existing[0], {"queueid": queue["queueid"], "enteredon": utc_now(),
                                                             **extra})
        else:
            item = _insert(ctx, "queueitem", {
                "title": target.get(target_table.primary_name), "enteredon": utc_now(),
                "objecttypecode": target_table.logical_name, "objectid": target_id,
                "objectidtype": target_table.logical_name, "queueid": queue["queueid"], **extra})
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{NAMESPACE}AddToQueueResponse",
                            "QueueItemId": item["queueitemid"]})


def _guid_param(params: dict, name: str, message: str) -> str:
    value = _required(params, name, message)
    if isinstance(value, dict):           # an entity parameter given as a reference
        value = next((v for k, v in value.items() if not k.startswith("@")), None)
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Guid' (parameter '{name}').")
    return value.lower()


def pick_from_queue(ctx: Ctx, params: dict, bound: Bound | None) -> Reply:
    """Assign the queue item to a worker; RemoveQueueItem also takes it out of the queue."""
    item_id = _guid_param(params, "QueueItemId", "PickFromQueue")
    worker_id = _guid_param(params, "WorkerId", "PickFromQueue")
    remove = params.get("RemoveQueueItem", False)
    if not isinstance(remove, bool):
        raise bad_request(f"Cannot convert the literal '{remove}' to the expected type 'Edm.Boolean' "
                          "(parameter 'RemoveQueueItem').")
    item = ctx.store.get("queueitem", item_id)
    if item is None:
        raise record_not_found("queueitem", item_id)
    if ctx.store.get("systemuser", worker_id) is None:
        raise record_not_found("systemuser", worker_id)
    if item.get("statecode") != 0:
        raise DataverseError(400, INVALID_OPERATION, f"The queue item with Id {item_id} is no longer in a queue.")
    changes: dict = {"workerid": worker_id}
    if remove:
        changes["statecode"] = 1
    with ctx.store.transaction():
        _update(ctx, "queueitem", item, changes)
    return Reply.empty(204)


def release_to_queue(ctx: Ctx, params: dict, bound: Bound | None) -> Reply:
    """Give a picked item back to its queue (no worker)."""
    assert bound is not None, "registered bound to queueitem"
    item = bound.row
    if item is None:
        raise bad_request("ReleaseToQueue is bound to one queue item: queueitems(<id>)/Microsoft.Dynamics.CRM.ReleaseToQueue.")
    with ctx.store.transaction():
        _update(ctx, "queueitem", item, {"workerid": None})
    return Reply.empty(204)


# ---- CalculateRollupField -----------------------------------------------------------------------

def _open_deals(ctx: Ctx, account_id: str) -> int:
    return ctx.store.count("opportunity", "t0.parentaccountid = ? AND t0.statecode = 0", [account_id])


def _open_revenue(ctx: Ctx, account_id: str) -> float:
    rows = ctx.store.execute('SELECT coalesce(sum(estimatedvalue), 0) AS total FROM "opportunity" '
                             "WHERE parentaccountid = ? AND statecode = 0", [account_id])
    return float(rows[0]["total"])


#: (table, rollup column) -> how to compute it from the row's id
ROLLUPS = {
    ("account", "opendeals"): _open_deals,
    ("account", "openrevenue"): _open_revenue,
}


def calculate_rollup_field(ctx: Ctx, params: dict, bound: Bound | None) -> Reply:
    """Recompute a rollup column; the answer is the row with `<field>`, `<field>_date`, `<field>_state`."""
    table, row = _reference(ctx, _required(params, "Target", "CalculateRollupField"), "Target")
    field = _required(params, "FieldName", "CalculateRollupField")
    if not isinstance(field, str):
        raise bad_request("The parameter 'FieldName' must be a column name.")
    compute = ROLLUPS.get((table.logical_name, field))
    if compute is None and field not in table.columns:
        raise bad_request(f"The attribute '{field}' is not a rollup attribute of '{table.logical_name}'.",
                          INVALID_ARGUMENT)
    payload: dict[str, Any] = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}/$entity"}
    if compute is not None:
        value, now = compute(ctx, row[table.primary_id]), utc_now()
        stored = {k: v for k, v in {field: value, f"{field}_date": now, f"{field}_state": 1}.items()
                  if k in table.columns}
        if stored:
            with ctx.store.transaction():
                row = _update(ctx, table.logical_name, row, stored)
        payload.update(represent(ctx, table, row, None, []))
        payload.update({field: value, f"{field}_date": now, f"{field}_state": 1})
    else:
        payload.update(represent(ctx, table, row, None, []))
    return Reply.json(200, payload)


register_action("QualifyLead", qualify_lead, bound_to="lead")
register_action("WinOpportunity", win_opportunity)
register_action("LoseOpportunity", lose_opportunity)
register_action("CloseIncident", close_incident)
register_action("AddToQueue", add_to_queue, bound_to="queue")
register_action("PickFromQueue", pick_from_queue)
register_action("ReleaseToQueue", release_to_queue, bound_to="queueitem")
register_function("CalculateRollupField", calculate_rollup_field)
