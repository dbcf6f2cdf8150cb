"""FetchXML (reference §4): every condition operator, nested filters, orders, link-entity, aggregates,
formatted values, the paging cookie over 12,000 rows, and hostile or malformed XML answered with
400s in Dataverse's error shape, never a 500.

Queries go over HTTPS (`GET {set}?fetchXml=...`, and inside `$batch` for long ones); one test
calls `execute_fetch` directly with a query too long for any URL.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote
from xml.etree import ElementTree

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from d365_components.emulator import defaults
from d365_components.emulator.records.fetchxml import execute_fetch

ROWS = 12_000
FORMATTED = "@OData.Community.Display.V1.FormattedValue"
COOKIE = "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"
MORE = "@Microsoft.Dynamics.CRM.morerecords"


@pytest_asyncio.fixture(loop_scope="session")
async def fetch(api):
    """`await fetch(entity_set, xml, annotations=None, count=False) -> (status, body)` over HTTPS."""

    async def run(entity_set: str, xml: str, annotations: str | None = None, count: bool = False):
        headers = {"Prefer": f'odata.include-annotations="{annotations}"'} if annotations else {}
        params = {"fetchXml": xml, **({"$count": "true"} if count else {})}
        response = await api.get(entity_set, params=params, headers=headers)
        assert response.headers["OData-Version"] == "4.0"
        return response.status_code, response.json()

    return run


def names(body: dict, key: str = "name") -> list[str]:
    return [row[key].split(" ", 1)[1] for row in body["value"]]


# ---- conditions -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def accounts(store):
    """Five accounts tagged with a marker in `description`; dates relative to today (UTC)."""
    marker = "F" + uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = {
        "r0": dict(numberofemployees=10, address1_city="Redmond", lastonholdtime=today, owner=defaults.APP_USER_ID),
        "r1": dict(numberofemployees=20, address1_city="Seattle", lastonholdtime=today - timedelta(days=1),
                   owner=defaults.USER_ID),
        "r2": dict(numberofemployees=30, address1_city=None, lastonholdtime=today - timedelta(days=10),
                   owner=defaults.APP_USER_ID),
        "r3": dict(numberofemployees=None, address1_city="Bellevue", lastonholdtime=today + timedelta(days=1),
                   owner=defaults.APP_USER_ID),
        "r4": dict(numberofemployees=50, address1_city="redmond west",
                   lastonholdtime=today.replace(year=today.year - 2, month=1, day=1), owner=defaults.USER_ID),
    }
    for name, values in rows.items():
        values = dict(values)
        owner = values.pop("owner")
        values["lastonholdtime"] = values["lastonholdtime"].strftime("%Y-%m-%dT%H:%M:%SZ")
        store.insert("account", {"name": f"{marker} {name}", "description": marker, "ownerid": owner,
                                 "owneridtype": "systemuser", **values}, user=defaults.APP_USER_ID)
    return marker, rows, today


def this_year(rows, today):
    return {k for k, v in rows.items() if v["lastonholdtime"].year == today.year}


OPERATORS = [
    ('attribute="numberofemployees" operator="eq" value="20"', {"r1"}),
    ('attribute="numberofemployees" operator="eq"><value>20</value></condition', {"r1"}),
    ('attribute="numberofemployees" operator="ne" value="20"', {"r0", "r2", "r4"}),
    ('attribute="numberofemployees" operator="neq" value="20"', {"r0", "r2", "r4"}),
    ('attribute="numberofemployees" operator="lt" value="30"', {"r0", "r1"}),
    ('attribute="numberofemployees" operator="le" value="30"', {"r0", "r1", "r2"}),
    ('attribute="numberofemployees" operator="gt" value="20"', {"r2", "r4"}),
    ('attribute="numberofemployees" operator="ge" value="20"', {"r1", "r2", "r4"}),
    ('attribute="address1_city" operator="like" value="%MOND%"', {"r0", "r4"}),
    ('attribute="address1_city" operator="not-like" value="%mond%"', {"r1", "r3"}),
    ('attribute="address1_city" operator="begins-with" value="red"', {"r0", "r4"}),
    ('attribute="address1_city" operator="not-begin-with" value="red"', {"r1", "r3"}),
    ('attribute="address1_city" operator="ends-with" value="TLE"', {"r1"}),
    ('attribute="address1_city" operator="not-end-with" value="tle"', {"r0", "r3", "r4"}),
    ('attribute="numberofemployees" operator="in"><value>10</value><value>30</value></condition', {"r0", "r2"}),
    ('attribute="numberofemployees" operator="not-in"><value>10</value><value>30</value></condition', {"r1", "r4"}),
    ('attribute="address1_city" operator="null"', {"r2"}),
    ('attribute="address1_city" operator="not-null"', {"r0", "r1", "r3", "r4"}),
    ('attribute="numberofemployees" operator="between"><value>15</value><value>30</value></condition', {"r1", "r2"}),
    ('attribute="numberofemployees" operator="not-between"><value>15</value><value>30</value></condition',
     {"r0", "r4"}),
    ('attribute="lastonholdtime" operator="on" value="{today}"', {"r0"}),
    ('attribute="lastonholdtime" operator="on-or-after" value="{today}"', {"r0", "r3"}),
    ('attribute="lastonholdtime" operator="on-or-before" value="{yesterday}"', {"r1", "r2", "r4"}),
    ('attribute="lastonholdtime" operator="last-x-days" value="3"', {"r0", "r1"}),
    ('attribute="lastonholdtime" operator="next-x-days" value="3"', {"r3"}),
    ('attribute="lastonholdtime" operator="today"', {"r0"}),
    ('attribute="lastonholdtime" operator="yesterday"', {"r1"}),
    ('attribute="lastonholdtime" operator="this-year"', this_year),
    ('attribute="ownerid" operator="eq-userid"', {"r0", "r2", "r3"}),
    ('attribute="ownerid" operator="ne-userid"', {"r1", "r4"}),
]


@pytest.mark.parametrize("condition, expected", OPERATORS, ids=[c.split('"')[3] + str(i) for i, (c, _) in enumerate(OPERATORS)])
async def test_condition_operators(fetch, accounts, condition, expected):
    marker, rows, today = accounts
    condition = condition.format(today=today.strftime("%Y-%m-%d"),
                                 yesterday=(today - timedelta(days=1)).strftime("%m/%d/%Y"))
    if not condition.endswith("</condition"):
        condition += "/"
    xml = (f'<fetch><entity name="account"><attribute name="name"/><filter>'
           f'<condition attribute="description" operator="eq" value="{marker}"/><condition {condition}>'
           f'</filter></entity></fetch>')
    status, body = await fetch("accounts", xml)
    assert status == 200, body
    want = expected(rows, today) if callable(expected) else expected
    assert set(names(body)) == want


async def test_nested_filters_orders_and_values_as_parameters(fetch, accounts):
    marker, _, _ = accounts
    xml = (f'<fetch><entity name="account"><attribute name="name"/><attribute name="numberofemployees"/>'
           f'<filter type="and"><condition attribute="description" operator="eq" value="{marker}"/>'
           '<filter type="or"><condition attribute="numberofemployees" operator="eq" value="10"/>'
           '<filter><condition attribute="address1_city" operator="eq" value="seattle"/>'
           '<condition attribute="numberofemployees" operator="ge" value="20"/></filter>'
           '<condition attribute="address1_city" operator="null"/></filter></filter>'
           '<order attribute="numberofemployees" descending="true"/></entity></fetch>')
    status, body = await fetch("accounts", xml)
    assert status == 200, body
    assert names(body) == ["r2", "r1", "r0"]
    hostile = ('<fetch><entity name="account"><attribute name="name"/><filter>'
               '<condition attribute="name" operator="eq" value="x\' OR 1=1 --"/></filter></entity></fetch>')
    status, body = await fetch("accounts", hostile)
    assert status == 200 and body["value"] == []


async def test_nulls_are_omitted_and_lookups_read_as_value_properties(fetch, accounts):
    marker, _, _ = accounts
    xml = (f'<fetch><entity name="account"><attribute name="name"/><attribute name="address1_city"/>'
           '<attribute name="numberofemployees"/><attribute name="ownerid"/><attribute name="revenue"/>'
           f'<filter><condition attribute="name" operator="eq" value="{marker} r2"/></filter></entity></fetch>')
    status, body = await fetch("accounts", xml)
    assert status == 200, body
    [row] = body["value"]
    assert "address1_city" not in row and "revenue" not in row
    assert row["numberofemployees"] == 30 and row["_ownerid_value"] == defaults.APP_USER_ID
    assert row["@odata.etag"].startswith('W/"') and "accountid" in row
    assert body["@odata.context"].endswith("#accounts(name,address1_city,numberofemployees,_ownerid_value,revenue,"
                                         "_transactioncurrencyid_value,accountid)")


async def test_formatted_values_lookup_names_and_aliases(fetch, store):
    marker = "V" + uuid.uuid4().hex[:8]
    store.insert("account", {"name": f"{marker} one", "revenue": 1234.5, "industrycode": 7, "creditonhold": 1,
                             "lastonholdtime": "2024-03-05T14:07:00Z"}, user=defaults.APP_USER_ID)
    xml = ('<fetch><entity name="account"><attribute name="name" alias="company"/><attribute name="revenue"/>'
           '<attribute name="industrycode"/><attribute name="creditonhold"/><attribute name="lastonholdtime"/>'
           f'<attribute name="ownerid"/><filter><condition attribute="name" operator="begins-with" value="{marker}"/>'
           '</filter></entity></fetch>')
    status, body = await fetch("accounts", xml, annotations="*")
    assert status == 200, body
    [row] = body["value"]
    assert row["company"] == f"{marker} one"
    assert row["company@OData.Community.Display.V1.AttributeName"] == "name"
    assert row["revenue"] == 1234.5 and row["revenue" + FORMATTED] == "$1,234.50"
    assert row["_transactioncurrencyid_value" + FORMATTED] == "US Dollar"      # money brings its currency
    assert row["industrycode"] == 7 and row["industrycode" + FORMATTED] == "Consulting"
    assert row["creditonhold"] is True and row["creditonhold" + FORMATTED] == "Yes"
    assert row["lastonholdtime"] == "2024-03-05T14:07:00Z" and row["lastonholdtime" + FORMATTED] == "3/5/2024 2:07 PM"
    assert row["_ownerid_value" + FORMATTED] == "# emulator-app"
    assert row["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"
    status, plain = await fetch("accounts", xml)
    assert not any("@" in k for k in plain["value"][0] if k != "@odata.etag")


async def test_choices_sort_by_label_and_lookups_by_name_unless_raw(fetch, store):
    marker = "O" + uuid.uuid4().hex[:8]
    user = dict(user=defaults.APP_USER_ID)
    zed = store.insert("contact", {"firstname": "Zed", "lastname": marker}, **user)
    amy = store.insert("contact", {"firstname": "Amy", "lastname": marker}, **user)
    for n, (code, contact) in enumerate(((12, amy), (1, zed), (9, None), (5, zed))):   # Other, Competitor, Reseller, Partner
        store.insert("account", {"name": f"{marker} {n}", "description": marker, "customertypecode": code,
                                 "primarycontactid": contact and contact["contactid"]}, **user)
    base = (f'<entity name="account"><attribute name="customertypecode"/><attribute name="primarycontactid"/>'
            f'<filter><condition attribute="description" operator="eq" value="{marker}"/></filter>{{order}}</entity></fetch>')
    by_choice = base.replace("{order}", '<order attribute="customertypecode"/>')
    status, body = await fetch("accounts", "<fetch>" + by_choice)
    assert [r["customertypecode"] for r in body["value"]] == [1, 12, 5, 9]     # Competitor, Other, Partner, Reseller
    status, body = await fetch("accounts", '<fetch useraworderby="true">' + by_choice)
    assert [r["customertypecode"] for r in body["value"]] == [1, 5, 9, 12]
    by_lookup = base.replace("{order}", '<order attribute="primarycontactid" descending="true"/>'
                                        '<order attribute="customertypecode"/>')
    pages = await walk(fetch, "<fetch>" + by_lookup, 1, "accounts")
    assert [r["customertypecode"] for p in pages for r in p] == [1, 5, 12, 9]  # Zed, Zed, Amy, none


async def test_distinct_and_top(fetch, accounts):
    marker, _, _ = accounts
    base = (f'<entity name="account"><attribute name="owneridtype"/><filter>'
            f'<condition attribute="description" operator="eq" value="{marker}"/></filter></entity></fetch>')
    status, body = await fetch("accounts", '<fetch distinct="true">' + base.replace("owneridtype", "ownerid"))
    assert status == 200, body
    assert sorted(r["_ownerid_value"] for r in body["value"]) == sorted([defaults.APP_USER_ID, defaults.USER_ID])
    assert all("accountid" not in r for r in body["value"])
    status, body = await fetch("accounts", '<fetch top="2"><entity name="account"><attribute name="name"/>'
                               f'<filter><condition attribute="description" operator="eq" value="{marker}"/></filter>'
                               '<order attribute="name" descending="true"/></entity></fetch>', annotations="*")
    assert status == 200 and names(body) == ["r4", "r3"] and MORE not in body


# ---- link-entity --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def linked(store):
    """Two accounts (one with a primary contact) and three contacts under the first account."""
    marker = "L" + uuid.uuid4().hex[:8]
    user = dict(user=defaults.APP_USER_ID)
    a = store.insert("account", {"name": f"{marker} A", "description": marker, "industrycode": 7}, **user)
    b = store.insert("account", {"name": f"{marker} B", "description": marker}, **user)
    people = [store.insert("contact", {"firstname": first, "lastname": marker, "jobtitle": job, "annualincome": income,
                                       "parentcustomerid": a["accountid"], "parentcustomeridtype": "account"}, **user)
              for first, job, income in (("Ada", "CEO", 300.0), ("Ben", "CTO", 200.0), ("Cy", None, None))]
    store.update("account", a["accountid"], {"primarycontactid": people[0]["contactid"]}, **user)
    return marker, a, b, people


def link_fetch(marker: str, link_type: str, inner: str = "", alias: str = ' alias="pc"') -> str:
    return (f'<fetch><entity name="account"><attribute name="name"/><order attribute="name"/><filter>'
            f'<condition attribute="description" operator="eq" value="{marker}"/></filter>'
            f'<link-entity name="contact" from="contactid" to="primarycontactid" link-type="{link_type}"{alias}>'
            f'<attribute name="fullname"/><attribute name="parentcustomerid"/>{inner}</link-entity></entity></fetch>')


async def test_inner_and_outer_link_entity_with_alias(fetch, linked):
    marker, a, _, people = linked
    status, inner = await fetch("accounts", link_fetch(marker, "inner"), annotations="*")
    assert status == 200, inner
    [row] = inner["value"]
    assert row["pc.fullname"] == f"Ada {marker}"
    assert row["pc.fullname@OData.Community.Display.V1.AttributeName"] == "fullname"
    assert row["pc.parentcustomerid"] == a["accountid"]
    assert row["pc.parentcustomerid@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert row["pc.parentcustomerid" + FORMATTED] == f"{marker} A"
    status, outer = await fetch("accounts", link_fetch(marker, "outer"))
    assert names(outer) == ["A", "B"]
    assert "pc.fullname" not in outer["value"][1]
    status, generated = await fetch("accounts", link_fetch(marker, "inner", alias=""))
    assert generated["value"][0]["contact1.fullname"] == f"Ada {marker}"


async def test_filter_inside_link_entity(fetch, linked):
    marker, *_ = linked
    miss = '<filter><condition attribute="jobtitle" operator="eq" value="CTO"/></filter>'
    status, inner = await fetch("accounts", link_fetch(marker, "inner", miss))
    assert status == 200 and inner["value"] == []
    status, outer = await fetch("accounts", link_fetch(marker, "outer", miss))
    assert names(outer) == ["A", "B"] and all("pc.fullname" not in r for r in outer["value"])
    root_filter = link_fetch(marker, "outer").replace(
        "</filter>", '<condition entityname="pc" attribute="jobtitle" operator="eq" value="CEO"/></filter>', 1)
    status, body = await fetch("accounts", root_filter)
    assert names(body) == ["A"]
    without_contacts = (f'<fetch><entity name="account"><attribute name="name"/><filter>'
                        f'<condition attribute="description" operator="eq" value="{marker}"/>'
                        '<condition entityname="c" attribute="contactid" operator="null"/></filter>'
                        '<link-entity name="contact" from="parentcustomerid" to="accountid" link-type="outer" alias="c"/>'
                        '</entity></fetch>')
    status, body = await fetch("accounts", without_contacts)
    assert status == 200 and names(body) == ["B"]


async def test_nested_and_one_to_many_link_entities(fetch, linked):
    marker, a, b, people = linked
    xml = (f'<fetch><entity name="contact"><attribute name="firstname"/><order attribute="firstname"/>'
           f'<filter><condition attribute="lastname" operator="eq" value="{marker}"/></filter>'
           '<link-entity name="account" from="accountid" to="parentcustomerid" alias="acc"><attribute name="name"/>'
           '<link-entity name="contact" from="contactid" to="primarycontactid" alias="boss" link-type="outer">'
           '<attribute name="firstname"/></link-entity></link-entity></entity></fetch>')
    status, body = await fetch("contacts", xml)
    assert status == 200, body
    assert [(r["firstname"], r["acc.name"], r["boss.firstname"]) for r in body["value"]] == [
        ("Ada", f"{marker} A", "Ada"), ("Ben", f"{marker} A", "Ada"), ("Cy", f"{marker} A", "Ada")]
    one_to_many = (f'<fetch count="2"><entity name="account"><attribute name="name"/><filter>'
                   f'<condition attribute="description" operator="eq" value="{marker}"/></filter>'
                   '<link-entity name="contact" from="parentcustomerid" to="accountid" alias="c">'
                   '<attribute name="firstname"/><order attribute="firstname" descending="true"/></link-entity>'
                   '</entity></fetch>')
    pages = []
    for page in (1, 2):
        status, body = await fetch("accounts", one_to_many.replace('count="2"', f'count="2" page="{page}"'),
                                   annotations="*")
        assert status == 200, body
        pages.append(body)
    assert [r["c.firstname"] for p in pages for r in p["value"]] == ["Cy", "Ben", "Ada"]
    assert pages[0][MORE] is True and MORE not in pages[1]


async def test_exists_style_links_valueof_and_multi_select_values(fetch, store, linked):
    marker, *_ = linked
    base = (f'<fetch><entity name="account"><attribute name="name"/><order attribute="name"/><filter>'
            f'<condition attribute="description" operator="eq" value="{marker}"/></filter>'
            '<link-entity name="contact" from="parentcustomerid" to="accountid" link-type="{kind}">'
            '<filter><condition attribute="jobtitle" operator="eq" value="CTO"/></filter></link-entity></entity></fetch>')
    for kind, expected in (("any", ["A"]), ("exists", ["A"]), ("not any", ["B"])):
        status, body = await fetch("accounts", base.replace("{kind}", kind))
        assert status == 200 and names(body) == expected, (kind, body)
    in_filter = (f'<fetch><entity name="account"><attribute name="name"/><order attribute="name"/><filter>'
                 f'<condition attribute="description" operator="eq" value="{marker}"/><filter type="{{type}}">{{extra}}'
                 '<link-entity name="contact" from="parentcustomerid" to="accountid" link-type="{kind}">'
                 '<filter><condition attribute="{attr}" operator="{op}"{value}/></filter></link-entity>'
                 '</filter></filter></entity></fetch>')
    for kind, attr, op, value, expected in (
        ("all", "jobtitle", "not-null", "", ["B"]),                 # Cy has no job title; B has no contacts at all
        ("not all", "jobtitle", "not-null", "", ["A"]),
        ("all", "lastname", "eq", f' value="{marker}"', ["A", "B"]),
        ("any", "jobtitle", "eq", ' value="CTO"', ["A"]),
    ):
        xml = in_filter.format(type="and", extra="", kind=kind, attr=attr, op=op, value=value)
        status, body = await fetch("accounts", xml)
        assert status == 200 and names(body) == expected, (kind, body)
    either = in_filter.format(type="or", extra=f'<condition attribute="name" operator="eq" value="{marker} B"/>',
                              kind="any", attr="jobtitle", op="eq", value=' value="CTO"')
    status, body = await fetch("accounts", either)
    assert status == 200 and names(body) == ["A", "B"]
    user = dict(user=defaults.APP_USER_ID)
    store.insert("account", {"name": f"{marker} rich", "description": marker + "v", "revenue": 10.0, "creditlimit": 5.0,
                             "new_channels": "100000000,100000002"}, **user)
    store.insert("account", {"name": f"{marker} poor", "description": marker + "v", "revenue": 1.0, "creditlimit": 5.0,
                             "new_channels": "100000001"}, **user)
    where = f'<condition attribute="description" operator="eq" value="{marker}v"/>'
    for condition, expected in (
        ('<condition attribute="revenue" operator="gt" valueof="creditlimit"/>', ["rich"]),
        ('<condition attribute="new_channels" operator="contain-values"><value>100000002</value></condition>', ["rich"]),
        ('<condition attribute="new_channels" operator="not-contain-values"><value>100000002</value></condition>',
         ["poor"]),
    ):
        xml = (f'<fetch><entity name="account"><attribute name="name"/><filter>{where}{condition}</filter>'
               '</entity></fetch>')
        status, body = await fetch("accounts", xml)
        assert status == 200 and names(body) == expected, (condition[:80], body)


async def test_long_fetchxml_through_batch(api, accounts):
    """Over 32 KB of URL: §4.5 moves the GET into a $batch part (64 KB limit)."""
    marker, *_ = accounts
    values = "".join(f"<value>{n}</value>" for n in range(1000, 2400)) + "<value>20</value>"
    xml = (f'<fetch><entity name="account"><attribute name="name"/><filter>'
           f'<condition attribute="description" operator="eq" value="{marker}"/>'
           f'<condition attribute="numberofemployees" operator="in">{values}</condition></filter></entity></fetch>')
    url = f"{api.base_url}accounts?fetchXml={quote(xml)}"
    assert 32_768 < len(url) < 65_536
    body = (f"--b1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"GET {url} HTTP/1.1\r\nAccept: application/json\r\n\r\n--b1--\r\n")
    response = await api.post("$batch", content=body.encode(), headers={"Content-Type": "multipart/mixed; boundary=b1"})
    assert response.status_code == 200, response.text[:500]
    assert "HTTP/1.1 200 OK" in response.text
    part = response.text[response.text.index('{"@odata.context"'):]
    part = part[:part.index("\r\n--batchresponse")].strip()
    assert [r["name"] for r in json.loads(part)["value"]] == [f"{marker} r1"]


def test_thousands_of_conditions_stay_within_sqlite_limits(store):
    """Too long for a URL, but `execute_fetch` callers may send it: up to SQL Server's 2,100 values."""
    name = "W" + uuid.uuid4().hex[:8]
    store.insert("account", {"name": name}, user=defaults.APP_USER_ID)
    xml = ('<fetch><entity name="account"><attribute name="name"/><filter type="or">'
           + '<condition attribute="name" operator="eq" value="x"/>' * 2000
           + f'<condition attribute="name" operator="eq" value="{name}"/></filter></entity></fetch>')
    status, _, body = execute_fetch(store, "accounts", xml)
    assert status == 200 and [r["name"] for r in body["value"]] == [name]


