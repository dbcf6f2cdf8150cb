"""`$batch` over real HTTPS: multipart bodies in, multipart answers parsed with the standard library."""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from dataclasses import dataclass, field

import pytest


@dataclass
class Req:
    method: str
    url: str
    body: dict | None = None
    content_id: str | None = None
    headers: dict = field(default_factory=dict)


def batch_body(items, boundary="batch_test", newline="\r\n") -> bytes:
    """A multipart/mixed batch; a list inside `items` is a change set."""
    lines: list[str] = []

    def request(req: Req) -> None:
        lines.extend(["Content-Type: application/http", "Content-Transfer-Encoding: binary"])
        if req.content_id:
            lines.append(f"Content-ID: {req.content_id}")
        lines.extend(["", f"{req.method} {req.url} HTTP/1.1"])
        headers = dict(req.headers)
        if req.body is not None:
            headers.setdefault("Content-Type", "application/json; type=entry")
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        lines.append("")
        lines.append(json.dumps(req.body) if req.body is not None else "")

    for item in items:
        lines.append(f"--{boundary}")
        if isinstance(item, list):
            change_set = f"changeset_{uuid.uuid4().hex}"
            lines.extend([f'Content-Type: multipart/mixed; boundary="{change_set}"', ""])
            for req in item:
                lines.append(f"--{change_set}")
                request(req)
            lines.append(f"--{change_set}--")
            lines.append("")
        else:
            request(item)
    lines.append(f"--{boundary}--")
    return (newline.join(lines) + newline).encode()


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes
    content_id: str | None
    in_change_set: bool

    def json(self):
        return json.loads(self.body)


