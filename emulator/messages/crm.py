"""CRM messages that move rows through their life cycle the way Dataverse does (§8).

* `leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead` creates the account, contact and opportunity
  asked for (linked to each other and to the lead), closes the lead as Qualified and answers the
  created references as a `crmbaseentity` collection.
* `WinOpportunity` / `LoseOpportunity` record an `opportunityclose` activity and close the
  opportunity as Won / Lost (actual revenue and close date set).
* `CloseIncident` records an `incidentresolution` activity and resolves the case.

Each message runs in one transaction, so a failure leaves nothing half done. A row in the wrong
state is refused as Dataverse refuses it (400); a bad status reason with 0x80048408.

The tables these messages need are added by emulator/messages/crm_tables.py; queues are in
crm_queues.py, rollups in crm_rollups.py. Importing this module registers the messages.
"""


from __future__ import annotations

from typing import Any

from d365_components.emulator.messages.crm_parameters import (
    boolean_param,
    date_only,
    entity_param,
    insert_row,
    integer_param,
    not_open,
    optional_reference_param,
    set_status,
    update_row,
)
from d365_components.emulator.messages.crm_tables import add_tables
from d365_components.emulator.messages.registry import NAMESPACE, Bound, register_action
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    bad_request,
    record_not_found,
)
from d365_components.emulator.records.write import convert_body
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Table
from d365_components.emulator.storage.store import utc_now

QUALIFIED = 1
WON, LOST = 1, 2
RESOLVED = 1
COMPLETED, COMPLETED_STATUS = 1, 2


# ---- QualifyLead --------------------------------------------------------------------------------

