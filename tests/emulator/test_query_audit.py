"""No request is answered 200 while part of it is ignored: every system query option a request shape
does not use, and every parameter a message does not take, is Dataverse's 400 (table-driven)."""

from __future__ import annotations

import pytest

from d365_components.emulator import defaults

NOT_SUPPORTED = "0x80060888"
ODATA = "0x0"
XML = "<fetch><entity name='account'><attribute name='name'/></entity></fetch>"

# (method, url with {id} for an account, expected status, expected code or None)
CASES = [
    # collections
    ("GET", "accounts?$skip=1", 400, NOT_SUPPORTED),
    ("GET", "accounts?$search=x", 400, NOT_SUPPORTED),
    ("GET", "accounts?$format=json", 400, NOT_SUPPORTED),
    ("GET", "accounts?$levels=2", 400, NOT_SUPPORTED),
    ("GET", "accounts?$compute=x", 400, NOT_SUPPORTED),
    ("GET", "accounts?$top=-1", 400, ODATA),
    ("GET", "accounts?$count=maybe", 400, ODATA),
    ("GET", "accounts?$expand=primarycontactid($skip=1)", 400, NOT_SUPPORTED),
    ("GET", "accounts?$apply=aggregate($count as n)&$skip=1", 400, NOT_SUPPORTED),
    ("GET", "accounts?$apply=aggregate($count as n)&$top=1", 400, NOT_SUPPORTED),
    ("GET", "accounts/$count?$top=1", 400, NOT_SUPPORTED),
    ("GET", "accounts({id})/Account_Tasks?$skip=1", 400, NOT_SUPPORTED),
    ("GET", "accounts({id})/Account_Tasks/$ref?$top=1", 400, NOT_SUPPORTED),
    # FetchXML and sql take no other system options
    ("GET", f"accounts?fetchXml={XML}&$select=name", 400, NOT_SUPPORTED),
    ("GET", f"accounts?fetchXml={XML}&$top=1", 400, NOT_SUPPORTED),
    ("GET", f"accounts?fetchXml={XML}&sql=SELECT name FROM account", 400, NOT_SUPPORTED),
    ("GET", "accounts?sql=SELECT name FROM account&$filter=name eq 'x'", 400, NOT_SUPPORTED),
    ("GET", "accounts({id})?sql=SELECT name FROM account", 400, NOT_SUPPORTED),
    ("GET", f"accounts({{id}})/Account_Tasks?fetchXml={XML}", 400, NOT_SUPPORTED),
    ("POST", "accounts?sql=SELECT name FROM account", 400, NOT_SUPPORTED),
    # single records and their properties are not collections
    ("GET", "accounts({id})?$filter=name eq 'x'", 400, ODATA),
    ("GET", "accounts({id})?$top=1", 400, ODATA),
    ("GET", "accounts({id})?$orderby=name", 400, ODATA),
    ("GET", "accounts({id})?$skip=1", 400, ODATA),
    ("GET", "accounts({id})?$search=x", 400, NOT_SUPPORTED),
    ("GET", "accounts({id})/name?$select=name", 400, NOT_SUPPORTED),
    ("GET", "accounts({id})/name?$top=1", 400, ODATA),
    ("GET", "accounts({id})/name/$value?$top=1", 400, ODATA),
    ("GET", "accounts({id})/primarycontactid?$filter=x", 400, ODATA),
    ("DELETE", "accounts({id})?$select=name", 400, NOT_SUPPORTED),
    ("PATCH", "accounts({id})?$top=1", 400, ODATA),
    ("POST", "accounts?$filter=name eq 'x'", 400, ODATA),
    # service document, $metadata and messages
    ("GET", "?$top=1", 400, NOT_SUPPORTED),
    ("GET", "$metadata?$filter=x", 400, NOT_SUPPORTED),
    ("GET", "WhoAmI?$select=UserId", 400, NOT_SUPPORTED),
    ("GET", "WhoAmI(Foo=1)", 400, ODATA),
    ("GET", "RetrieveVersion(Foo=1)", 400, ODATA),
    ("GET", "RetrieveCurrentOrganization(AccessType=@a,Foo=1)?@a='Default'", 400, ODATA),
    ("GET", "RetrieveTotalRecordCount(EntityNames=@p,Foo=1)?@p=[\"account\"]", 400, ODATA),
    # metadata sets
    ("GET", "EntityDefinitions?$top=1", 400, NOT_SUPPORTED),
    ("GET", "EntityDefinitions?$skip=1", 400, NOT_SUPPORTED),
    ("GET", "RelationshipDefinitions?$orderby=SchemaName", 400, NOT_SUPPORTED),
    # what each shape does accept still answers
    ("GET", "accounts?$select=name&$filter=name ne null&$orderby=name&$top=1&$count=true", 200, None),
    ("GET", "accounts({id})?$select=name&$expand=primarycontactid($select=fullname)", 200, None),
    ("GET", "accounts/$count?$filter=name ne null", 200, None),
    ("GET", "accounts({id})/name", 200, None),
    ("GET", "accounts({id})/name/$value", 200, None),
    ("GET", f"accounts?fetchXml={XML}&$count=true", 200, None),
    ("GET", "WhoAmI", 200, None),
]


@pytest.fixture(scope="module")
def account_id(store) -> str:
    return store.insert("account", {"name": "audit"}, user=defaults.USER_ID)["accountid"]


@pytest.mark.parametrize(("method", "url", "status", "code"), CASES, ids=[f"{m} {u}" for m, u, _, _ in CASES])
async def test_every_option_is_used_or_refused(api, account_id, method, url, status, code):
    body = {"name": "audit"} if method in ("PATCH", "POST") else None
    response = await api.request(method, url.format(id=account_id), json=body)
    assert response.status_code == status, response.text
    if code is not None:
        error = response.json()["error"]
        assert error["code"] == code
        assert isinstance(error["message"], str) and error["message"]
