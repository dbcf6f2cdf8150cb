"""The webhook trigger's request handling: key check, probes, refusals, and the payload parser,
fed bodies shaped exactly like reference §12.2 (and fuzzed with hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d365_components.definitions import WebhookRequest
from d365_components.runtime import handle_webhook, parse_inputs
from d365_components.triggers.payload import PayloadError, parse_date, parse_event
from d365_components.triggers.webhook import DataverseWebhook

KEY = "dynamics365.webhook"
CONTRACTS = "http:\\/\\/schemas.microsoft.com\\/xrm\\/2011\\/Contracts"
ROW = "6d81597f-0f9f-e711-8122-000d3aa2331c"
USER = "11bb11bb-cc22-dd33-ee44-55ff55ff55ff"


def typed(kind: str, **fields: Any) -> dict[str, Any]:
    return {"__type": f"{kind}:http://schemas.microsoft.com/xrm/2011/Contracts", **fields}


def entity(table: str, row_id: str, attributes: dict[str, Any], *, with_type: bool = True) -> dict[str, Any]:
    body = {
        "Attributes": [{"key": k, "value": v} for k, v in attributes.items()],
        "EntityState": None, "FormattedValues": [], "Id": row_id, "KeyAttributes": [],
        "LogicalName": table, "RelatedEntities": [], "RowVersion": None,
    }
    return typed("Entity", **body) if with_type else body


def reference(table: str, row_id: str, name: str | None = None) -> dict[str, Any]:
    return typed("EntityReference", Id=row_id, KeyAttributes=[], LogicalName=table, Name=name, RowVersion=None)


def context(
    message: str = "Update", *, table: str = "contact", target: Any = None,
    pre: dict[str, Any] | None = None, post: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A RemoteExecutionContext as §12.2 shows it."""
    if target is None:
        target = entity(table, ROW, {"firstname": "James", "contactid": ROW})
    return {
        "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
        "CorrelationId": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "Depth": 1,
        "InitiatingUserId": USER,
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False, "IsInTransaction": False, "IsOfflinePlayback": False, "IsolationMode": 1,
        "MessageName": message,
        "Mode": 1,
        "OperationCreatedOn": "/Date(1506409448000-0700)/",
        "OperationId": "4af10637-4ea2-e711-8122-000d3aa2331c",
        "OrganizationId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
        "OrganizationName": "OrgName",
        "OutputParameters": [],
        "OwningExtension": {"Id": "75417616-0000-0000-0000-000000000000", "KeyAttributes": [],
                            "LogicalName": "sdkmessageprocessingstep", "Name": None, "RowVersion": None},
        "PostEntityImages": [{"key": "post", "value": entity(table, ROW, post, with_type=False)}] if post else [],
        "PreEntityImages": [{"key": "pre", "value": entity(table, ROW, pre, with_type=False)}] if pre else [],
        "PrimaryEntityId": ROW,
        "PrimaryEntityName": table,
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserId": USER,
    }


def wcf_json(body: Any) -> bytes:
    """JSON the way WCF writes it: forward slashes escaped as \\/."""
    return json.dumps(body).replace("/", "\\/").encode()


def request(body: Any = None, *, method: str = "POST", code: str | None = "s3cr3t", headers: dict[str, str] | None = None,
            raw: bytes | None = None) -> WebhookRequest:
    content = raw if raw is not None else (wcf_json(body) if body is not None else b"")
    return WebhookRequest(
        method=method,
        headers={"Content-Type": "application/json; charset=utf-8", "x-ms-dynamics-request-name": "Update",
                 "x-ms-dynamics-entity-name": "contact", **(headers or {})},
        query={"code": code} if code is not None else {},
        body=content,
    )


INPUTS = {"entityType": "contact", "webhookKey": "s3cr3t", "includeOldValues": True}


async def handle(req: WebhookRequest, inputs: dict[str, Any] | None = None):
    return await handle_webhook(KEY, INPUTS if inputs is None else inputs, req)


def test_dates_become_iso_utc():
    assert parse_date("/Date(1506384247000)/") == "2017-09-26T00:04:07Z"
    assert parse_date("/Date(1506409448000-0700)/") == "2017-09-26T07:04:08Z"
    assert parse_date("/Date(1506409448123+0000)/") == "2017-09-26T07:04:08.123Z"
    assert parse_date("/Date(-1000)/") == "1969-12-31T23:59:59Z"
    assert parse_date("Date(1)") is None
    with pytest.raises(PayloadError):
        parse_date("/Date(9999999999999999)/")


