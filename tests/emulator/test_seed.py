"""Seed profiles over HTTPS: the default is a fresh org (its standard tables and columns, its
users, currency and processes, no alternate keys, no sample rows); "demo" adds the demo's keys,
custom column and rows; "none" only the org and its users."""

from __future__ import annotations

import httpx
import pytest

from d365_components.emulator.server import Emulator
from d365_components.emulator.storage.seed import profile_name


@pytest.fixture(scope="module")
def fresh():
    with Emulator() as running:
        headers = {"Authorization": f"Bearer {running.get_token()}", "Accept": "application/json"}
        with httpx.Client(base_url=running.api_url + "/", verify=running.ssl_context, headers=headers,
                          timeout=30) as client:
            yield client


def values(client: httpx.Client, path: str) -> list[dict]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()["value"]


def test_a_fresh_org_has_its_rows_and_no_sample_data(fresh):
    assert values(fresh, "accounts?$select=name") == [] and values(fresh, "contacts?$select=fullname") == []
    assert {u["fullname"] for u in values(fresh, "systemusers?$select=fullname")} >= {"# emulator-app"}
    assert [c["isocurrencycode"] for c in values(fresh, "transactioncurrencies?$select=isocurrencycode")] == ["USD"]
    assert [s["title"] for s in values(fresh, "subjects?$select=title")] == ["Default Subject"]
    queues = {q["queueid"]: q for q in values(fresh, "queues?$select=name,queueviewtype")}
    assert len(queues) == 3 and {q["queueviewtype"] for q in queues.values()} == {1}
    assert {u["_queueid_value"] for u in values(fresh, "systemusers?$select=_queueid_value")} <= set(queues)
    flows = values(fresh, "workflows?$select=uniquename,primaryentity&$filter=category eq 4&$orderby=uniquename")
    assert [(f["uniquename"], f["primaryentity"]) for f in flows] == [
        ("leadtoopportunitysalesprocess", "lead"), ("opportunitysalesprocess", "opportunity"),
        ("phonetocaseprocess", "incident")]
    stages = values(fresh, "processstages?$select=stagename&$filter=primaryentitytypecode eq 'incident'")
    assert sorted(s["stagename"] for s in stages) == ["Identify", "Research", "Resolve"]


@pytest.mark.parametrize("table", ["account", "contact", "incident", "quote", "salesorder", "invoice", "product",
                                   "systemuser", "transactioncurrency"])
def test_a_fresh_org_has_no_alternate_keys(fresh, table):
    assert values(fresh, f"EntityDefinitions(LogicalName='{table}')/Keys") == []


def test_standard_columns_are_a_fresh_orgs(fresh):
    def attribute(table: str, column: str) -> httpx.Response:
        return fresh.get(f"EntityDefinitions(LogicalName='{table}')/Attributes(LogicalName='{column}')")

    for table, column in [("account", "telephone2"), ("opportunity", "stepname"), ("lead", "estimatedvalue"),
                          ("salesorder", "freightamount"), ("incident", "isescalated"), ("pricelevel", "name"),
                          ("competitor", "name"), ("slakpiinstance", "name"), ("opportunitysalesprocess", "activestageid")]:
        assert attribute(table, column).status_code == 200, (table, column)
    for table, column in [("account", "new_channels"), ("incident", "escalated"), ("quote", "datedelivered")]:
        assert attribute(table, column).status_code == 404, (table, column)
    subject = fresh.get("EntityDefinitions(LogicalName='email')/Attributes(LogicalName='subject')/"
                        "Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=MaxLength").json()
    assert subject["MaxLength"] == 800
    statuses = fresh.get("EntityDefinitions(LogicalName='invoice')/Attributes(LogicalName='statuscode')/"
                         "Microsoft.Dynamics.CRM.StatusAttributeMetadata?$expand=OptionSet").json()
    canceled = [o for o in statuses["OptionSet"]["Options"] if o["Value"] == 3]
    assert canceled[0]["State"] == 1      # "Canceled (deprecated)" belongs to "Closed (deprecated)"


def test_an_upsert_by_a_key_the_org_lacks_fails(fresh):
    response = fresh.patch("accounts(accountnumber='A-1')", json={"name": "x"})
    assert response.status_code == 400, response.text


def test_the_demo_profile_has_its_keys_and_rows(api_sync):
    keys = values(api_sync, "EntityDefinitions(LogicalName='account')/Keys")
    assert [k["KeyAttributes"] for k in keys] == [["accountnumber"]]
    assert values(api_sync, "accounts?$select=name&$filter=accountnumber eq 'ACC-001'")[0]["name"] == "Contoso Ltd"


def test_profiles_are_named():
    assert [profile_name(p) for p in (None, "none", "fresh", "demo")] == ["none", "none", "fresh", "demo"]
    with pytest.raises(ValueError, match="unknown seed profile 'sample'"):
        profile_name("sample")


@pytest.fixture
def api_sync(emulator, emulator_token):
    """The shared (demo) emulator, synchronously."""
    headers = {"Authorization": f"Bearer {emulator_token}", "Accept": "application/json"}
    with httpx.Client(base_url=emulator.api_url + "/", verify=emulator.ssl_context, headers=headers, timeout=30) as client:
        yield client
