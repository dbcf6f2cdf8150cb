"""Seed profiles: what a new store holds before the first request.

* ``none``: only what the emulator needs to answer at all: the organization, its root business
  unit, default team, the two users of emulator/defaults.py (the app user and a system
  administrator) and the base currency (USD).
* ``fresh`` (the default): a fresh org: the above plus the rows a new Dynamics 365 org already
  lists: SDK messages and their filters, each user's and the team's private default queue, the
  default subject and the three business process flows (with their stages). No alternate keys, no
  sample records, no price list.
* ``demo``: a fresh org plus the customizations and sample records the demo and the suite's
  shared emulator use: alternate keys on account.accountnumber and contact.emailaddress1, the
  custom choices column account.new_channels, a few accounts, contacts and a task.

The profile changes the schema too (``profile_schema``), so ask for it before creating the store.
"""

from __future__ import annotations

from typing import Any

from d365_components.emulator import defaults
from d365_components.emulator.defaults import TEAM_ID, USD_ID
from d365_components.emulator.storage.columns import choices_column
from d365_components.emulator.storage.schema import AlternateKey, Schema
from d365_components.emulator.storage.standard_tables import standard_schema
from d365_components.emulator.storage.store import Store

SEED_PROFILES = ("none", "fresh", "demo")
DEFAULT_PROFILE = "fresh"
DEMO_KEYS = {"account": ("accountnumber_key", ("accountnumber",)), "contact": ("emailaddress1_key", ("emailaddress1",))}
# business process flow: (name, unique name, table, [(stage name, stage category, table)])
PROCESS_FLOWS = (
    ("Opportunity Sales Process", "opportunitysalesprocess", "opportunity",
     [("Qualify", 0, "opportunity"), ("Develop", 1, "opportunity"), ("Propose", 2, "opportunity"), ("Close", 3, "opportunity")]),
    ("Lead to Opportunity Sales Process", "leadtoopportunitysalesprocess", "lead",
     [("Qualify", 0, "lead"), ("Develop", 1, "opportunity"), ("Propose", 2, "opportunity"), ("Close", 3, "opportunity")]),
    ("Phone to Case Process", "phonetocaseprocess", "incident",
     [("Identify", 4, "incident"), ("Research", 5, "incident"), ("Resolve", 6, "incident")]),
)


def profile_name(profile: str | None) -> str:
    """The profile a caller asked for (None reads as "none"); unknown names are refused."""
    name = profile or "none"
    if name not in SEED_PROFILES:
        raise ValueError(f"unknown seed profile {profile!r}: use one of {', '.join(SEED_PROFILES)}")
    return name


def profile_schema(profile: str | None) -> Schema:
    """The standard schema, with the demo's customizations for the "demo" profile."""
    schema = standard_schema()
    if profile_name(profile) == "demo":
        for table, (key, columns) in DEMO_KEYS.items():
            schema.tables[table].keys.append(AlternateKey(key, columns, display=key))
        schema.tables["account"].add(choices_column(
            "new_channels", {100000000: "Email", 100000001: "Phone", 100000002: "Web", 100000003: "Social"}, "Channels"))
    return schema


def seed_rows(store: Store, profile: str | None) -> None:
    """Insert the rows of `profile` (see the module docstring)."""
    name = profile_name(profile)
    as_system: dict[str, Any] = dict(user=defaults.APP_USER_ID)
    _org(store, as_system)
    if name == "none":
        return
    for owner, owner_type, queue_name in ((defaults.APP_USER_ID, "systemuser", "<# emulator-app>"),
                                          (defaults.USER_ID, "systemuser", f"<{defaults.USER_NAME}>"),
                                          (TEAM_ID, "team", f"<{defaults.ORGANIZATION_NAME}>")):
        queue = store.insert("queue", {"name": queue_name, "queueviewtype": 1, "ownerid": owner, "owneridtype": owner_type,
                                       "businessunitid": defaults.BUSINESS_UNIT_ID}, **as_system)
        store.update(owner_type, owner, {"queueid": queue["queueid"]}, **as_system)
    store.insert("subject", {"title": "Default Subject", "featuremask": 1}, **as_system)
    for flow, unique, table, stages in PROCESS_FLOWS:
        process = store.insert("workflow", {
            "name": flow, "uniquename": unique, "primaryentity": table, "category": 4, "type": 1, "mode": 0,
            "scope": 4, "businessprocesstype": 0, "ondemand": False, "statecode": 1, "statuscode": 2}, **as_system)
        for stage, category, stage_table in stages:
            store.insert("processstage", {"stagename": stage, "stagecategory": category, "primaryentitytypecode": stage_table,
                                          "processid": process["workflowid"]}, **as_system)
    if name == "demo":
        _demo(store, as_system)