def test_more_condition_values_than_sql_server_takes_are_refused(store):
    values = "".join(f"<value>v{i}</value>" for i in range(2100))
    xml = ('<fetch><entity name="account"><attribute name="name"/><filter>'
           f'<condition attribute="name" operator="in">{values}</condition></filter></entity></fetch>')
    status, _, body = execute_fetch(store, "accounts", xml)
    assert status == 400 and body["error"]["code"] == "0x80044150", body
    assert "2101 conditions and condition values" in body["error"]["message"]


async def test_many_to_many_through_the_intersect_entity(fetch, store):
    marker = "T" + uuid.uuid4().hex[:8]
    team = store.insert("team", {"name": marker, "teamtype": 0, "businessunitid": defaults.BUSINESS_UNIT_ID},
                        user=defaults.APP_USER_ID)
    for user in (defaults.APP_USER_ID, defaults.USER_ID):
        store.associate("teammembership", ("systemuserid", "teamid"), (user, team["teamid"]))
    xml = (f'<fetch><entity name="team"><attribute name="name"/><filter>'
           f'<condition attribute="name" operator="eq" value="{marker}"/></filter>'
           '<link-entity name="teammembership" from="teamid" to="teamid" intersect="true">'
           '<link-entity name="systemuser" from="systemuserid" to="systemuserid" alias="u">'
           '<attribute name="fullname"/><order attribute="fullname"/></link-entity></link-entity></entity></fetch>')
    status, body = await fetch("teams", xml)
    assert status == 200, body
    assert [r["u.fullname"] for r in body["value"]] == ["# emulator-app", defaults.USER_NAME]


