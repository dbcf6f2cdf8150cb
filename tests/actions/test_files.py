"""File actions against the emulator: upload (single and chunked), download (whole and ranges),
delete, and note attachments round trip; bad input fails before any request."""

from __future__ import annotations

import base64
import os

import pytest

from d365_components.actions.files import Content
from d365_components.emulator.records import files
from d365_components.errors import InputValidationError, RecordNotFoundError
from d365_components.runtime import invoke


@pytest.fixture
async def account(run):
    out = await run("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": {"name": "file actions test"}})
    return out["id"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_upload_download_delete_small_file(run, account):
    data = b"%PDF-1.4 tiny contract\n" * 10
    out = await run("dynamics365.upload_file", {"entityType": "accounts", "entityId": account, "column": "new_contract",
                                                "fileName": "contract.pdf", "content": b64(data)})
    assert (out["size"], out["chunks"], out["mimeType"]) == (len(data), 1, "application/pdf")
    assert out["fileId"]
    got = await run("dynamics365.download_file", {"entityType": "account", "entityId": account, "column": "new_contract"})
    assert base64.b64decode(got["content"]) == data
    assert (got["fileName"], got["mimeType"], got["size"], got["length"]) == ("contract.pdf", "application/pdf", len(data), len(data))
    part = await run("dynamics365.download_file", {"entityType": "accounts", "entityId": account, "column": "new_contract",
                                                   "rangeStart": 5, "rangeEnd": 20})
    assert base64.b64decode(part["content"]) == data[5:21]
    assert (part["rangeStart"], part["length"], part["size"]) == (5, 16, len(data))
    out = await run("dynamics365.delete_file", {"entityType": "accounts", "entityId": account, "column": "new_contract"})
    assert out["deleted"] is True
    with pytest.raises(RecordNotFoundError):
        await run("dynamics365.download_file", {"entityType": "accounts", "entityId": account, "column": "new_contract"})


async def test_text_content_and_non_ascii_file_name(run, account):
    await run("dynamics365.upload_file", {"entityType": "accounts", "entityId": account, "column": "new_contract",
                                          "fileName": "Vertrag für Müller.txt", "content": "Grüße\n", "contentEncoding": "text"})
    got = await run("dynamics365.download_file", {"entityType": "accounts", "entityId": account, "column": "new_contract"})
    assert base64.b64decode(got["content"]).decode() == "Grüße\n"
    assert got["mimeType"] == "text/plain"


async def test_chunked_upload_above_four_megabytes(run, account, emulator):
    data = os.urandom(files.CHUNK_SIZE + 123_457)
    out = await run("dynamics365.upload_file", {"entityType": "accounts", "entityId": account, "column": "new_contract",
                                                "fileName": "big.bin", "content": b64(data)})
    assert (out["size"], out["chunks"]) == (len(data), 2)
    got = await run("dynamics365.download_file", {"entityType": "accounts", "entityId": account, "column": "new_contract"})
    assert got["length"] == len(data) and base64.b64decode(got["content"]) == data
    tail = await run("dynamics365.download_file", {"entityType": "accounts", "entityId": account, "column": "new_contract",
                                                   "rangeStart": files.CHUNK_SIZE - 10})
    assert base64.b64decode(tail["content"]) == data[files.CHUNK_SIZE - 10:]


async def test_small_chunk_size_and_odd_offsets(run, account):
    data = os.urandom(10_000)
    out = await run("dynamics365.upload_file", {"entityType": "accounts", "entityId": account, "column": "new_contract",
                                                "fileName": "odd.bin", "content": b64(data), "chunkSize": 1024})
    assert out["chunks"] == 10
    got = await run("dynamics365.download_file", {"entityType": "accounts", "entityId": account, "column": "new_contract",
                                                  "rangeStart": 1001, "rangeEnd": 8999})
    assert base64.b64decode(got["content"]) == data[1001:9000]


def test_content_slices_decode_like_the_whole():
    data = os.urandom(1000)
    content = Content("data:image/png;base64," + b64(data), "base64")
    assert content.size == 1000 and content.mime_type == "image/png"
    for start, end in [(0, 1), (1, 2), (2, 7), (997, 1000), (0, 1000), (334, 335)]:
        assert content.read(start, end) == data[start:end]
    assert b"".join(chunk for _, chunk in content.chunks(7)) == data
    wrapped = base64.encodebytes(data).decode()                         # MIME line breaks
    assert Content(wrapped, "base64").read(0, 1000) == data
    url_safe = base64.urlsafe_b64encode(data[:998]).decode().rstrip("=")  # URL-safe, padding dropped
    assert Content(url_safe, "base64").read(0, 998) == data[:998]


async def test_bad_input_fails_before_any_request(offline_connection):
    row = {"entityType": "accounts", "entityId": "7eb682f1-ca75-e511-80d4-00155d2a68d1", "column": "new_contract"}
    upload = {**row, "fileName": "a.bin"}
    with pytest.raises(InputValidationError) as err:
        await invoke("dynamics365.upload_file", {**upload, "content": "not base64!"}, offline_connection)
    assert err.value.errors[0].pointer == "/content"
    with pytest.raises(InputValidationError) as err:
        await invoke("dynamics365.download_file", {**row, "rangeStart": 10, "rangeEnd": 5}, offline_connection)
    assert err.value.errors[0].pointer == "/rangeEnd"
    with pytest.raises(InputValidationError) as err:
        await invoke("dynamics365.upload_file", {**upload, "content": "", "chunkSize": 10}, offline_connection)
    assert err.value.errors[0].pointer == "/chunkSize"
    with pytest.raises(InputValidationError):
        await invoke("dynamics365.add_note_attachment", {"regarding": {"table": "accounts", "id": "nope"}, "fileName": "a",
                                                         "content": ""}, offline_connection)
    assert offline_connection.sent == []


async def test_note_attachments_round_trip(run, account):
    first = await run("dynamics365.add_note_attachment", {
        "regarding": {"table": "accounts", "id": account}, "subject": "Signed contract", "noteText": "see file",
        "fileName": "contract.txt", "content": b64(b"Hello, world!")})
    assert first["id"] and first["mimeType"] == "text/plain" and first["size"] == 13
    await run("dynamics365.add_note_attachment", {
        "regarding": {"table": "account", "id": account}, "fileName": "photo.png", "mimeType": "image/png",
        "content": b64(b"\x89PNG....")})
    listed = await run("dynamics365.get_note_attachments", {"regarding": {"table": "accounts", "id": account}})
    assert listed["count"] == 2
    by_name = {n["fileName"]: n for n in listed["value"]}
    assert base64.b64decode(by_name["contract.txt"]["content"]) == b"Hello, world!"
    assert (by_name["contract.txt"]["subject"], by_name["contract.txt"]["noteText"]) == ("Signed contract", "see file")
    assert by_name["photo.png"]["mimeType"] == "image/png" and by_name["photo.png"]["size"] == 8
    only = await run("dynamics365.get_note_attachments", {"regarding": {"table": "accounts", "id": account},
                                                          "includeContent": False, "fileNameContains": ".txt"})
    assert [n["fileName"] for n in only["value"]] == ["contract.txt"] and only["value"][0]["content"] is None


async def test_note_attachment_to_a_table_notes_cannot_point_to(run):
    with pytest.raises(InputValidationError) as err:
        await run("dynamics365.add_note_attachment", {
            "regarding": {"table": "systemusers", "id": "7eb682f1-ca75-e511-80d4-00155d2a68d1"},
            "fileName": "a.txt", "content": "x", "contentEncoding": "text"})
    assert err.value.errors[0].pointer == "/regarding/table"