def _org(store: Store, as_system: dict[str, Any]) -> None:
    store.insert("transactioncurrency", {
        "transactioncurrencyid": USD_ID, "currencyname": "US Dollar", "isocurrencycode": "USD",
        "currencysymbol": "$", "exchangerate": 1.0, "currencyprecision": 2, "statecode": 0, "statuscode": 1}, **as_system)
    store.insert("businessunit", {"businessunitid": defaults.BUSINESS_UNIT_ID, "name": defaults.ORGANIZATION_NAME}, **as_system)
    store.insert("organization", {
        "organizationid": defaults.ORGANIZATION_ID, "name": defaults.ORGANIZATION_NAME, "uniquename": "emulatedorg",
        "version": "9.2.24101.00000", "languagecode": 1033, "basecurrencyid": USD_ID}, **as_system)
    store.insert("systemuser", {
        "systemuserid": defaults.APP_USER_ID, "fullname": "# emulator-app", "firstname": "#", "lastname": "emulator-app",
        "domainname": f"{defaults.CLIENT_ID}@emulator.test", "applicationid": defaults.CLIENT_ID,
        "azureactivedirectoryobjectid": defaults.APP_USER_OBJECT_ID, "accessmode": 4, "isdisabled": False,
        "businessunitid": defaults.BUSINESS_UNIT_ID}, **as_system)
    first, last = defaults.USER_NAME.split(" ", 1)
    store.insert("systemuser", {
        "systemuserid": defaults.USER_ID, "fullname": defaults.USER_NAME, "firstname": first, "lastname": last,
        "domainname": defaults.USER_EMAIL, "internalemailaddress": defaults.USER_EMAIL,
        "azureactivedirectoryobjectid": defaults.USER_OBJECT_ID, "accessmode": 0, "isdisabled": False,
        "businessunitid": defaults.BUSINESS_UNIT_ID}, **as_system)
    store.insert("team", {"teamid": TEAM_ID, "name": defaults.ORGANIZATION_NAME, "teamtype": 0, "isdefault": True,
                          "businessunitid": defaults.BUSINESS_UNIT_ID, "administratorid": defaults.USER_ID}, **as_system)


def _demo(store: Store, as_system: dict[str, Any]) -> None:
    contoso = store.insert("account", {"name": "Contoso Ltd", "accountnumber": "ACC-001", "revenue": 5000000.0,
                                       "numberofemployees": 250, "accountcategorycode": 1, "industrycode": 7,
                                       "address1_city": "Redmond", "telephone1": "+1 425 555 0100"}, **as_system)
    fabrikam = store.insert("account", {"name": "Fabrikam Inc", "accountnumber": "ACC-002", "revenue": 1200000.0,
                                        "numberofemployees": 40, "accountcategorycode": 2, "industrycode": 12,
                                        "address1_city": "Seattle"}, **as_system)
    store.insert("account", {"name": "Adventure Works", "accountnumber": "ACC-003", "creditonhold": True,
                             "numberofemployees": 1200, "address1_city": "Bellevue"}, **as_system)
    nancy = store.insert("contact", {"firstname": "Nancy", "lastname": "Anderson", "emailaddress1": "nancy@contoso.example",
                                     "jobtitle": "Purchasing Manager", "parentcustomerid": contoso["accountid"],
                                     "parentcustomeridtype": "account"}, **as_system)
    store.insert("contact", {"firstname": "Maria", "lastname": "Campbell", "emailaddress1": "maria@fabrikam.example",
                             "jobtitle": "CTO", "parentcustomerid": fabrikam["accountid"], "parentcustomeridtype": "account"}, **as_system)
    store.update("account", contoso["accountid"], {"primarycontactid": nancy["contactid"]}, **as_system)
    store.insert("task", {"subject": "Call Nancy about the renewal", "prioritycode": 2, "regardingobjectid": contoso["accountid"],
                          "regardingobjectidtype": "account", "activitytypecode": "task"}, **as_system)