# ---- aggregates ---------------------------------------------------------------------------------

async def test_aggregates_with_groupby(fetch, linked, accounts):
    marker, *_ = accounts
    xml = ('<fetch aggregate="true"><entity name="account">'
           '<attribute name="numberofemployees" alias="total" aggregate="sum"/>'
           '<attribute name="numberofemployees" alias="average" aggregate="avg"/>'
           '<attribute name="numberofemployees" alias="least" aggregate="min"/>'
           '<attribute name="numberofemployees" alias="most" aggregate="max"/>'
           '<attribute name="accountid" alias="rows" aggregate="count"/>'
           '<attribute name="numberofemployees" alias="filled" aggregate="countcolumn"/>'
           '<attribute name="ownerid" alias="owners" aggregate="countcolumn" distinct="true"/>'
           f'<filter><condition attribute="description" operator="eq" value="{marker}"/></filter></entity></fetch>')
    status, body = await fetch("accounts", xml, annotations="*")
    assert status == 200, body
    [row] = body["value"]
    assert (row["total"], row["least"], row["most"], row["rows"], row["filled"], row["owners"]) == (110, 10, 50, 5, 4, 2)
    assert row["average"] == 27.5 and row["total" + FORMATTED] == "110" and "@odata.etag" not in row
    grouped = ('<fetch aggregate="true"><entity name="account">'
               '<attribute name="ownerid" alias="owner" groupby="true"/>'
               '<attribute name="accountid" alias="n" aggregate="count"/>'
               '<attribute name="numberofemployees" alias="people" aggregate="sum"/>'
               '<attribute name="lastonholdtime" alias="year" groupby="true" dategrouping="year"/>'
               f'<filter><condition attribute="description" operator="eq" value="{marker}"/></filter>'
               '<order alias="people" descending="true"/></entity></fetch>')
    status, body = await fetch("accounts", grouped, annotations="*")
    assert status == 200, body
    this_year = datetime.now(UTC).year
    got = [(r["owner"], r["year"], r["n"], r.get("people")) for r in body["value"]]
    expected = {}
    for _, v in accounts[1].items():
        key = (v["owner"], v["lastonholdtime"].year)
        n, people = expected.get(key, (0, None))
        expected[key] = (n + 1, (people or 0) + v["numberofemployees"] if v["numberofemployees"] else people)
    assert sorted(got, key=lambda r: (r[0], r[1])) == sorted((k[0], k[1], n, p) for k, (n, p) in expected.items())
    assert [r.get("people") or 0 for r in body["value"]] == sorted((r.get("people") or 0 for r in body["value"]), reverse=True)
    first = body["value"][0]
    assert first["owner" + FORMATTED] in ("# emulator-app", defaults.USER_NAME)
    assert first["year" + FORMATTED] == str(first["year"]) and this_year - 2 <= first["year"] <= this_year + 1


