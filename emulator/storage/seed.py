"""The rows every new store starts with: the organization, its business unit, the two users of
emulator/defaults.py, a team and the USD currency (always), plus SDK messages, filters and a few
sample accounts and contacts with the "demo" profile."""

from __future__ import annotations

from typing import Any

from d365_components.emulator import defaults
from d365_components.emulator.defaults import TEAM_ID, USD_ID
from d365_components.emulator.storage.store import Store

SEED_PROFILES = (None, "demo")      # None: only the org, users, team and currency


def seed_rows(store: Store, mode: str | None) -> None:
    """Insert the org, its users and currency; with mode 'demo' also messages and sample data."""
    system = defaults.APP_USER_ID
    as_system: dict[str, Any] = dict(user=system)
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
    if mode != "demo":
        return
    for message in ("Create", "Update", "Delete", "Associate", "Disassociate", "Retrieve", "RetrieveMultiple"):
        message_id = store.insert("sdkmessage", {"name": message, "categoryname": "Create" if message == "Create" else message,
                                                 "isprivate": False, "isactive": True, "autotransact": True}, **as_system)["sdkmessageid"]
        if message in ("Create", "Update", "Delete"):
            for table in store.schema.tables.values():
                if table.ownership in ("UserOwned", "OrganizationOwned") and table.logical_name not in ("sdkmessage",):
                    store.insert("sdkmessagefilter", {
                        "name": f"{message} {table.logical_name}", "primaryobjecttypecode": table.logical_name,
                        "secondaryobjecttypecode": "none", "sdkmessageid": message_id, "isvisible": True,
                        "iscustomprocessingstepallowed": True}, **as_system)
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
