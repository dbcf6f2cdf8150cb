"""The standard tables of a fresh Dynamics 365 (Sales + Customer Service) org, built from the facts in
emulator/storage/fresh_org.json (columns, types, lengths, choices, lookup targets, ownership; how
they were gathered is in its "_about"). Only what the emulator cannot read there is written here:
the tables' display names and the relationship names Dataverse gives the lookups users meet.

Left out on purpose: lookups whose targets are all tables the emulator does not model, read-only
`*_base` money columns (the emulator does not convert currencies) and the `<lookup>type` columns the
emulator keeps hidden itself (`Column.type_column`)."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from d365_components.emulator.storage.columns import (
    INT_MAX,
    INT_MIN,
    LookupSpec,
    StateOptionSets,
    state_option_sets,
)
from d365_components.emulator.storage.schema import Column, Option, OptionSet
from d365_components.emulator.storage.table_builder import TableBuilder

# logical name: (SchemaName, display name, plural display name)
TABLE_NAMES = {
    "account": ("Account", "Account", "Accounts"), "contact": ("Contact", "Contact", "Contacts"),
    "lead": ("Lead", "Lead", "Leads"), "opportunity": ("Opportunity", "Opportunity", "Opportunities"),
    "quote": ("Quote", "Quote", "Quotes"), "quotedetail": ("QuoteDetail", "Quote Product", "Quote Products"),
    "salesorder": ("SalesOrder", "Order", "Orders"), "salesorderdetail": ("SalesOrderDetail", "Order Product", "Order Products"),
    "invoice": ("Invoice", "Invoice", "Invoices"), "invoicedetail": ("InvoiceDetail", "Invoice Product", "Invoice Products"),
    "product": ("Product", "Product", "Products"), "pricelevel": ("PriceLevel", "Price List", "Price Lists"),
    "productpricelevel": ("ProductPriceLevel", "Price List Item", "Price List Items"),
    "transactioncurrency": ("TransactionCurrency", "Currency", "Currencies"), "incident": ("Incident", "Case", "Cases"),
    "queue": ("Queue", "Queue", "Queues"), "queueitem": ("QueueItem", "Queue Item", "Queue Items"),
    "sla": ("SLA", "SLA", "SLAs"), "slaitem": ("SLAItem", "SLA Item", "SLA Items"),
    "slakpiinstance": ("SLAKPIInstance", "SLA KPI Instance", "SLA KPI Instances"),
    "knowledgearticle": ("KnowledgeArticle", "Knowledge Article", "Knowledge Articles"),
    "subject": ("Subject", "Subject", "Subjects"), "competitor": ("Competitor", "Competitor", "Competitors"),
    "campaign": ("Campaign", "Campaign", "Campaigns"), "activitypointer": ("ActivityPointer", "Activity", "Activities"),
    "task": ("Task", "Task", "Tasks"), "phonecall": ("PhoneCall", "Phone Call", "Phone Calls"),
    "email": ("Email", "Email", "Email Messages"), "appointment": ("Appointment", "Appointment", "Appointments"),
    "annotation": ("Annotation", "Note", "Notes"), "systemuser": ("SystemUser", "User", "Users"),
    "team": ("Team", "Team", "Teams"), "businessunit": ("BusinessUnit", "Business Unit", "Business Units"),
    "workflow": ("Workflow", "Process", "Processes"), "processstage": ("ProcessStage", "Process Stage", "Process Stages"),
    "opportunitysalesprocess": ("OpportunitySalesProcess", "Opportunity Sales Process", "Opportunity Sales Processes"),
    "leadtoopportunitysalesprocess": ("LeadToOpportunitySalesProcess", "Lead To Opportunity Sales Process",
                                      "Lead To Opportunity Sales Processes"),
    "phonetocaseprocess": ("PhoneToCaseProcess", "Phone To Case Process", "Phone To Case Processes"),
}
ACTIVITIES = frozenset({"activitypointer", "task", "phonecall", "email", "appointment"})
REGARDING_PLURALS = {"activitypointer": "ActivityPointers", "task": "Tasks", "phonecall": "Phonecalls",
                     "email": "Emails", "appointment": "Appointments"}     # Account_Tasks, Contact_Emails, ...
# (table, column) -> global option set name, for the choices Dataverse shares between tables
GLOBAL_CHOICES = {("account", "industrycode"): "industrycode", ("lead", "industrycode"): "industrycode",
                  ("incident", "caseorigincode"): "incident_caseorigincode"}
# (table, lookup) -> relationship schema name, for single-target lookups users navigate by name
RELATIONSHIPS = {
    ("account", "primarycontactid"): "account_primary_contact", ("account", "parentaccountid"): "account_parent_account",
    ("account", "originatingleadid"): "account_originating_lead", ("contact", "originatingleadid"): "contact_originating_lead",
    ("lead", "parentaccountid"): "lead_parent_account", ("lead", "parentcontactid"): "lead_parent_contact",
    ("lead", "qualifyingopportunityid"): "lead_qualifying_opportunity",
    ("opportunity", "parentaccountid"): "opportunity_parent_account", ("opportunity", "parentcontactid"): "opportunity_parent_contact",
    ("opportunity", "originatingleadid"): "opportunity_originating_lead",
    ("incident", "primarycontactid"): "contact_as_primary_contact", ("incident", "productid"): "product_incidents",
    ("quote", "opportunityid"): "opportunity_quotes", ("salesorder", "opportunityid"): "opportunity_sales_orders",
    ("salesorder", "quoteid"): "quote_orders", ("invoice", "salesorderid"): "order_invoices",
    ("invoice", "opportunityid"): "opportunity_invoices", ("queueitem", "queueid"): "queue_entries",
    ("systemuser", "businessunitid"): "business_unit_system_users", ("team", "businessunitid"): "business_unit_teams",
    ("team", "administratorid"): "lk_teambase_administratorid",
    ("businessunit", "parentbusinessunitid"): "business_unit_parent_business_unit",
}
CUSTOMER_PREFIX = {"salesorder": "order"}        # order_customer_accounts, not salesorder_...
BUILT_IN = frozenset({"createdon", "modifiedon", "versionnumber", "createdby", "modifiedby", "createdonbehalfby",
                      "modifiedonbehalfby", "statecode", "statuscode"})
OWNER_COLUMNS = frozenset({"ownerid", "owningbusinessunit"})
MONEY_COLUMNS = frozenset({"transactioncurrencyid", "exchangerate"})
# type: (precision, min, max)
NUMBER_DEFAULTS: dict[str, tuple[int | None, float, float]] = {
    "Money": (2, -922337203685477, 922337203685477), "Decimal": (2, -100000000000, 100000000000),
    "Double": (5, -1e15, 1e15), "Integer": (None, INT_MIN, INT_MAX)}


@cache
def fresh_org_facts() -> dict[str, Any]:
    """The tables of fresh_org.json, read once per process."""
    text = resources.files("d365_components.emulator.storage").joinpath("fresh_org.json").read_text("utf-8")
    tables: dict[str, Any] = json.loads(text)["tables"]
    return tables


def add_fresh_org_tables(builder: TableBuilder, modelled: frozenset[str]) -> None:
    """Add every table of fresh_org.json; lookups keep only the targets in `modelled`."""
    for name, facts in fresh_org_facts().items():
        schema_name, display, plural = TABLE_NAMES[name]
        ownership = facts["ownership"] if facts["ownership"] in ("UserOwned", "BusinessOwned") else "OrganizationOwned"
        columns = facts["columns"]
        cols: list[Column | LookupSpec] = []
        has_money = any(c["type"] == "Money" for c in columns.values())
        hidden = {n + "type" for n, c in columns.items() if len(c.get("targets", ())) > 1}
        for col_name, c in columns.items():
            if (col_name in BUILT_IN or col_name == facts["primary_id"] or col_name in hidden
                    or (ownership == "UserOwned" and col_name in OWNER_COLUMNS)
                    or (has_money and col_name in MONEY_COLUMNS)
                    or (col_name.endswith("_base") and c["type"] in ("Money", "Decimal"))):
                continue
            spec = _column(name, col_name, c, modelled)
            if spec is not None:
                cols.append(spec)
        if facts["primary_name"] not in columns:
            cols.append(Column(facts["primary_name"], "String", display="Name", max_length=100))
        table = builder.table(name, facts["entity_set_name"], facts["primary_id"], facts["primary_name"],
                              facts["object_type_code"], display, plural, cols, ownership=ownership,
                              state=_states(columns), activity=name in ACTIVITIES, schema_name=schema_name,
                              change_tracking=facts.get("change_tracking") is not False)
        stated = columns.get(facts["primary_name"], {}).get("required_level")
        if stated:          # the builder makes a primary name required; lead.fullname, for one, is not
            table.columns[facts["primary_name"]].required = stated
    for table in builder.schema.tables.values():
        for col in table.columns.values():
            if col.option_set is not None and col.option_set.is_global:
                builder.schema.option_sets.setdefault(col.option_set.name, col.option_set)


def _column(table: str, name: str, c: dict[str, Any], modelled: frozenset[str]) -> Column | LookupSpec | None:
    kind = c["type"]
    display = c.get("display_name") or name
    if kind in ("Lookup", "Customer", "Owner"):
        targets = [t for t in c.get("targets", ()) if t in modelled]
        if not targets:
            return None
        return LookupSpec(name, {t: _relationship(table, name, t, len(targets) > 1) for t in targets}, display,
                          kind=kind)
    col = Column(name, kind, display=display, required=c.get("required_level") or "None",
                 writable=not c.get("read_only"), max_length=c.get("max_length"), precision=c.get("precision"),
                 min_value=c.get("min_value"), max_value=c.get("max_value"))
    if kind == "String":
        col.max_length = col.max_length or 100
    elif kind == "Memo":
        col.max_length = col.max_length or 2000
    elif kind == "DateTime":
        col.format = "DateOnly" if c.get("format") == "DateOnly" else "DateAndTime"
    elif kind in NUMBER_DEFAULTS:      # where the facts are silent: the platform's defaults
        precision, lo, hi = NUMBER_DEFAULTS[kind]
        col.precision = precision if col.precision is None else col.precision
        col.min_value = lo if col.min_value is None else col.min_value
        col.max_value = hi if col.max_value is None else col.max_value
    if kind in ("Picklist", "Boolean"):
        options = [Option(int(v), label) for v, label in sorted(c.get("options", {}).items(), key=lambda o: int(o[0]))]
        if kind == "Boolean" and not options:
            options = [Option(0, "No"), Option(1, "Yes")]
        global_name = c.get("global_option_set") or GLOBAL_CHOICES.get((table, name))
        col.option_set = OptionSet(global_name or name, options, kind=kind, is_global=bool(global_name))
    return col


def _relationship(table: str, column: str, target: str, several: bool) -> tuple[str, str]:
    """(relationship schema name, navigation property) of one target of a lookup."""
    if table in ACTIVITIES and column == "regardingobjectid":
        return f"{target.capitalize()}_{REGARDING_PLURALS[table]}", f"regardingobjectid_{target}_{table}"
    if column == "objectid" and table in ("annotation", "queueitem"):
        return f"{target.capitalize()}_{TABLE_NAMES[table][0]}", f"objectid_{target}"
    if column in ("customerid", "parentcustomerid"):
        suffix = {"account": "accounts", "contact": "contacts"}[target]
        return f"{CUSTOMER_PREFIX.get(table, table)}_customer_{suffix}", f"{column}_{target}"
    if column == "workerid" and target == "systemuser":
        return "systemuser_queueitem_workerid", "workerid_systemuser"
    known = RELATIONSHIPS.get((table, column))
    if known and not several:
        return known, column
    return f"{target}_{table}_{column}", f"{column}_{target}" if several else column


def _states(columns: dict[str, Any]) -> StateOptionSets | None:
    """statecode and statuscode; a status names its state by value, or (invoice) by the state's label."""
    state, status = columns.get("statecode"), columns.get("statuscode")
    if state is None or status is None:
        return None
    states = {int(v): label for v, label in sorted(state.get("options", {}).items(), key=lambda o: int(o[0]))}
    by_label = {re.sub(r"\W+", "_", label).strip("_"): value for value, label in states.items()}
    state_of = {v: s if isinstance(s, int) else by_label[s] for v, s in status.get("state_of", {}).items()}
    statuses = {int(v): (label, state_of.get(v, 0)) for v, label in
                sorted(status.get("options", {}).items(), key=lambda o: int(o[0]))}
    return state_option_sets(states, statuses)
