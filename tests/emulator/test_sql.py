"""`GET {entityset}?sql=`: the SQL subset over HTTPS, exactly the selected columns, paging by
@odata.nextLink, and a 400 in Dataverse's error shape for everything outside the subset."""

from __future__ import annotations

import pytest

from d365_components.emulator import defaults


@pytest.fixture
def rows(store, unique):
    """Four accounts named `<unique> A..D` with employee counts, one contact under `A`."""
    ids = {}
    for name, employees in (("A", 10), ("B", 20), ("C", 30), ("D", None)):
        row = store.insert("account", {"name": f"{unique} {name}", "numberofemployees": employees,
                                       "address1_city": "Oslo" if name in "AB" else "Rome"}, user=defaults.USER_ID)
        ids[name] = row["accountid"]
    store.insert("contact", {"lastname": f"{unique} c", "parentcustomerid": ids["A"], "parentcustomeridtype": "account"},
                 user=defaults.USER_ID)
    return unique, ids


async def sql(api, statement: str, entity_set: str = "accounts", headers: dict[str, str] | None = None):
    response = await api.get(entity_set, params={"sql": statement}, headers=headers or {})
    return response.status_code, response.json()


@pytest.mark.parametrize(("where", "expected"), [
    ("numberofemployees = 20", ["B"]),
    ("numberofemployees <> 20", ["A", "C"]),
    ("numberofemployees != 20", ["A", "C"]),
    ("numberofemployees > 10", ["B", "C"]),
    ("numberofemployees >= 20", ["B", "C"]),
    ("numberofemployees < 20", ["A"]),
    ("numberofemployees <= 20", ["A", "B"]),
    ("numberofemployees IN (10, 30)", ["A", "C"]),
    ("numberofemployees NOT IN (10, 30)", ["B"]),
    ("numberofemployees IS NULL", ["D"]),
    ("numberofemployees IS NOT NULL", ["A", "B", "C"]),
    ("numberofemployees BETWEEN 15 AND 30", ["B", "C"]),
    ("(numberofemployees = 10 OR numberofemployees = 30) AND address1_city = 'Rome'", ["C"]),
    ("NOT (address1_city = 'Oslo')", ["C", "D"]),
])
async def test_where_operators(api, rows, where, expected):
    unique, _ = rows
    status, body = await sql(api, f"SELECT name FROM account WHERE name LIKE '{unique}%' AND ({where}) ORDER BY name")
    assert status == 200, body
    assert [r["name"].split(" ")[1] for r in body["value"]] == expected


async def test_only_the_selected_columns_top_distinct_and_order(api, rows):
    unique, _ = rows
    status, body = await sql(api, f"SELECT TOP 2 name AS n, numberofemployees FROM account "
                                  f"WHERE name LIKE '{unique}%' ORDER BY numberofemployees DESC")
    assert status == 200
    assert body["value"] == [{"n": f"{unique} C", "numberofemployees": 30}, {"n": f"{unique} B", "numberofemployees": 20}]
    status, body = await sql(api, f"SELECT DISTINCT address1_city FROM account WHERE name LIKE '{unique}%' "
                                  "ORDER BY address1_city")
    assert body["value"] == [{"address1_city": "Oslo"}, {"address1_city": "Rome"}]


async def test_joins_by_lookup_logical_name(api, rows):
    unique, _ = rows
    status, body = await sql(api, f"SELECT a.name, c.lastname FROM account a INNER JOIN contact c "
                                  f"ON a.accountid = c.parentcustomerid WHERE a.name LIKE '{unique}%'")
    assert status == 200, body
    assert body["value"] == [{"name": f"{unique} A", "lastname": f"{unique} c"}]
    status, body = await sql(api, f"SELECT a.name, c.lastname FROM account a LEFT JOIN contact c "
                                  f"ON a.accountid = c.parentcustomerid WHERE a.name LIKE '{unique}%' ORDER BY a.name")
    assert [r["lastname"] for r in body["value"]] == [f"{unique} c", None, None, None]