def test_every_serialized_type_becomes_plain_json():
    target = entity("contact", ROW, {
        "firstname": "James",
        "modifiedon": "/Date(1506384247000)/",
        "statuscode": typed("OptionSetValue", Value=1),
        "revenue": typed("Money", Value=2154.32),
        "modifiedby": reference("systemuser", USER.upper(), "Ana"),
        "interests": [typed("OptionSetValue", Value=3), typed("OptionSetValue", Value=5)],
        "to": typed("EntityCollection", Entities=[entity("activityparty", ROW, {"partyid": reference("account", ROW)})],
                    EntityName="activityparty", MoreRecords=False),
        "donotemail": False,
        "numberofemployees": 12,
        "modifiedonbehalfby": None,
    })
    event = parse_event(json.loads(wcf_json(context("Create", target=target))))
    assert event["attributes"] == {
        "firstname": "James",
        "modifiedon": "2017-09-26T00:04:07Z",
        "statuscode": 1,
        "revenue": 2154.32,
        "modifiedby": {"table": "systemuser", "id": USER, "name": "Ana"},
        "interests": [3, 5],
        "to": [{"table": "activityparty", "id": ROW,
                "attributes": {"partyid": {"table": "account", "id": ROW, "name": None}}}],
        "donotemail": False,
        "numberofemployees": 12,
        "modifiedonbehalfby": None,
    }
    assert event["message"] == "Create" and event["table"] == "contact" and event["id"] == ROW
    assert event["changed"]["firstname"] == {"old": None, "new": "James"}
    assert event["user"] == USER
    assert event["organization"] == {"id": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee", "name": "OrgName", "domain": None}
    assert event["operationCreatedOn"] == "2017-09-26T07:04:08Z"
    assert (event["depth"], event["stage"], event["mode"], event["trimmed"]) == (1, 40, 1, False)


async def test_update_carries_old_and_new_values_and_only_real_changes():
    target = entity("contact", ROW, {"firstname": "Jim", "lastname": "Glynn", "modifiedon": "/Date(1506384247000)/"})
    pre = {"firstname": "James", "lastname": "Glynn", "modifiedon": "/Date(1506000000000)/"}
    post = {"fullname": "Jim Glynn", "firstname": "Jim"}
    answer = await handle(request(context("Update", target=target, pre=pre, post=post),
                                  headers={"x-ms-dynamics-organization": "contoso.crm.dynamics.com"}))
    assert answer.status == 200
    [event] = answer.events
    assert event["changed"] == {
        "firstname": {"old": "James", "new": "Jim"},
        "modifiedon": {"old": "2017-09-21T13:20:00Z", "new": "2017-09-26T00:04:07Z"},
    }  # lastname was sent but did not change; fullname is in neither the request nor the pre-image
    assert event["preImage"]["firstname"] == "James" and event["postImage"]["fullname"] == "Jim Glynn"
    assert event["hasOldValues"] is True
    assert event["organization"]["domain"] == "contoso.crm.dynamics.com"


async def test_only_real_changes_skips_updates_that_kept_their_values():
    inputs = {"entityType": "contact", "webhookKey": "s3cr3t", "onlyRealChanges": True, "filteringColumns": ["LastName"]}
    pre = {"firstname": "James", "lastname": "Glynn", "modifiedon": "/Date(1506000000000)/"}

    def update(**sent):
        target = entity("contact", ROW, {**sent, "modifiedon": "/Date(1506384247000)/"})
        return request(context("Update", target=target, pre=pre))

    same = await handle(update(lastname="Glynn", firstname="Jim"), inputs)  # firstname is not watched
    assert same.status == 200 and same.events == [] and same.body["reason"] == "no value changed"
    [event] = (await handle(update(lastname="Glynne"), inputs)).events
    assert event["changed"]["lastname"] == {"old": "Glynn", "new": "Glynne"}
    anything = {**inputs, "filteringColumns": None}
    assert (await handle(update(firstname="Jim"), anything)).events
    assert (await handle(update(firstname="James"), anything)).events == []


async def test_delete_has_the_reference_and_the_pre_image():
    body = context("Delete", target=reference("contact", ROW), pre={"firstname": "James"})
    [event] = (await handle(request(body))).events
    assert event["id"] == ROW and event["attributes"] == {}
    assert event["preImage"] == {"firstname": "James"} and event["changed"] == {}


async def test_trimmed_payloads_are_flagged():
    body = context("Update")
    for part in ("InputParameters", "PreEntityImages", "PostEntityImages"):
        del body[part]
    [event] = (await handle(request(body, headers={"x-ms-dynamics-msg-size-exceeded": ""}))).events
    assert event["trimmed"] is True and event["id"] == ROW
    # old values were asked for but the pre-image is missing: the flow must re-read the row
    [event] = (await handle(request(context("Update")))).events
    assert event["trimmed"] is True and event["hasOldValues"] is False


async def test_key_is_checked_without_saying_what_it_is():
    for code in (None, "", "s3cr3", "s3cr3t!", "S3CR3T", "é"):
        answer = await handle(request(context(), code=code))
        assert answer.status == 401 and not answer.events
        assert "s3cr3t" not in json.dumps(answer.body)
    open_inputs = {"entityType": "contact"}
    assert (await handle(request(context(), code=None), open_inputs)).status == 200


async def test_probes_are_answered_without_events():
    for req in (
        request(None, headers={"x-ms-dynamics-request-name": "URL_VALIDATION"}),
        request(context(), headers={"x-ms-dynamics-request-name": "URL_VALIDATION"}),
        request(raw=b"  \n"),
    ):
        answer = await handle(req)
        assert answer.status == 200 and answer.events == []
    assert (await handle(request(None, code="wrong", headers={"x-ms-dynamics-request-name": "URL_VALIDATION"}))).status == 401


async def test_bad_requests_get_the_right_4xx():
    assert (await handle(request(context(), method="GET"))).status == 405
    assert (await handle(request(raw=b"<xml/>", headers={"Content-Type": "text/xml"}))).status == 415
    assert (await handle(request(raw=b"{not json"))).status == 400
    assert (await handle(request(raw=b"\xff\xfe{}"))).status == 400
    assert (await handle(request(raw=b"[" * 100_000 + b"]" * 100_000))).status == 400
    assert (await handle(request({"hello": "world"}))).status == 400
    big = b'{"x": "' + b"a" * 2048 + b'"}'
    assert (await handle(request(raw=big), {**INPUTS, "maxBodyBytes": 1024})).status == 413
    answer = await handle(request(raw=b"{not json"))
    assert answer.body == {"error": "The body is not valid JSON."}


async def test_other_tables_and_messages_are_ignored():
    other = await handle(request(context(table="account")))
    assert other.status == 200 and other.events == []
    creates_only = await handle(request(context("Update")), {**INPUTS, "messages": ["Create"]})
    assert creates_only.status == 200 and creates_only.events == []


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from(["/Date(1)/", "/Date(99999999999999999)/", "/Date(-1+0000)/", "Entity:x", "OptionSetValue:y"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["key", "value", "__type", "Value", "Id", "LogicalName", "Attributes", "Name", "Entities",
                         "MessageName", "InputParameters", "PreEntityImages", "PostEntityImages", "Target"])
        | st.text(max_size=8),
        children, max_size=5),
    max_leaves=25,
)


