"""The pure wire pieces: OData literals and keys, org URLs, error mapping, the $batch codec."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from d365_components.connections.batch import BatchOperation, decode_batch, encode_batch
from d365_components.connections.clouds import Cloud, normalize_org_url
from d365_components.connections.errors_map import aad_error, dataverse_error
from d365_components.connections.odata import RawLiteral, entity_path, format_key, quote
from d365_components.connections.paging import fetch_with_paging, paging_cookie_of
from d365_components.errors import (
    ConcurrencyError,
    ConnectionConfigError,
    PermissionDeniedError,
    RecordNotFoundError,
    ThrottledError,
    TransientError,
)

API = "https://contoso.crm.dynamics.com/api/data/v9.2"
GUID = "7eb682f1-ca75-e511-80d4-00155d2a68d1"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("O'Brien", "'O''Brien'"),
        ("", "''"),
        (True, "true"),
        (None, "null"),
        (42, "42"),
        (2.5, "2.5"),
        (uuid.UUID(GUID), GUID),
        ("{7EB682F1-CA75-E511-80D4-00155D2A68D1}", GUID),
        (dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC), "2024-05-06T07:08:09Z"),
        (dt.date(2024, 5, 6), "2024-05-06"),
        (RawLiteral("Microsoft.Dynamics.CRM.EndpointAccessType'Default'"), "Microsoft.Dynamics.CRM.EndpointAccessType'Default'"),
    ],
)
def test_quote(value, literal):
    assert quote(value) == literal


def test_keys():
    assert format_key(GUID.upper()) == f"({GUID})"
    assert format_key({"accountnumber": "A-1"}) == "(accountnumber='A-1')"
    assert format_key({"firstname": "Joe", "age": 3}) == "(firstname='Joe',age=3)"
    assert format_key({"name": "O'Brien & Co"}) == "(name='O''Brien%20&%20Co')"
    assert format_key("accountnumber='A-1'") == "(accountnumber='A-1')"
    assert entity_path("accounts", {"accountnumber": "A-1"}) == "accounts(accountnumber='A-1')"
    for bad in ("", "not a key", {}, 3):
        with pytest.raises(ValueError):
            format_key(bad)
    with pytest.raises(ValueError):
        entity_path("accounts?$top=1", GUID)


@pytest.mark.parametrize(
    "typed",
    [
        "contoso.crm.dynamics.com",
        "https://contoso.crm.dynamics.com/",
        "https://contoso.crm.dynamics.com/api/data/v9.2",
        "https://CONTOSO.api.crm.dynamics.com/api/data/v9.1/",
        "  https://contoso.crm.dynamics.com/api/data  ",
    ],
)
def test_org_url_forms(typed):
    urls = normalize_org_url(typed)
    assert urls.org_url == "https://contoso.crm.dynamics.com"
    assert urls.api_url == API


def test_org_url_checks():
    assert normalize_org_url("https://x.crm.microsoftdynamics.us", cloud=Cloud.gcchigh).host == "x.crm.microsoftdynamics.us"
    assert normalize_org_url("https://x.crm9.dynamics.com", cloud="gcc").org_url == "https://x.crm9.dynamics.com"
    for typed, kwargs in [
        ("https://contoso.example.com", {}),
        ("http://contoso.crm.dynamics.com", {}),
        ("https://contoso.crm.dynamics.com/main.aspx", {}),
        ("https://x.crm.dynamics.cn", {"cloud": "public"}),
        ("", {}),
    ]:
        with pytest.raises(ConnectionConfigError, match="webApiUrl"):
            normalize_org_url(typed, **kwargs)


def test_dataverse_errors_are_typed_with_hints():
    body = b'{"error":{"code":"0x80040217","message":"Entity \'account\' With Id = x Does Not Exist"}}'
    error = dataverse_error(404, {"x-ms-service-request-id": "req-1"}, body, method="GET", url=API + "/accounts(x)")
    assert isinstance(error, RecordNotFoundError)
    assert (error.status, error.code, error.request_id) == (404, "0x80040217", "req-1")
    assert "No row has that id" in str(error)
    denied = dataverse_error(403, {}, b'{"error":{"code":"0x80040220","message":"Principal user is missing prvReadAccount"}}')
    assert isinstance(denied, PermissionDeniedError) and "application user" in denied.hint
    assert isinstance(dataverse_error(412, {}, b'{"error":{"code":"0x80060882","message":"v"}}'), ConcurrencyError)
    throttled = dataverse_error(429, {"Retry-After": "12"}, b'{"error":{"code":"0x80072322","message":"m"}}')
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 12
    assert isinstance(dataverse_error(503, {}, b"<html>busy</html>"), TransientError)
    plain = dataverse_error(400, {"REQ_ID": "r2"}, b"not json")
    assert plain.message == "not json" and plain.request_id == "r2" and plain.hint


def test_aad_errors_are_diagnosed():
    error = aad_error({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]})
    assert error.aad_code == 7000215 and "client secret is wrong" in str(error)
    assert aad_error({"error_description": "AADSTS90002: Tenant 'x' not found."}).aad_code == 90002
    assert aad_error(None).aad_code is None


def test_fetchxml_paging_attributes_are_escaped():
    cookie = '<cookie page="1"><accountid last="{A}" first="{B}" /></cookie>'
    text = fetch_with_paging('<fetch><entity name="account"/></fetch>', page=2, count=50, cookie=cookie)
    assert 'page="2"' in text and 'count="50"' in text
    assert "paging-cookie=\"&lt;cookie page=&quot;1&quot;&gt;" in text
    annotation = '<cookie pagenumber="2" pagingcookie="%253ccookie%2520page%253d%25221%2522%253e%253c%252fcookie%253e" istracking="False" />'
    assert paging_cookie_of(annotation) == '<cookie page="1"></cookie>'
    with pytest.raises(ValueError, match="top"):
        fetch_with_paging('<fetch top="5"><entity name="account"/></fetch>', page=2, count=None, cookie=None)
    with pytest.raises(ValueError, match="well-formed"):
        fetch_with_paging("<fetch>", page=1, count=None, cookie=None)


def test_batch_encoding_has_change_set_and_content_ids():
    operations = [
        BatchOperation("POST", "accounts", {"name": "A"}, content_id=1),
        BatchOperation("POST", "contacts", {"lastname": "B", "parentcustomerid_account@odata.bind": "$1"}),
    ]
    content_type, body, ids = encode_batch(operations, API, atomic=True)
    text = body.decode()
    boundary = content_type.split("boundary=")[1]
    assert text.startswith(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary=changeset_")
    assert text.endswith(f"--{boundary}--\r\n")
    assert f"POST {API}/accounts HTTP/1.1" in text
    assert ids == ["1", "2"]
    assert "\r\n\r\n{\"name\":\"A\"}" in text
    with pytest.raises(ValueError, match="GET"):
        encode_batch([BatchOperation("GET", "accounts")], API, atomic=True)
    with pytest.raises(ValueError, match="change set"):
        encode_batch([BatchOperation("PATCH", "$1", {})], API, atomic=False)


RESPONSE = (
    "--batchresponse_1\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
    "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n"
    f"HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\nOData-EntityId: {API}/tasks({GUID})\r\n\r\n\r\n"
    "--changesetresponse_2--\r\n"
    "--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 200 OK\r\nContent-Type: application/json; odata.metadata=minimal\r\n\r\n"
    '{"value":[{"subject":"Task 1"}]}\r\n'
    "--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 400 Bad Request\r\nREQ_ID: r-9\r\nContent-Type: application/json\r\n\r\n"
    '{"error":{"code":"0x80044331","message":"A validation error occurred."}}\r\n'
    "--batchresponse_1--\r\n"
)


def test_batch_decoding_in_order_with_errors_and_unrun_parts():
    results = decode_batch(
        "multipart/mixed; boundary=batchresponse_1", RESPONSE.encode(), [None, None, None, None], atomic=False, api_url=API
    )
    assert [r.status for r in results] == [204, 200, 400, 424]
    assert results[0].id == GUID
    assert results[1].body == {"value": [{"subject": "Task 1"}]}
    assert results[2].error.code == "0x80044331" and results[2].error.request_id == "r-9"
    assert results[3].error is not None and not results[3].ok


def test_batch_decoding_accepts_bare_lf_and_quoted_boundaries():
    lf = RESPONSE.replace("\r\n", "\n")
    results = decode_batch('multipart/mixed; boundary="batchresponse_1"', lf.encode(), [None] * 3, atomic=False, api_url=API)
    assert [r.status for r in results] == [204, 200, 400]


def test_failed_change_set_marks_every_member():
    body = (
        "--batchresponse_9\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n"
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n"
        '{"error":{"code":"0x80040203","message":"bad"}}\r\n--batchresponse_9--\r\n'
    )
    results = decode_batch("multipart/mixed; boundary=batchresponse_9", body.encode(), ["1", "2", "3"], atomic=True, api_url=API)
    assert [r.status for r in results] == [424, 400, 424]
    assert all(r.error is not None for r in results)