async def test_groupby_over_link_entity_and_null_group_keys(fetch, linked):
    marker, *_ = linked
    xml = ('<fetch aggregate="true"><entity name="contact">'
           '<attribute name="jobtitle" alias="job" groupby="true"/>'
           '<attribute name="annualincome" alias="income" aggregate="sum"/>'
           f'<filter><condition attribute="lastname" operator="eq" value="{marker}"/></filter>'
           '<link-entity name="account" from="accountid" to="parentcustomerid" alias="a">'
           '<attribute name="industrycode" alias="industry" groupby="true"/></link-entity>'
           '<order alias="job"/></entity></fetch>')
    status, body = await fetch("contacts", xml, annotations="*")
    assert status == 200, body
    assert body["value"][0] == {"industry@OData.Community.Display.V1.FormattedValue": "Consulting", "industry": 7}
    assert [(r.get("job"), r.get("income")) for r in body["value"]] == [(None, None), ("CEO", 300.0), ("CTO", 200.0)]
    assert body["value"][1]["income" + FORMATTED] == "$300.00"


async def test_aggregate_limit_and_mistakes(fetch, accounts):
    marker, *_ = accounts
    over = ('<fetch aggregate="true" aggregatelimit="3"><entity name="account">'
            '<attribute name="accountid" alias="n" aggregate="count"/>'
            f'<filter><condition attribute="description" operator="eq" value="{marker}"/></filter></entity></fetch>')
    status, body = await fetch("accounts", over)
    assert status == 400 and body["error"]["code"] == "0x8004E023"
    assert body["error"]["message"] == "AggregateQueryRecordLimit exceeded. Cannot perform this operation."
    no_alias = '<fetch aggregate="true"><entity name="account"><attribute name="accountid" aggregate="count"/></entity></fetch>'
    status, body = await fetch("accounts", no_alias)
    assert status == 400 and "alias" in body["error"]["message"]
    plain = ('<fetch aggregate="true"><entity name="account"><attribute name="name" alias="x"/>'
             '<attribute name="accountid" alias="n" aggregate="count"/></entity></fetch>')
    status, body = await fetch("accounts", plain)
    assert status == 400 and "neither groupby nor aggregate" in body["error"]["message"]


