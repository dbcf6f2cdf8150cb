"""The file-block messages (reference/dataverse-web-api.md §13): InitializeFileBlocksUpload, UploadBlock,
CommitFileBlocksUpload, InitializeFileBlocksDownload, DownloadBlock, DeleteFile (registered on import).
The files themselves are stored by emulator/records/files.py."""

from __future__ import annotations

import base64
import mimetypes
import secrets
import time
import uuid
from typing import Any

from d365_components.emulator.messages.registry import Bound, register_action
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    OBJECT_DOES_NOT_EXIST,
    DataverseError,
    bad_request,
)
from d365_components.emulator.records.files import (
    attach,
    check_size,
    delete_file,
    drop_file,
    file_of,
    forget_abandoned,
    install,
    is_file_column,
    read_range,
)
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Column, Table


def _target(ctx: Ctx, params: dict[str, Any], message: str) -> tuple[Table, dict[str, Any], Column]:
    target = params.get("Target")
    column = params.get("FileAttributeName")
    if not isinstance(target, dict) or not column:
        raise bad_request(f"The message '{message}' needs Target and FileAttributeName.", INVALID_ARGUMENT)
    logical = str(target.get("@odata.type", "")).lstrip("#").rsplit(".", 1)[-1]
    table = ctx.schema.tables.get(logical)
    if table is None or not target.get(table.primary_id):
        raise bad_request("Target needs '@odata.type' (Microsoft.Dynamics.CRM.<table>) and the row's id.",
                          INVALID_ARGUMENT)
    row = ctx.store.get(table.logical_name, str(target[table.primary_id]).lower())
    if row is None:
        raise DataverseError(404, OBJECT_DOES_NOT_EXIST,
                             f"Entity '{table.logical_name}' With Id = {target[table.primary_id]} Does Not Exist")
    col = table.columns.get(column)
    if col is None or not is_file_column(col):
        raise bad_request(f"'{column}' is not a file or image column of '{table.logical_name}'.", INVALID_ARGUMENT)
    return table, row, col


def _token(kind: str, *parts: str) -> str:
    return base64.urlsafe_b64encode("|".join((kind, *parts)).encode()).decode()


def _untoken(kind: str, token: object) -> list[str]:
    try:
        found, *parts = base64.urlsafe_b64decode(str(token).encode()).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        found, parts = "", []
    if found != kind:
        raise bad_request("The FileContinuationToken is not valid.", INVALID_ARGUMENT)
    return parts


def initialize_upload(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    install(ctx.store)
    table, row, col = _target(ctx, params, "InitializeFileBlocksUpload")
    name = params.get("FileName") or ""
    token = secrets.token_urlsafe(18)
    with ctx.store.lock:
        forget_abandoned(ctx.store)
        ctx.store.conn.execute("INSERT INTO _d365_file_uploads VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
                               [token, table.logical_name, row[table.primary_id], col.name, name, time.time()])
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{_NS}InitializeFileBlocksUploadResponse",
                            "FileContinuationToken": _token("up", token)})


