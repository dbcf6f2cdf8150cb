"""Change tracking over HTTPS: delta links on the last page, changes and deletions since a token,
rejected options, expired tokens, tables without change tracking."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from d365_components.emulator.extensions import EmulatorFeatures, install
from d365_components.emulator.server import Emulator

TRACK = {"Prefer": "odata.track-changes"}


@pytest.fixture(scope="module")
def emulator():
    emulator = Emulator(seed="demo")
    emulator.app = install(emulator.app, settings=EmulatorFeatures(webhooks=False))
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emulator):
    headers = {"Authorization": f"Bearer {emulator.get_token()}", "Accept": "application/json",
               "OData-Version": "4.0", "OData-MaxVersion": "4.0"}
    with httpx.Client(base_url=emulator.api_url + "/", verify=emulator.ssl_context, headers=headers,
                      timeout=30) as client:
        yield client


def create(client, name: str) -> str:
    response = client.post("accounts", json={"name": name})
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def initial_sync(client, url: str, page_size: int | None = None) -> tuple[list[dict], str]:
    prefer = "odata.track-changes" + (f",odata.maxpagesize={page_size}" if page_size else "")
    rows, pages = [], 0
    while True:
        response = client.get(url, headers={"Prefer": prefer})
        assert response.status_code == 200, response.text
        assert "odata.track-changes" in response.headers["Preference-Applied"]
        body = response.json()
        rows += body["value"]
        pages += 1
        if "@odata.nextLink" in body:
            assert "@odata.deltaLink" not in body      # only the last page carries it
            url = body["@odata.nextLink"]
            continue
        return rows, body["@odata.deltaLink"]


def test_delta_link_returns_changes_then_deletions(client):
    marker = uuid.uuid4().hex[:8]
    keep, change, remove = (create(client, f"ct {marker} {n}") for n in ("keep", "change", "remove"))
    rows, delta_link = initial_sync(client, "accounts?$select=name", page_size=2)
    assert {keep, change, remove} <= {r["accountid"] for r in rows}
    assert "$deltatoken=" in delta_link and delta_link.startswith(client.base_url.scheme)

    assert client.patch(f"accounts({change})", json={"name": f"ct {marker} changed"}).status_code == 204
    added = create(client, f"ct {marker} added")
    assert client.delete(f"accounts({remove})").status_code == 204
    gone = create(client, f"ct {marker} brief")           # created and deleted between syncs
    assert client.delete(f"accounts({gone})").status_code == 204

    body = client.get(delta_link, headers=TRACK).json()
    assert body["@odata.context"].endswith("$metadata#accounts(name)/$delta")
    changed = [v for v in body["value"] if "@odata.context" not in v]
    deleted = [v for v in body["value"] if "@odata.context" in v]
    assert [r["accountid"] for r in changed] == [change, added]      # ordered by version
    assert changed[0]["name"] == f"ct {marker} changed" and "@odata.etag" in changed[0]
    assert set(changed[0]) == {"@odata.etag", "name", "accountid"}
    assert body["value"][-len(deleted):] == deleted                  # deletions come last
    assert {d["id"] for d in deleted} == {remove, gone}
    assert all(d["reason"] == "deleted" and d["@odata.context"].endswith("accounts/$deletedEntity") for d in deleted)

    # the new delta link starts after these changes
    again = client.get(body["@odata.deltaLink"], headers=TRACK).json()
    assert again["value"] == []
    assert client.get(body["@odata.deltaLink"].replace("accounts?", "accounts/$count?")).text == "0"
    assert client.get(delta_link.replace("accounts?", "accounts/$count?")).text == "4"


def test_large_delta_pages_with_the_delta_link_on_the_last_page(client):
    _, delta_link = initial_sync(client, "accounts?$select=name")
    made = [create(client, f"ct paging {n}") for n in range(5)]
    seen, url, pages = [], delta_link, 0
    while True:
        body = client.get(url, headers={"Prefer": "odata.track-changes,odata.maxpagesize=2"}).json()
        seen += [v["accountid"] for v in body["value"]]
        pages += 1
        if "@odata.nextLink" not in body:
            assert "@odata.deltaLink" in body
            break
        url = body["@odata.nextLink"]
    assert seen == made and pages == 3


def test_query_options_that_change_tracking_rejects(client):
    for option in ("$filter=name eq 'x'", "$orderby=name", "$top=2", "$expand=primarycontactid"):
        response = client.get(f"accounts?$select=name&{option}", headers=TRACK)
        assert response.status_code == 400
        name = option.split("=")[0]
        assert response.json()["error"]["message"] == \
            f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.'


def test_expired_and_invalid_tokens(emulator, client):
    _, delta_link = initial_sync(client, "accounts?$select=name")
    tracking = emulator.app.state.change_tracking
    tracking.clock = lambda: time.time() + 8 * 86400         # a week and a day later
    try:
        response = client.get(delta_link, headers=TRACK)
    finally:
        tracking.clock = time.time
    assert response.status_code == 400
    assert "expired" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == EmulatorFeatures().change_tracking_errors.expired[1]
    bad = client.get("accounts?$select=name&$deltatoken=nonsense", headers=TRACK)
    assert bad.status_code == 400 and "not valid" in bad.json()["error"]["message"]


def test_tables_without_change_tracking_refuse(client):
    # a fresh org's standard tables all track changes here; a new table does not unless asked to
    label = {"LocalizedLabels": [{"Label": "Untracked", "LanguageCode": 1033}]}
    created = client.post("EntityDefinitions", json={
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata", "SchemaName": "new_Untracked", "DisplayName": label,
        "DisplayCollectionName": label, "OwnershipType": "UserOwned", "HasActivities": False, "HasNotes": False,
        "Attributes": [{"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "AttributeType": "String",
                        "SchemaName": "new_Name", "MaxLength": 100, "IsPrimaryName": True, "DisplayName": label}]})
    assert created.status_code == 204, created.text
    response = client.get("new_untrackeds?$select=new_name", headers=TRACK)
    assert response.status_code == 400
    assert "not enabled for the entity 'new_untracked'" in response.json()["error"]["message"]


def test_plain_queries_are_untouched(client):
    body = client.get("accounts?$select=name&$top=1").json()
    assert "@odata.deltaLink" not in body and len(body["value"]) == 1