# ---- paging -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def many_leads(store):
    marker = "P" + uuid.uuid4().hex[:8]
    with store.transaction():
        ids = {store.insert("lead", {"subject": marker, "lastname": f"name {i % 7}", "leadqualitycode": i % 3 + 1},
                            user=defaults.APP_USER_ID)["leadid"] for i in range(ROWS)}
    return marker, ids


def with_paging(xml: str, page: int, count: int, cookie: str | None) -> str:
    root = ElementTree.fromstring(xml)
    root.set("page", str(page))
    root.set("count", str(count))
    if cookie is not None:
        root.set("paging-cookie", cookie)
    return ElementTree.tostring(root, encoding="unicode")


def inner_cookie(annotation: str) -> str:
    """What §4.3 tells clients to do: take `pagingcookie`, URL-decode it twice."""
    return unquote(unquote(re.search(r'pagingcookie="([^"]*)"', annotation).group(1)))


async def walk(fetch, xml: str, count: int, entity_set: str = "leads") -> list[list[dict]]:
    pages, cookie = [], None
    for page in range(1, 20):
        status, body = await fetch(entity_set, with_paging(xml, page, count, cookie),
                                   annotations="Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords")
        assert status == 200, body
        pages.append(body["value"])
        if not body.get(MORE):
            assert COOKIE not in body
            return pages
        assert body[COOKIE].startswith(f'<cookie pagenumber="{page + 1}" pagingcookie="%253ccookie%2520page%253d%2522{page}%2522%253e')
        cookie = inner_cookie(body[COOKIE])
    raise AssertionError("more than 20 pages")


