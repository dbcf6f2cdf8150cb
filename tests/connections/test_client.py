"""WebApiClient against the emulator over HTTPS: CRUD, upsert modes, links, paging, $batch, messages."""

from __future__ import annotations

import uuid

import httpx
import pytest
import pytest_asyncio

from d365_components.connections.batch import BatchOperation
from d365_components.connections.client import WebApiClient
from d365_components.connections.clouds import normalize_org_url
from d365_components.connections.headers import control_headers
from d365_components.connections.oauth import ClientCredentialsConnection
from d365_components.connections.odata import RawLiteral
from d365_components.emulator import defaults
from d365_components.errors import ConcurrencyError, D365Error, DataverseError, RecordNotFoundError


@pytest_asyncio.fixture
async def client(emulator):
    connection = ClientCredentialsConnection(emulator.connection_inputs())
    yield connection.open_client()
    await connection.aclose()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_create_retrieve_update_delete(client):
    created = await client.create("accounts", {"name": "Client test", "numberofemployees": 10})
    account_id = created["id"]
    assert uuid.UUID(account_id)
    assert created["entityUrl"].endswith(f"accounts({account_id})")
    assert created["row"] is None
    row = await client.retrieve("accounts", account_id, select=["name", "numberofemployees"])
    assert row["name"] == "Client test" and row["@odata.etag"].startswith('W/"')
    assert await client.update("accounts", account_id, {"numberofemployees": 11}) is None
    updated = await client.update(
        "accounts", account_id, {"name": "Renamed"}, return_representation=True
    )
    assert updated["name"] == "Renamed"
    with pytest.raises(ConcurrencyError) as stale:
        await client.update("accounts", account_id, {"name": "Lost update"}, if_match=row["@odata.etag"])
    assert stale.value.status == 412
    await client.delete("accounts", account_id)
    with pytest.raises(RecordNotFoundError) as missing:
        await client.retrieve("accounts", account_id)
    assert missing.value.code == "0x80040217" and missing.value.hint


async def test_create_with_representation_and_select(client):
    created = await client.create(
        "accounts", {"name": "With rep", "revenue": 5000}, return_representation=True, select=["name", "revenue"]
    )
    assert created["row"]["name"] == "With rep"
    assert created["id"] == created["row"]["accountid"]
    await client.delete("accounts", created["id"])


async def test_update_never_creates(client):
    with pytest.raises(RecordNotFoundError):
        await client.update("accounts", str(uuid.uuid4()), {"name": "ghost"})


async def test_upsert_modes_by_alternate_key(client):
    number = _unique("A")
    key = {"accountnumber": number}
    first = await client.upsert("accounts", key, {"name": "Upserted"}, return_representation=True)
    assert first["created"] is True and uuid.UUID(first["id"])
    second = await client.upsert("accounts", key, {"name": "Upserted again"}, return_representation=True)
    assert second["created"] is False and second["id"] == first["id"]
    with pytest.raises(ConcurrencyError):
        await client.upsert("accounts", key, {"name": "create only"}, mode="create")
    with pytest.raises(RecordNotFoundError):
        await client.upsert("accounts", {"accountnumber": _unique("B")}, {"name": "update only"}, mode="update")
    plain = await client.upsert("accounts", key, {"name": "no representation"})
    assert plain["created"] is None
    row = await client.retrieve("accounts", key, select=["name", "accountnumber"])
    assert row["name"] == "no representation" and row["accountnumber"] == number
    await client.delete("accounts", key)


async def test_associate_and_disassociate(client):
    account = (await client.create("accounts", {"name": "Linked"}))["id"]
    contact = (await client.create("contacts", {"lastname": "Linked"}))["id"]
    await client.associate("accounts", account, "primarycontactid", "contacts", contact, single_valued=True)
    row = await client.retrieve("accounts", account, select=["_primarycontactid_value"])
    assert row["_primarycontactid_value"] == contact
    await client.disassociate("accounts", account, "primarycontactid")
    row = await client.retrieve("accounts", account, select=["_primarycontactid_value"])
    assert row["_primarycontactid_value"] is None
    await client.delete("accounts", account)
    await client.delete("contacts", contact)


async def test_errors_carry_status_code_and_hint(client):
    with pytest.raises(RecordNotFoundError) as caught:
        await client.get_json("Account")
    assert caught.value.code == "0x8006088a" and "case-sensitive" in caught.value.hint
    with pytest.raises(DataverseError) as bad:
        await client.get_json("accounts", params={"$select": "Name"})
    assert bad.value.status == 400


async def test_paths_relative_root_relative_and_absolute(client):
    for path in ("WhoAmI", "/api/data/v9.2/WhoAmI", f"{client.api_url}/WhoAmI"):
        assert (await client.get_json(path))["OrganizationId"] == defaults.ORGANIZATION_ID


async def test_other_hosts_never_get_the_token(client):
    with pytest.raises(ValueError, match="another host"):
        await client.get_json("https://attacker.example.com/api/data/v9.2/accounts")


async def test_functions_and_whoami(client):
    who = await client.whoami()
    assert who["OrganizationId"] == defaults.ORGANIZATION_ID
    assert (await client.execute("WhoAmI", function=True))["UserId"] == who["UserId"]
    org = await client.execute(
        "RetrieveCurrentOrganization",
        {"AccessType": RawLiteral("Microsoft.Dynamics.CRM.EndpointAccessType'Default'")},
        function=True,
    )
    assert org["Detail"]["OrganizationId"] == defaults.ORGANIZATION_ID