async def test_aggregates_and_group_by(api, rows):
    unique, _ = rows
    status, body = await sql(api, "SELECT address1_city, COUNT(*) AS n, COUNT(numberofemployees) AS known, "
                                  "SUM(numberofemployees) AS total, AVG(numberofemployees) AS mean, "
                                  "MIN(numberofemployees) AS low, MAX(numberofemployees) AS high FROM account "
                                  f"WHERE name LIKE '{unique}%' GROUP BY address1_city ORDER BY address1_city")
    assert status == 200, body
    assert body["value"] == [
        {"address1_city": "Oslo", "n": 2, "known": 2, "total": 30, "mean": 15, "low": 10, "high": 20},
        {"address1_city": "Rome", "n": 2, "known": 1, "total": 30, "mean": 30, "low": 30, "high": 30},
    ]


async def test_offset_fetch_and_paging_by_next_link(api, rows):
    unique, _ = rows
    status, body = await sql(api, f"SELECT name FROM account WHERE name LIKE '{unique}%' ORDER BY name "
                                  "OFFSET 1 ROWS FETCH NEXT 2 ROWS ONLY")
    assert [r["name"] for r in body["value"]] == [f"{unique} B", f"{unique} C"]
    status, body = await sql(api, f"SELECT name FROM account WHERE name LIKE '{unique}%' ORDER BY name",
                             headers={"Prefer": "odata.maxpagesize=3"})
    assert len(body["value"]) == 3
    response = await api.get(body["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=3"})
    assert response.json()["value"] == [{"name": f"{unique} D"}]
    assert "@odata.nextLink" not in response.json()


async def test_values_are_parameters_not_sql(api, rows):
    unique, _ = rows
    status, body = await sql(api, "SELECT name FROM account WHERE name = 'x'' OR 1=1 --'")
    assert (status, body["value"]) == (200, [])


@pytest.mark.parametrize("statement", [
    "SELECT UPPER(name) AS loud FROM account",
    "SELECT name FROM account; DELETE FROM account",
    "DELETE FROM account",
    "UPDATE account SET name = 'x'",
    "SELECT name FROM account UNION SELECT fullname FROM contact",
    "SELECT name, COUNT(*) FROM account GROUP BY name HAVING COUNT(*) > 1",
    "WITH x AS (SELECT name FROM account) SELECT name FROM x",
    "SELECT name FROM account WHERE accountid IN (SELECT parentcustomerid FROM contact)",
    "SELECT a.name FROM account a RIGHT JOIN contact c ON a.accountid = c.parentcustomerid",
    "SELECT a.name FROM account a FULL JOIN contact c ON a.accountid = c.parentcustomerid",
    "SELECT a.name FROM account a CROSS JOIN contact c",
    "SELECT CASE WHEN name = 'x' THEN 1 END FROM account",
    "SELECT COALESCE(name, 'x') FROM account",
    "SELECT name FROM account -- comment",
])
async def test_outside_the_subset_is_refused(api, statement):
    status, body = await sql(api, statement)
    assert status == 400
    assert body["error"]["code"] == "0x80060888"
    assert "not supported" in body["error"]["message"]


@pytest.mark.parametrize(("statement", "entity_set"), [
    ("SELECT nosuchcolumn FROM account", "accounts"),
    ("SELECT name FROM nosuchtable", "accounts"),
    ("SELECT fullname FROM contact", "accounts"),
    ("SELECT name FROM account WHERE", "accounts"),
    ("SELECT TOP 5001 name FROM account", "accounts"),
    ("SELECT name, COUNT(*) AS n FROM account", "accounts"),
    ("", "accounts"),
])
async def test_bad_statements_are_400(api, statement, entity_set):
    status, body = await sql(api, statement, entity_set)
    assert status == 400
    assert set(body["error"]) >= {"code", "message"}


async def test_other_query_options_with_sql_are_refused(api):
    response = await api.get("accounts", params={"sql": "SELECT name FROM account", "$top": "1"})
    assert response.status_code == 400


async def test_guids_compare_case_insensitively(api, rows):
    unique, ids = rows
    status, body = await sql(api, f"SELECT name FROM account WHERE accountid = '{ids['B'].upper()}'")
    assert body["value"] == [{"name": f"{unique} B"}]
    status, body = await sql(api, f"SELECT name FROM account WHERE accountid IN ('{ids['A'].upper()}', '{ids['C']}') "
                                  "ORDER BY name")
    assert [r["name"] for r in body["value"]] == [f"{unique} A", f"{unique} C"]