@pytest.mark.slow
async def test_paging_cookie_returns_12000_rows_exactly_once(fetch, many_leads):
    marker, ids = many_leads
    xml = (f'<fetch><entity name="lead"><attribute name="lastname"/><attribute name="leadqualitycode"/>'
           f'<filter><condition attribute="subject" operator="eq" value="{marker}"/></filter>'
           '<order attribute="leadqualitycode" descending="true"/><order attribute="lastname"/></entity></fetch>')
    pages = await walk(fetch, xml, 5000)
    assert [len(p) for p in pages] == [5000, 5000, 2000]
    rows = [r for p in pages for r in p]
    assert len(rows) == ROWS and {r["leadid"] for r in rows} == ids
    rating = {1: "Hot", 2: "Warm", 3: "Cold"}            # choices sort by label: Warm, Hot, Cold descending
    keys = [(rating[r["leadqualitycode"]], r["lastname"], r["leadid"]) for r in rows]
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)
    assert all(a[1:] < b[1:] for a, b in zip(keys, keys[1:], strict=False) if a[0] == b[0])


@pytest.mark.parametrize("orders", [
    '<order attribute="address1_city"/>',
    '<order attribute="address1_city" descending="true"/><order attribute="numberofemployees"/>',
    '<order attribute="numberofemployees" descending="true"/>',
])
async def test_cookie_paging_over_null_sort_keys(fetch, accounts, orders):
    marker, rows, _ = accounts
    xml = (f'<fetch><entity name="account"><attribute name="name"/><attribute name="address1_city"/>'
           f'<attribute name="numberofemployees"/><filter><condition attribute="description" operator="eq" '
           f'value="{marker}"/></filter>{orders}</entity></fetch>')
    pages = await walk(fetch, xml, 2, "accounts")
    paged = [r["accountid"] for p in pages for r in p]
    status, whole = await fetch("accounts", xml)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert paged == [r["accountid"] for r in whole["value"]]