def qualify_lead(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """Create what the flags ask for from the lead's data, link it all, close the lead as Qualified."""
    assert bound is not None, "registered bound to lead"
    lead_table, lead = bound.table, bound.row
    if lead is None:
        raise bad_request("QualifyLead is bound to one lead: leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead.")
    create_account = boolean_param(params, "CreateAccount", "QualifyLead")
    create_contact = boolean_param(params, "CreateContact", "QualifyLead")
    create_opportunity = boolean_param(params, "CreateOpportunity", "QualifyLead")
    status = integer_param(params, "Status", "QualifyLead")
    lead_id = lead["leadid"]
    if lead.get("statecode") != 0:
        raise not_open(lead_table, lead, "qualify")
    status = set_status(ctx, lead_table, lead_id, QUALIFIED, status)
    currency = optional_reference_param(ctx, params, "OpportunityCurrencyId", ("transactioncurrency",))
    customer = optional_reference_param(ctx, params, "OpportunityCustomerId", ("account", "contact"))
    if create_account and not lead.get("companyname"):
        raise bad_request("The lead has no company name, so no account can be created from it (set companyname, or "
                          "qualify with CreateAccount false).", INVALID_ARGUMENT)
    address = {k: lead.get(k) for k in ("address1_line1", "address1_city", "address1_stateorprovince",
                                         "address1_postalcode", "address1_country")}
    created: list[tuple[str, dict[str, Any]]] = []
    with ctx.store.transaction():
        account = contact = opportunity = None
        if create_account:
            account = insert_row(ctx, "account", {
                "name": lead["companyname"], "telephone1": lead.get("telephone1"),
                "emailaddress1": lead.get("emailaddress1"), "industrycode": lead.get("industrycode"),
                "originatingleadid": lead_id, **address})
            created.append(("account", account))
        if create_contact:
            contact = insert_row(ctx, "contact", {
                "firstname": lead.get("firstname"), "lastname": lead.get("lastname") or lead.get("fullname"),
                "emailaddress1": lead.get("emailaddress1"), "telephone1": lead.get("telephone1"),
                "jobtitle": lead.get("jobtitle"), "originatingleadid": lead_id, **address,
                **({"parentcustomerid": account["accountid"], "parentcustomeridtype": "account"} if account else {})})
            created.append(("contact", contact))
            if account is not None:
                account = update_row(ctx, "account", account, {"primarycontactid": contact["contactid"]})
        if create_opportunity:
            buyer = _opportunity_customer(lead, customer, account, contact)
            opportunity = insert_row(ctx, "opportunity", {
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
        update_row(ctx, "lead", lead, changes)
    return Reply.json(200, {
        "@odata.context": f"{ctx.api}/$metadata#Collection({NAMESPACE}crmbaseentity)",
        "value": [{"@odata.type": f"#{NAMESPACE}{name}", ctx.schema.tables[name].primary_id:
                   row[ctx.schema.tables[name].primary_id]} for name, row in created],
    })


def _opportunity_customer(lead: dict[str, Any], given: Any, account: dict[str, Any] | None, contact: dict[str, Any] | None) -> tuple[str | None, str | None]:
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

def _close_activity(ctx: Ctx, params: dict[str, Any], message: str, parameter: str, activity: str, column: str,
                    target: str) -> tuple[dict[str, Any], Table, dict[str, Any]]:
    """Create the close activity (`opportunityclose`, `incidentresolution`) from its entity
    parameter; returns (values given, the created activity, the closed row's table row)."""
    add_tables(ctx.store)
    body = entity_param(params, parameter, message)
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


def _close_opportunity(ctx: Ctx, params: dict[str, Any], state: int, message: str) -> Reply:
    status = integer_param(params, "Status", message)
    values, close_table, opportunity = _close_activity(
        ctx, params, message, "OpportunityClose", "opportunityclose", "opportunityid", "opportunity")
    table = ctx.schema.tables["opportunity"]
    if opportunity.get("statecode") != 0:
        raise not_open(table, opportunity, "close")
    status = set_status(ctx, table, opportunity["opportunityid"], state, status)
    with ctx.store.transaction():
        closed_on = values.get("actualend") or utc_now()
        activity = {"subject": f"Opportunity Close - {'Won' if state == WON else 'Lost'}", **values,
                    "actualend": closed_on, "statecode": COMPLETED, "statuscode": COMPLETED_STATUS}
        insert_row(ctx, close_table.logical_name, activity)
        revenue = values.get("actualrevenue")
        if revenue is None and state == WON:
            revenue = opportunity.get("estimatedvalue")
        update_row(ctx, "opportunity", opportunity, {
            "statecode": state, "statuscode": status, "actualvalue": revenue,
            "actualclosedate": date_only(closed_on)})
    return Reply.empty(204)


def win_opportunity(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    return _close_opportunity(ctx, params, WON, "WinOpportunity")


def lose_opportunity(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    return _close_opportunity(ctx, params, LOST, "LoseOpportunity")


# ---- CloseIncident ------------------------------------------------------------------------------

def close_incident(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """Record the resolution and resolve the case (Status must be a Resolved reason: 5 or 1000)."""
    status = integer_param(params, "Status", "CloseIncident")
    values, resolution_table, incident = _close_activity(
        ctx, params, "CloseIncident", "IncidentResolution", "incidentresolution", "incidentid", "incident")
    table = ctx.schema.tables["incident"]
    if incident.get("statecode") != 0:
        raise not_open(table, incident, "resolve")
    status = set_status(ctx, table, incident["incidentid"], RESOLVED, status)
    with ctx.store.transaction():
        insert_row(ctx, resolution_table.logical_name, {
            "subject": "Case Resolved", **values, "actualend": values.get("actualend") or utc_now(),
            "statecode": COMPLETED, "statuscode": COMPLETED_STATUS})
        update_row(ctx, "incident", incident, {"statecode": RESOLVED, "statuscode": status})
    return Reply.empty(204)


register_action("QualifyLead", qualify_lead, bound_to="lead")
register_action("WinOpportunity", win_opportunity)
register_action("LoseOpportunity", lose_opportunity)
register_action("CloseIncident", close_incident)