def parse_answers(response) -> list[Answer]:
    """Every embedded response, in order, parsed as plain MIME by the standard library."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + response.content, policy=email.policy.HTTP)
    assert message.is_multipart(), response.text
    answers = []

    def leaf(part, in_change_set):
        assert part.get_content_type() == "application/http"
        raw = part.get_payload(decode=True)
        status_head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        status_line, *header_lines = status_head.decode().split("\n")
        version, code, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
        answers.append(Answer(int(code), headers, body.strip(), part.get("Content-ID"), in_change_set))

    for part in message.iter_parts():
        if part.is_multipart():
            assert part.get_boundary().startswith("changesetresponse_")
            for inner in part.iter_parts():
                leaf(inner, True)
        else:
            leaf(part, False)
    return answers


async def post_batch(api, items, prefer=None, newline="\r\n", boundary="batch_test"):
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if prefer:
        headers["Prefer"] = prefer
    return await api.post("$batch", content=batch_body(items, boundary, newline), headers=headers)


async def names_like(api, prefix):
    response = await api.get("accounts", params={"$select": "name", "$filter": f"startswith(name,'{prefix}')"})
    assert response.status_code == 200, response.text
    return sorted(row["name"] for row in response.json()["value"])


def unique(label):
    return f"{label}-{uuid.uuid4().hex[:10]}"


# -- change sets ------------------------------------------------------------------------------

async def test_change_set_with_content_id_references_and_a_get(api, emulator):
    name = unique("batch-refs")
    response = await post_batch(api, [
        [
            Req("POST", "/api/data/v9.2/accounts", {"name": name}, content_id="1"),
            Req("POST", f"{emulator.api_url}/contacts",
                {"lastname": "Referenced", "parentcustomerid_account@odata.bind": "$1"}, content_id="2"),
            Req("PATCH", "$1", {"primarycontactid@odata.bind": "$2"}, content_id="3"),
        ],
        Req("GET", f"accounts?$select=name,_primarycontactid_value&$filter=name eq '{name}'"),
    ])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("multipart/mixed; boundary=batchresponse_")
    created, contact, patched, query = parse_answers(response)

    assert (created.status, created.content_id, created.in_change_set) == (204, "1", True)
    assert created.headers["odata-entityid"].startswith(f"{emulator.api_url}/accounts(")
    assert contact.status == 204 and contact.content_id == "2"
    assert patched.status == 204
    assert query.status == 200 and not query.in_change_set
    assert query.headers["content-type"] == "application/json; odata.metadata=minimal; odata.streaming=true"
    [row] = query.json()["value"]
    contact_id = contact.headers["odata-entityid"].rsplit("(", 1)[1].rstrip(")")
    assert row["_primarycontactid_value"] == contact_id

    linked = await api.get(f"contacts({contact_id})", params={"$select": "_parentcustomerid_value"})
    assert linked.json()["_parentcustomerid_value"] == row["accountid"]


async def test_failed_part_rolls_back_its_whole_change_set(api):
    name = unique("batch-rollback")
    response = await post_batch(api, [
        [
            Req("POST", "accounts", {"name": name}, content_id="1"),
            Req("POST", "accounts", {"name": name + "-2"}, content_id="2"),
            Req("POST", "accounts", {"name": name, "nosuchcolumn": 1}, content_id="3"),
        ],
        Req("GET", "accounts?$top=1"),
    ])
    assert response.status_code == 400
    [failure] = parse_answers(response)          # in place of the change set, and the batch stopped
    assert failure.status == 400 and not failure.in_change_set
    assert failure.content_id == "3"
    assert "nosuchcolumn" in failure.json()["error"]["message"]
    assert "req_id" in failure.headers
    assert await names_like(api, name) == []


async def test_reference_to_an_undeclared_content_id(api):
    response = await post_batch(api, [[Req("POST", "contacts", {"lastname": "x",
                                                                 "parentcustomerid_account@odata.bind": "$7"})]])
    [failure] = parse_answers(response)
    assert failure.status == 400
    assert failure.json()["error"]["message"] == "Content-ID Reference: '$7' does not exist in the batch context."


# -- independent parts --------------------------------------------------------------------------

async def test_without_continue_on_error_the_batch_stops_at_the_first_failure(api):
    name = unique("batch-stop")
    response = await post_batch(api, [
        Req("POST", "accounts", {"name": name, "nosuchcolumn": 1}),
        Req("POST", "accounts", {"name": name}),
    ])
    assert response.status_code == 400
    assert [a.status for a in parse_answers(response)] == [400]
    assert await names_like(api, name) == []


async def test_continue_on_error_runs_every_part(api):
    name = unique("batch-continue")
    response = await post_batch(api, [
        Req("POST", "accounts", {"name": name, "nosuchcolumn": 1}),
        Req("POST", "accounts", {"name": name}),
        [Req("POST", "accounts", {"name": name + "-cs"}, content_id="1"),
         Req("DELETE", "accounts(00000000-0000-0000-0000-000000000bad)", content_id="2")],
        Req("GET", f"accounts?$select=name&$filter=startswith(name,'{name}')"),
    ], prefer="odata.continue-on-error")
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "odata.continue-on-error"
    answers = parse_answers(response)
    assert [a.status for a in answers] == [400, 204, 404, 200]
    assert [row["name"] for row in answers[-1].json()["value"]] == [name]


async def test_bare_lf_line_endings_and_unquoted_boundary(api):
    name = unique("batch-lf")
    body = batch_body([Req("POST", "accounts", {"name": name}), Req("GET", "WhoAmI")], "b1", "\n")
    response = await api.post("$batch", content=body, headers={"Content-Type": "multipart/mixed; boundary=b1"})
    assert [a.status for a in parse_answers(response)] == [204, 200]
    assert await names_like(api, name) == [name]


async def test_return_representation_inside_a_batch(api):
    name = unique("batch-repr")
    response = await post_batch(api, [Req("POST", "accounts?$select=name", {"name": name},
                                          headers={"Prefer": "return=representation"})])
    [created] = parse_answers(response)
    assert created.status == 201 and created.json()["name"] == name


# -- malformed batches ------------------------------------------------------------------------

async def test_get_inside_a_change_set_is_rejected(api):
    response = await post_batch(api, [[Req("GET", "accounts")]])
    assert response.status_code == 400
    assert "change set" in response.json()["error"]["message"]


async def test_more_than_1000_requests_is_rejected_before_any_runs(api):
    name = unique("batch-limit")
    items = [Req("POST", "accounts", {"name": name})] + [Req("GET", "WhoAmI")] * 1000
    response = await post_batch(api, items)
    assert response.status_code == 400
    assert "1000" in response.json()["error"]["message"]
    assert await names_like(api, name) == []


async def test_missing_boundary_and_missing_token(api):
    no_boundary = await api.post("$batch", content=b"--x--", headers={"Content-Type": "multipart/mixed"})
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["error"]["message"]
    json_batch = await api.post("$batch", json={"requests": [{"id": "1", "method": "GET", "url": "WhoAmI"}]})
    assert json_batch.status_code == 400 and "multipart/mixed" in json_batch.json()["error"]["message"]
    api.headers.pop("Authorization")
    unauthenticated = await post_batch(api, [Req("GET", "WhoAmI")])
    assert unauthenticated.status_code == 401 and "www-authenticate" in unauthenticated.headers


@pytest.mark.slow
async def test_1000_creates_in_one_change_set(api):
    prefix = unique("batch-1000")
    items = [[Req("POST", "accounts", {"name": f"{prefix}-{i:04}"}, content_id=str(i + 1)) for i in range(1000)]]
    response = await post_batch(api, items)
    assert response.status_code == 200
    answers = parse_answers(response)
    assert len(answers) == 1000 and {a.status for a in answers} == {204}
    assert [a.content_id for a in answers] == [str(i + 1) for i in range(1000)]
    count = await api.get("accounts", params={"$filter": f"startswith(name,'{prefix}')", "$count": "true",
                                              "$select": "name"})
    assert count.json()["@odata.count"] == 1000


# -- bulk messages (§6): many records in one request, one transaction ---------------------------

ACCOUNT = "Microsoft.Dynamics.CRM.account"


async def bulk(api, message, targets):
    return await api.post(f"accounts/Microsoft.Dynamics.CRM.{message}", json={"Targets": targets})


async def test_create_multiple_returns_ids_in_order(api, emulator):
    prefix = unique("bulk-create")
    response = await bulk(api, "CreateMultiple", [{"@odata.type": ACCOUNT, "name": f"{prefix}-{i}"} for i in range(3)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == f"{emulator.api_url}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    for i, row_id in enumerate(body["Ids"]):
        assert (await api.get(f"accounts({row_id})?$select=name")).json()["name"] == f"{prefix}-{i}"


async def test_create_multiple_is_all_or_nothing(api):
    prefix = unique("bulk-atomic")
    response = await bulk(api, "CreateMultiple", [
        {"@odata.type": ACCOUNT, "name": prefix},
        {"@odata.type": ACCOUNT, "name": prefix, "nosuchcolumn": 1},
    ])
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Targets[1]: ")
    assert await names_like(api, prefix) == []


async def test_every_target_needs_the_bound_tables_type(api):
    untyped = await bulk(api, "CreateMultiple", [{"name": "x"}])
    assert untyped.status_code == 400 and "@odata.type" in untyped.json()["error"]["message"]
    other = await bulk(api, "CreateMultiple", [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "x"}])
    assert other.status_code == 400 and "same table" in other.json()["error"]["message"]


async def test_update_multiple(api):
    prefix = unique("bulk-update")
    ids = (await bulk(api, "CreateMultiple", [{"@odata.type": ACCOUNT, "name": f"{prefix}-{i}"}
                                              for i in range(2)])).json()["Ids"]
    response = await bulk(api, "UpdateMultiple", [{"@odata.type": ACCOUNT, "accountid": row_id, "name": f"{prefix}-new"}
                                                  for row_id in ids])
    assert response.status_code == 204, response.text
    assert await names_like(api, prefix) == [f"{prefix}-new"] * 2

    missing = await bulk(api, "UpdateMultiple", [{"@odata.type": ACCOUNT, "accountid": str(uuid.uuid4()), "name": "x"}])
    assert missing.status_code == 404


async def test_upsert_multiple_by_id_and_by_alternate_key(api):
    prefix = unique("bulk-upsert")
    number = uuid.uuid4().hex[:12]                 # accountnumber holds 20 characters
    [existing] = (await bulk(api, "CreateMultiple", [{"@odata.type": ACCOUNT, "name": f"{prefix}-a",
                                                      "accountnumber": f"{number}-A"}])).json()["Ids"]
    new_id = str(uuid.uuid4())
    response = await bulk(api, "UpsertMultiple", [
        {"@odata.type": ACCOUNT, "@odata.id": f"accounts(accountnumber='{number}-A')", "name": f"{prefix}-a2"},
        {"@odata.type": ACCOUNT, "@odata.id": f"accounts(accountnumber='{number}-B')", "name": f"{prefix}-b"},
        {"@odata.type": ACCOUNT, "accountid": new_id, "name": f"{prefix}-c"},
    ])
    assert response.status_code == 204, response.text
    assert await names_like(api, prefix) == [f"{prefix}-a2", f"{prefix}-b", f"{prefix}-c"]
    assert (await api.get(f"accounts({existing})?$select=name")).json()["name"] == f"{prefix}-a2"
    assert (await api.get(f"accounts({new_id})?$select=name")).json()["name"] == f"{prefix}-c"
    created = await api.get(f"accounts(accountnumber='{number}-B')?$select=accountnumber")
    assert created.status_code == 200


async def test_delete_multiple_is_for_elastic_tables_only(api):
    response = await bulk(api, "DeleteMultiple", [{"@odata.type": ACCOUNT, "accountid": str(uuid.uuid4())}])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "DeleteMultiple has not yet been implemented."