async def test_cookie_pages_are_keyset_and_plain_pages_are_offsets(fetch, store, many_leads):
    """A row inserted before the cursor shifts OFFSET pages but not cookie pages: page 2 continues
    after the last row the client saw."""
    marker, _ = many_leads
    xml = (f'<fetch><entity name="lead"><attribute name="lastname"/>'
           f'<filter><condition attribute="subject" operator="eq" value="{marker}"/>'
           '<condition attribute="lastname" operator="eq" value="name 3"/></filter>'
           '<order attribute="lastname"/></entity></fetch>')
    status, first = await fetch("leads", with_paging(xml, 1, 10, None), annotations="*")
    cookie = inner_cookie(first[COOKIE])
    assert re.fullmatch(r'<cookie page="1"><lastname last="name 3" first="name 3" />'
                        r'<leadid last="\{[0-9A-F-]{36}\}" first="\{[0-9A-F-]{36}\}" /></cookie>', cookie)
    first_ever = f"00000000-0000-4000-8000-{uuid.uuid4().hex[:12]}"   # sorts before every uuid4 of page 1
    store.insert("lead", {"leadid": first_ever, "subject": marker, "lastname": "name 3"}, user=defaults.APP_USER_ID)
    status, keyset = await fetch("leads", with_paging(xml, 2, 10, cookie))
    status, offset = await fetch("leads", with_paging(xml, 2, 10, None))
    seen = {r["leadid"] for r in first["value"]}
    assert not seen & {r["leadid"] for r in keyset["value"]}
    assert seen & {r["leadid"] for r in offset["value"]} == {first["value"][-1]["leadid"]}


async def test_paging_without_annotations_and_count(fetch, many_leads):
    marker, _ = many_leads
    xml = (f'<fetch count="3" returntotalrecordcount="true"><entity name="lead"><attribute name="lastname"/>'
           f'<filter><condition attribute="subject" operator="eq" value="{marker}"/></filter></entity></fetch>')
    status, body = await fetch("leads", xml)
    assert status == 200 and len(body["value"]) == 3 and COOKIE not in body and MORE not in body
    status, body = await fetch("leads", xml, annotations="*", count=True)
    assert body["@odata.count"] == 5000 and body["@Microsoft.Dynamics.CRM.totalrecordcount"] == 5000
    assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is True