async def test_impersonation_header_makes_rows_on_behalf(client):
    headers = control_headers(caller_object_id=defaults.USER_OBJECT_ID)
    created = await client.create("accounts", {"name": "On behalf"}, headers=headers, return_representation=True)
    row = await client.retrieve("accounts", created["id"], select=["_createdby_value", "_createdonbehalfby_value"])
    assert row["_createdby_value"] == defaults.USER_ID
    assert row["_createdonbehalfby_value"] == defaults.APP_USER_ID
    await client.delete("accounts", created["id"])


async def test_paging_follows_next_links_one_page_at_a_time(fresh_emulator):
    emulator = fresh_emulator(seed=None)
    store = emulator.app.state.store
    marker = _unique("paging")
    for n in range(1234):
        store.insert("contact", {"lastname": f"{marker}-{n:05d}", "jobtitle": marker}, user=defaults.APP_USER_ID)
    connection = ClientCredentialsConnection(emulator.connection_inputs())
    client = connection.open_client()
    sizes = []
    names = set()
    async for page in client.pages(
        "contacts", params={"$select": "lastname", "$filter": f"jobtitle eq '{marker}'"}, page_size=250
    ):
        sizes.append(len(page.rows))
        names.update(r["lastname"] for r in page.rows)
        assert (page.next_link is None) == (len(sizes) == 5)
    assert sizes == [250, 250, 250, 250, 234]
    counted = client.pages("contacts", params={"$select": "lastname", "$filter": f"jobtitle eq '{marker}'", "$count": "true"}, page_size=1000)
    first = await anext(counted)
    assert first.count == 1234
    await counted.aclose()
    assert len(names) == 1234
    count = 0
    async for _ in client.rows("contacts", params={"$select": "contactid", "$filter": f"jobtitle eq '{marker}'"}, page_size=1000):
        count += 1
    assert count == 1234
    await connection.aclose()


async def test_batch_round_trip_with_change_set_and_references(client):
    number = _unique("BATCH")
    results = await client.batch(
        [
            BatchOperation("POST", "accounts", {"name": "Batch parent", "accountnumber": number}, content_id=1),
            BatchOperation("POST", "contacts", {"lastname": "Batch child", "parentcustomerid_account@odata.bind": "$1"}),
            BatchOperation("PATCH", "$1", {"description": "patched through $1"}),
        ],
        atomic=True,
    )
    assert [r.status for r in results] == [204, 204, 204]
    account_id, contact_id = results[0].id, results[1].id
    contact = await client.retrieve("contacts", contact_id, select=["_parentcustomerid_value"])
    assert contact["_parentcustomerid_value"] == account_id
    reads = await client.batch(
        [
            BatchOperation("GET", f"accounts({account_id})?$select=description"),
            BatchOperation("GET", "accounts(00000000-0000-0000-0000-0000000000ff)"),
            BatchOperation("DELETE", f"contacts({contact_id})"),
        ],
        continue_on_error=True,
    )
    assert reads[0].body["description"] == "patched through $1"
    assert isinstance(reads[1].error, RecordNotFoundError)
    assert reads[2].status == 204
    await client.delete("accounts", account_id)


async def test_failed_change_set_rolls_back_and_later_chunks_do_not_run(client):
    number = _unique("ROLLBACK")
    results = await client.batch(
        [
            BatchOperation("POST", "accounts", {"name": "rolled back", "accountnumber": number}),
            BatchOperation("POST", "accounts", {"name": "x" * 500}),  # longer than the column allows
        ],
        atomic=True,
    )
    assert all(r.error is not None for r in results)
    with pytest.raises(RecordNotFoundError):
        await client.retrieve("accounts", {"accountnumber": number})
    chunked = await client.batch(
        [BatchOperation("GET", "nosuchtable"), BatchOperation("GET", "accounts?$top=1")], chunk_size=1
    )
    assert chunked[0].error is not None and chunked[1].status == 424


async def test_batch_splits_into_chunks(client):
    operations = [BatchOperation("POST", "accounts", {"name": f"chunk {n}"}) for n in range(25)]
    results = await client.batch(operations, chunk_size=10)
    assert [r.index for r in results] == list(range(25))
    assert all(r.status == 204 and r.id for r in results)
    await client.batch([BatchOperation("DELETE", f"accounts({r.id})") for r in results], chunk_size=10)


async def test_collection_bound_action(client):
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": f"bulk {n}"} for n in range(3)]
    answer = await client.execute("CreateMultiple", {"Targets": targets}, bound_to=("accounts", None))
    assert len(answer["Ids"]) == 3
    version = await client.execute("RetrieveVersion", function=True)
    assert version["Version"].startswith("9.")
    await client.batch([BatchOperation("DELETE", f"accounts({i})") for i in answer["Ids"]])


async def test_connection_impersonation_reaches_batch_parts(emulator):
    connection = ClientCredentialsConnection(emulator.connection_inputs(callerObjectId=defaults.USER_OBJECT_ID))
    client = connection.open_client()
    [result] = await client.batch([BatchOperation("POST", "accounts", {"name": "batched on behalf"})])
    row = await client.retrieve("accounts", result.id, select=["_createdby_value"])
    assert row["_createdby_value"] == defaults.USER_ID
    await client.delete("accounts", result.id)
    await connection.aclose()


async def test_a_next_link_to_the_same_page_stops_paging():
    """A server bug that links a page to itself must not become an endless loop."""
    org = normalize_org_url("https://contoso.crm.dynamics.com")

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [{"n": 1}], "@odata.nextLink": str(request.url)})

    client = WebApiClient(org, auth=None, transport=httpx.MockTransport(answer))
    with pytest.raises(D365Error, match="same page"):
        async for _ in client.pages(f"{org.api_url}/accounts?$skiptoken=1"):
            pass
    await client.aclose()