def upload_block(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    install(ctx.store)
    token = _untoken("up", params.get("FileContinuationToken"))[0]
    block_id, data = params.get("BlockId"), params.get("BlockData")
    if not block_id or data is None:
        raise bad_request("UploadBlock needs BlockId and BlockData.", INVALID_ARGUMENT)
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise bad_request("BlockData is not valid base64.", INVALID_ARGUMENT) from None
    with ctx.store.lock:
        if not ctx.store.execute("SELECT 1 FROM _d365_file_uploads WHERE token = ?", [token]):
            raise bad_request("The FileContinuationToken is not valid.", INVALID_ARGUMENT)
        ctx.store.conn.execute("INSERT OR REPLACE INTO _d365_file_staged VALUES (?, ?, ?)", [token, block_id, raw])
    return Reply.empty(204)


def commit_upload(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    install(ctx.store)
    token = _untoken("up", params.get("FileContinuationToken"))[0]
    block_list = params.get("BlockList")
    if not isinstance(block_list, list) or not block_list:
        raise bad_request("CommitFileBlocksUpload needs a BlockList.", INVALID_ARGUMENT)
    store = ctx.store
    with store.transaction():
        sessions = store.execute("SELECT * FROM _d365_file_uploads WHERE token = ?", [token])
        if not sessions:
            raise bad_request("The FileContinuationToken is not valid.", INVALID_ARGUMENT)
        s = sessions[0]
        table = ctx.schema.tables[s["tablename"]]
        row = store.get(table.logical_name, s["rowid_"])
        if row is None:
            raise DataverseError(404, OBJECT_DOES_NOT_EXIST, f"Entity '{table.logical_name}' With Id = {s['rowid_']} Does Not Exist")
        col = table.columns[s["columnname"]]
        file_id, offset = str(uuid.uuid4()), 0
        for block_id in block_list:
            found = store.execute("SELECT length(data) AS n FROM _d365_file_staged WHERE token = ? AND blockid = ?",
                                  [token, block_id])
            if not found:
                raise bad_request(f"The block '{block_id}' was not uploaded.", INVALID_ARGUMENT)
            store.conn.execute("INSERT INTO _d365_file_blocks SELECT ?, ?, data FROM _d365_file_staged "
                               "WHERE token = ? AND blockid = ?", [file_id, offset, token, block_id])
            offset += found[0]["n"]
        check_size(col, offset)
        store.conn.execute("DELETE FROM _d365_file_staged WHERE token = ?", [token])
        store.conn.execute("DELETE FROM _d365_file_uploads WHERE token = ?", [token])
        name = params.get("FileName") or s["filename"]
        mime = params.get("MimeType") or mimetypes.guess_type(name)[0] or "application/octet-stream"
        attach(ctx, table, row, col, file_id, name, mime, offset)
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{_NS}CommitFileBlocksUploadResponse",
                            "FileId": file_id, "FileSizeInBytes": offset})


def initialize_download(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    install(ctx.store)
    table, row, col = _target(ctx, params, "InitializeFileBlocksDownload")
    info = file_of(ctx.store, table, row, col)
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{_NS}InitializeFileBlocksDownloadResponse",
                            "FileContinuationToken": _token("down", info["fileid"]),
                            "FileSizeInBytes": info["size"], "FileName": info["filename"],
                            "IsChunkingSupported": True})


def download_block(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    install(ctx.store)
    file_id = _untoken("down", params.get("FileContinuationToken"))[0]
    offset, length = params.get("Offset"), params.get("BlockLength")
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length <= 0:
        raise bad_request("DownloadBlock needs a non-negative Offset and a positive BlockLength.", INVALID_ARGUMENT)
    data = read_range(ctx.store, file_id, offset, length)
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{_NS}DownloadBlockResponse",
                            "Data": base64.b64encode(data).decode()})


def delete_file_message(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    install(ctx.store)
    file_id = str(params.get("FileId") or "").lower()
    rows = ctx.store.execute("SELECT * FROM _d365_files WHERE fileid = ?", [file_id])
    if not rows:
        raise DataverseError(404, OBJECT_DOES_NOT_EXIST, f"Entity 'fileattachment' With Id = {file_id} Does Not Exist")
    table = ctx.schema.tables[rows[0]["tablename"]]
    row = ctx.store.get(table.logical_name, rows[0]["rowid_"])
    if row is None:
        drop_file(ctx.store, file_id)
    else:
        delete_file(ctx.store, table, row, table.columns[rows[0]["columnname"]], user=ctx.user_id)
    return Reply.empty(204)


_NS = "Microsoft.Dynamics.CRM."
register_action("InitializeFileBlocksUpload", initialize_upload)
register_action("UploadBlock", upload_block)
register_action("CommitFileBlocksUpload", commit_upload)
register_action("InitializeFileBlocksDownload", initialize_download)
register_action("DownloadBlock", download_block)
register_action("DeleteFile", delete_file_message)