# ---- refusals -----------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<fetch><entity name="account"><attribute name="name"/><filter>
<condition attribute="name" operator="eq" value="&lol9;"/></filter></entity></fetch>"""
EXTERNAL = """<?xml version="1.0"?><!DOCTYPE fetch [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<fetch><entity name="account"><filter><condition attribute="name" operator="eq" value="&secret;"/></filter></entity></fetch>"""

REFUSED = [
    (BILLION_LAUGHS, "0x80040203", "DTD"),
    (EXTERNAL, "0x80040203", "DTD"),
    ('<fetch><entity name="account"><attribute name="name"></entity></fetch>', "0x80040203", "not well-formed"),
    ('<query><entity name="account"/></query>', "0x80040203", "'fetch'"),
    ('<fetch><entity name="nope"/></fetch>', "0x80041102", "'nope'"),
    ('<fetch><entity name="contact"/></fetch>', "0x80040203", "does not match"),
    ('<fetch><entity name="account"><attribute name="nope"/></entity></fetch>', "0x80041103",
     "'account' entity doesn't contain attribute with Name = 'nope' and NameMapping = 'Logical'."),
    ('<fetch><entity name="account"><order attribute="Name"/></entity></fetch>', "0x80041103", "'Name'"),
    ('<fetch><entity name="account"><filter><condition attribute="numberofemployees" operator="eq" value="ten"/>'
     '</filter></entity></fetch>', "0x80040203", "System.Int32"),
    ('<fetch><entity name="account"><filter><condition attribute="name" operator="sounds-like" value="x"/>'
     '</filter></entity></fetch>', "0x80040203", "sounds-like"),
    ('<fetch><entity name="account"><filter><condition attribute="name" operator="today"/></filter></entity></fetch>',
     "0x80040203", "date"),
    ('<fetch><entity name="account"><attribute name="name"/><bogus/></entity></fetch>', "0x80040203", "'bogus'"),
    ('<fetch top="5" count="5"><entity name="account"/></fetch>', "0x80040203", "top"),
    ('<fetch count="zero"><entity name="account"/></fetch>', "0x80040203", "count"),
    ('<fetch page="99999999999999999999" count="5"><entity name="account"/></fetch>', "0x80040203", "page"),
    ('<fetch count="2147483648"><entity name="account"/></fetch>', "0x80040203", "count"),
    ('<fetch><entity name="account"><filter><condition attribute="name" operator="like" value="[a-c]%"/></filter>'
     '</entity></fetch>', "0x80060888", "[a-c]"),
    ('<fetch><entity name="account"><link-entity name="contact" from="nope" to="primarycontactid"/></entity></fetch>',
     "0x80041103", "'contact' entity"),
    ('<fetch><entity name="account"><filter><condition entityname="zz" attribute="name" operator="null"/></filter>'
     '</entity></fetch>', "0x80040203", "'zz'"),
    ('<fetch><entity name="account">' + '<filter type="or">' * 40 + '<condition attribute="name" operator="null"/>'
     + '</filter>' * 40 + '</entity></fetch>', "0x80040203", "nested"),
    ('<fetch><entity name="account">' + '<link-entity name="contact" from="contactid" to="primarycontactid"/>' * 16
     + '</entity></fetch>', "0x80040203", "Number of link entities in query exceeded maximum limit."),
]


@pytest.mark.parametrize("xml, code, message", REFUSED, ids=[f"r{i}" for i in range(len(REFUSED))])
async def test_bad_fetchxml_is_a_400_never_a_500(fetch, xml, code, message):
    status, body = await fetch("accounts", xml)
    assert status == 400, body
    assert body["error"]["code"] == code
    assert message in body["error"]["message"]


ATTRS = ["name", "numberofemployees", "revenue", "creditonhold", "industrycode", "lastonholdtime", "primarycontactid",
         "ownerid", "new_channels", "accountid", "nope", "_ownerid_value"]
OPS = ["eq", "ne", "lt", "ge", "like", "begins-with", "in", "not-in", "null", "between", "on", "on-or-after",
       "last-x-days", "next-x-years", "today", "this-year", "eq-userid", "contain-values", "under", "bogus"]
VALUES = ["1", "-5", "abc", "2024-01-01", "1/2/2024", "{00000000-0000-4000-8000-0000000000a2}", "true", "", "1.5",
          "1e400", "99999999999999999999", "%", "'", "&amp;", "2024-13-45", "&lt;cookie/&gt;", "[%]", "[a-c]",
          "9999-12-31T23:59:59-05:00", "99999"]
value = st.sampled_from(VALUES)
condition = st.builds(
    lambda a, o, v, vs: (f'<condition attribute="{a}" operator="{o}"' + (f' value="{v}"' if v is not None else "")
                         + ">" + "".join(f"<value>{x}</value>" for x in vs) + "</condition>"),
    st.sampled_from(ATTRS), st.sampled_from(OPS), st.none() | value, st.lists(value, max_size=3))
attribute = st.builds(
    lambda a, agg, group, alias: (f'<attribute name="{a}"' + (f' aggregate="{agg}"' if agg else "")
                                  + (' groupby="true"' if group else "") + (f' alias="{alias}"' if alias else "") + "/>"),
    st.sampled_from(ATTRS), st.sampled_from([None, "count", "countcolumn", "sum", "avg", "max", "x"]), st.booleans(),
    st.sampled_from([None, "a", "b"]))
fetch_attrs = st.dictionaries(
    st.sampled_from(["top", "count", "page", "distinct", "aggregate", "useraworderby", "paging-cookie"]),
    st.sampled_from(["1", "2", "0", "5001", "true", "x", "99999999999999999999", '&lt;cookie page="1"&gt;&lt;accountid last="{0}"/&gt;&lt;/cookie&gt;']),
    max_size=3)
link = st.builds(
    lambda name, frm, to, kind, body: (f'<link-entity name="{name}" from="{frm}" to="{to}" link-type="{kind}" alias="l">'
                                       f"{body}</link-entity>"),
    st.sampled_from(["contact", "account", "nope"]), st.sampled_from(["contactid", "parentcustomerid", "accountid"]),
    st.sampled_from(["primarycontactid", "accountid", "name"]), st.sampled_from(["inner", "outer", "not any", "bad"]),
    st.lists(attribute | condition.map(lambda c: f"<filter>{c}</filter>"), max_size=2).map("".join))
query = st.builds(
    lambda attrs, parts, order, links: (f"<fetch{''.join(f' {k}={chr(34)}{v}{chr(34)}' for k, v in attrs.items())}>"
                                        f'<entity name="account">{parts}{order}{links}</entity></fetch>'),
    fetch_attrs, st.lists(attribute | condition.map(lambda c: f'<filter type="or">{c}</filter>'), max_size=4).map("".join),
    st.sampled_from(["", '<order attribute="name"/>', '<order attribute="industrycode" descending="true"/>',
                     '<order alias="a"/>', '<order attribute="nope"/>']),
    st.lists(link, max_size=2).map("".join))


@settings(max_examples=300, deadline=None)
@given(xml=query, annotations=st.sampled_from([None, "*"]))
def test_any_fetchxml_is_answered_with_200_or_400(store, xml, annotations):
    status, _, body = execute_fetch(store, "accounts", xml, annotations=annotations)
    assert status in (200, 400), body
    assert ("value" in body) if status == 200 else body["error"]["message"]


async def test_like_reads_sql_server_brackets(fetch, store):
    """`[%]` is a literal percent sign, a bare % a wildcard, as in SQL Server's LIKE."""
    marker = "K" + uuid.uuid4().hex[:8]
    for name in ("50%", "500"):
        store.insert("account", {"name": f"{marker} {name}"}, user=defaults.APP_USER_ID)

    async def like(pattern: str) -> list[str]:
        status, body = await fetch("accounts", f'<fetch><entity name="account"><attribute name="name"/><order attribute="name"/>'
                                               f'<filter><condition attribute="name" operator="like" value="{marker} {pattern}"/>'
                                               "</filter></entity></fetch>")
        assert status == 200, body
        return names(body)

    assert await like("50[%]") == ["50%"]
    assert await like("50%") == ["50%", "500"]
