"""File columns over HTTPS (reference §13): single and chunked uploads, whole and ranged downloads,
delete, the block messages, size limits, and files leaving with their row."""

from __future__ import annotations

import base64
import os

import pytest

from d365_components.emulator.records import files


@pytest.fixture
async def account(api, unique):
    r = await api.post("accounts", json={"name": f"files {unique}"})
    assert r.status_code == 204, r.text
    return r.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


async def test_single_upload_then_download_and_column_values(api, account):
    data = b"hello, contract\n" * 100
    r = await api.patch(f"accounts({account})/new_contract", content=data,
                        headers={"Content-Type": "application/octet-stream", "x-ms-file-name": "contract.txt"})
    assert r.status_code == 204, r.text
    r = await api.get(f"accounts({account})/new_contract/$value")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["x-ms-file-size"] == str(len(data))
    assert r.headers["x-ms-file-name"] == "contract.txt"
    assert r.headers["mimetype"] == "text/plain"
    row = (await api.get(f"accounts({account})?$select=new_contract,new_contract_name")).json()
    assert row["new_contract_name"] == "contract.txt"
    assert len(row["new_contract"]) == 36
    r = await api.get(f"accounts({account})/new_contract")
    assert r.json()["value"] == row["new_contract"]


async def test_ranged_download(api, account):
    data = bytes(range(256)) * 40
    await api.put(f"accounts({account})/new_contract", content=data, headers={"x-ms-file-name": "b.bin"})
    r = await api.get(f"accounts({account})/new_contract/$value", headers={"Range": "bytes=100-355"})
    assert r.status_code == 206
    assert r.content == data[100:356]
    assert r.headers["Content-Range"] == f"bytes 100-355/{len(data)}"
    assert r.headers["x-ms-file-size"] == str(len(data))
    r = await api.get(f"accounts({account})/new_contract/$value", headers={"Range": f"bytes={len(data) - 5}-"})
    assert r.content == data[-5:]
    r = await api.get(f"accounts({account})/new_contract/$value", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416


async def test_chunked_upload_in_sessions(api, account):
    data = os.urandom(files.CHUNK_SIZE + 1000)          # two chunks, the second short
    r = await api.patch(f"accounts({account})/new_contract?x-ms-file-name=big.pdf",
                        headers={"x-ms-transfer-mode": "chunked"})
    assert r.status_code == 200, r.text
    location, chunk = r.headers["Location"], int(r.headers["x-ms-chunk-size"])
    assert "sessiontoken=" in location and chunk == files.CHUNK_SIZE
    statuses = []
    # send the last chunk first: the file is committed only when the ranges cover it
    for start in sorted(range(0, len(data), chunk), reverse=True):
        part = data[start:start + chunk]
        r = await api.patch(location, content=part, headers={
            "Content-Type": "application/octet-stream", "x-ms-file-name": "big.pdf",
            "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"})
        statuses.append(r.status_code)
    assert statuses == [206, 204]
    r = await api.get(f"accounts({account})/new_contract/$value")
    assert r.content == data
    assert r.headers["mimetype"] == "application/pdf"
    # the session is gone once committed
    r = await api.patch(location, content=b"x", headers={"Content-Range": "bytes 0-0/1"})
    assert r.status_code == 400


async def test_replace_and_delete(api, account, store):
    await api.patch(f"accounts({account})/new_contract", content=b"one", headers={"x-ms-file-name": "1.txt"})
    await api.patch(f"accounts({account})/new_contract", content=b"two", headers={"x-ms-file-name": "2.txt"})
    r = await api.get(f"accounts({account})/new_contract/$value")
    assert (r.content, r.headers["x-ms-file-name"]) == (b"two", "2.txt")
    assert len(store.execute("SELECT 1 FROM _d365_files WHERE rowid_ = ?", [account])) == 1
    r = await api.delete(f"accounts({account})/new_contract")
    assert r.status_code == 204
    r = await api.get(f"accounts({account})/new_contract/$value")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "0x80040217"
    row = (await api.get(f"accounts({account})?$select=new_contract,new_contract_name")).json()
    assert row["new_contract"] is None and row["new_contract_name"] is None


async def test_errors_before_anything_is_stored(api, account, store):
    r = await api.patch(f"accounts({account})/new_contract", content=b"abc")
    assert r.status_code == 400 and "x-ms-file-name" in r.json()["error"]["message"]
    r = await api.patch(f"accounts({account})/new_contract?sessiontoken=nope", content=b"abc",
                        headers={"Content-Range": "bytes 0-2/3"})
    assert r.status_code == 400
    r = await api.patch("accounts(00000000-0000-0000-0000-000000000001)/new_contract", content=b"abc",
                        headers={"x-ms-file-name": "a.txt"})
    assert r.status_code == 404
    col = store.schema.tables["account"].columns["new_contract"]
    old, col.max_value = col.max_value, 1               # 1 KB
    try:
        r = await api.patch(f"accounts({account})/new_contract", content=b"x" * 2000,
                            headers={"x-ms-file-name": "a.txt"})
    finally:
        col.max_value = old
    assert r.status_code == 400 and r.json()["error"]["code"] == files.FILE_TOO_BIG
    assert not store.execute("SELECT 1 FROM _d365_files WHERE rowid_ = ?", [account])


async def test_block_messages_round_trip(api, account):
    target = {"accountid": account, "@odata.type": "Microsoft.Dynamics.CRM.account"}
    r = await api.post("InitializeFileBlocksUpload", json={"Target": target, "FileName": "m.csv",
                                                           "FileAttributeName": "new_contract"})
    assert r.status_code == 200, r.text
    token = r.json()["FileContinuationToken"]
    parts = [b"a,b\n", b"1,2\n", b"3,4\n"]
    ids = [base64.b64encode(f"block-{i:04d}".encode()).decode() for i in range(len(parts))]
    for block_id, part in zip(ids, parts, strict=False):
        r = await api.post("UploadBlock", json={"BlockId": block_id, "BlockData": base64.b64encode(part).decode(),
                                                "FileContinuationToken": token})
        assert r.status_code == 204, r.text
    r = await api.post("CommitFileBlocksUpload", json={"FileName": "m.csv", "MimeType": "text/csv",
                                                       "BlockList": ids, "FileContinuationToken": token})
    assert r.status_code == 200, r.text
    assert r.json()["FileSizeInBytes"] == 12
    file_id = r.json()["FileId"]
    r = await api.post("InitializeFileBlocksDownload", json={"Target": target, "FileAttributeName": "new_contract"})
    body = r.json()
    assert (body["FileSizeInBytes"], body["FileName"], body["IsChunkingSupported"]) == (12, "m.csv", True)
    r = await api.post("DownloadBlock", json={"Offset": 4, "BlockLength": 6,
                                              "FileContinuationToken": body["FileContinuationToken"]})
    assert base64.b64decode(r.json()["Data"]) == b"1,2\n3,"
    r = await api.post("DeleteFile", json={"FileId": file_id})
    assert r.status_code == 204
    r = await api.get(f"accounts({account})/new_contract/$value")
    assert r.status_code == 404


async def test_files_leave_with_their_row(api, account, store):
    await api.patch(f"accounts({account})/new_contract", content=b"bye", headers={"x-ms-file-name": "b.txt"})
    assert store.execute("SELECT 1 FROM _d365_files WHERE rowid_ = ?", [account])
    assert (await api.delete(f"accounts({account})")).status_code == 204
    assert not store.execute("SELECT 1 FROM _d365_files WHERE rowid_ = ?", [account])


async def test_abandoned_sessions_are_dropped(api, account, store, monkeypatch):
    r = await api.patch(f"accounts({account})/new_contract?x-ms-file-name=a.bin", headers={"x-ms-transfer-mode": "chunked"})
    location = r.headers["Location"]
    await api.patch(location, content=b"abc", headers={"Content-Range": "bytes 0-2/10"})
    monkeypatch.setattr(files, "SESSION_LIFETIME", -1.0)
    await api.patch(f"accounts({account})/new_contract?x-ms-file-name=b.bin", headers={"x-ms-transfer-mode": "chunked"})
    token = location.rsplit("=", 1)[1]
    assert not store.execute("SELECT 1 FROM _d365_file_blocks WHERE owner = ?", [token])
    r = await api.patch(location, content=b"defg", headers={"Content-Range": "bytes 3-6/10"})
    assert r.status_code == 400


async def test_file_columns_show_in_rows_and_metadata(api, account):
    row = (await api.get(f"accounts({account})")).json()
    assert "new_contract" in row and "new_contract_name" in row
    column = (await api.get("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='new_contract')")).json()
    assert column["AttributeType"] == "File" and column["IsValidForUpdate"] is False
