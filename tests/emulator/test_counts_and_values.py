"""RetrieveTotalRecordCount and a simple column's raw `$value`, over HTTPS."""

from __future__ import annotations

from d365_components.emulator import defaults


async def test_retrieve_total_record_count(api, store, unique):
    before = (await api.get("RetrieveTotalRecordCount(EntityNames=@p)", params={"@p": '["account","contact"]'})).json()
    store.insert("account", {"name": f"{unique} counted"}, user=defaults.USER_ID)
    response = await api.get("RetrieveTotalRecordCount(EntityNames=@p)", params={"@p": '["account","contact"]'})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse")
    counts = body["EntityRecordCountCollection"]
    assert (counts["Count"], counts["IsReadOnly"], counts["Keys"]) == (2, False, ["account", "contact"])
    old = before["EntityRecordCountCollection"]["Values"]
    assert counts["Values"] == [old[0] + 1, old[1]]


async def test_retrieve_total_record_count_refuses_unknown_tables(api):
    response = await api.get("RetrieveTotalRecordCount(EntityNames=@p)", params={"@p": '["nosuchtable"]'})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80040203"


async def test_raw_value_of_simple_columns(api, store, unique):
    row = store.insert("account", {"name": f"{unique} raw", "numberofemployees": 42, "creditonhold": 1},
                       user=defaults.USER_ID)
    base = f"accounts({row['accountid']})"
    for column, text in (("numberofemployees", "42"), ("name", f"{unique} raw"), ("creditonhold", "true")):
        response = await api.get(f"{base}/{column}/$value")
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.text == text
    assert (await api.get(f"{base}/telephone1/$value")).status_code == 204
    assert (await api.get(f"{base}/nosuchcolumn/$value")).status_code == 404
    assert (await api.get(f"{base}/name/$value?$select=name")).status_code == 400