def _mutated_context(values: dict[str, Any]) -> dict[str, Any]:
    body = context("Update", pre={"firstname": "a"}, post={"firstname": "b"})
    body.update(values)
    return body


_TYPES = st.sampled_from(["Entity", "EntityReference", "OptionSetValue", "Money", "EntityCollection", "Other"])
_bodies = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["MessageName", "InputParameters", "PreEntityImages", "PostEntityImages", "PrimaryEntityId",
                         "PrimaryEntityName", "OutputParameters", "Depth", "OperationCreatedOn", "OrganizationId",
                         "InitiatingUserId", "Stage"]),
        _json_values, max_size=4,
    ).map(lambda v: wcf_json(_mutated_context(v))),
    st.tuples(_TYPES, _json_values).map(lambda tv: wcf_json(context(
        "Update", target=entity("contact", ROW, {"x": typed(tv[0], Value=tv[1], Id=tv[1], Entities=tv[1],
                                                           Attributes=tv[1], LogicalName=tv[1])})))),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies, content_type=st.sampled_from(["application/json", "", "text/plain"]))
def test_fuzzed_bodies_never_escape_the_handler(body: bytes, content_type: str):
    inputs = parse_inputs(DataverseWebhook, INPUTS)
    trigger = DataverseWebhook()
    from d365_components.definitions import Context

    req = WebhookRequest(method="POST", headers={"content-type": content_type}, query={"code": "s3cr3t"}, body=body)
    import asyncio

    answer = asyncio.run(trigger.handle(Context(client=None), inputs, req))
    assert answer.status in (200, 400, 415)
    json.dumps(answer.body)
    for event in answer.events:
        json.dumps(event)
    if answer.status != 200:
        assert answer.events == [] and isinstance(answer.body["error"], str)
