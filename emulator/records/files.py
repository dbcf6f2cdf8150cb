"""File and image columns (reference/dataverse-web-api.md §13): storage and the Web API routes.

A file column (`account.new_contract`) holds the id of its file, or null, and has a read-only
companion `<column>_name` with the file name. The bytes live in the store's own SQLite database,
in three private tables:

* `_d365_files`: one row per file (id, owning table/row/column, name, MIME type, size);
* `_d365_file_blocks`: the bytes, as blocks keyed by (owner, start offset); a finished file owns
  its blocks, an unfinished upload owns its chunks under its session token, so committing a
  chunked upload moves blocks instead of copying bytes, and a ranged download reads only the
  blocks it needs;
* `_d365_file_uploads`: open upload sessions (dropped after an hour unfinished).

Routes, served by `handle(ctx, table, row, column, rest)` for `{set}({key})/{column}[/$value]`:

* `PATCH|PUT` with the bytes and `x-ms-file-name` -> 204 (single request);
* `PATCH` with `x-ms-transfer-mode: chunked` -> 200, `Location: ...?sessiontoken=<t>`,
  `x-ms-chunk-size`; then `PATCH <Location>` with `Content-Range: bytes a-b/total` per chunk
  -> 206, the last one -> 204;
* `GET .../$value` -> 200 (or 206 with `Range: bytes = a-b`), `x-ms-file-size`, `x-ms-file-name`,
  `mimetype`; `GET` without `$value` -> the file id, as for any property;
* `DELETE` -> 204.

The file-block messages (InitializeFileBlocksUpload, ...) are in emulator/messages/file_blocks.py.

`install(store)` creates the tables, adds the sample file column `account.new_contract`
(MaxSizeInKB in `Column.max_value`, default 32768 as in Dataverse) and removes a row's files when
the row is deleted. It is idempotent.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
import time
import uuid
from typing import Any

from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    OBJECT_DOES_NOT_EXIST,
    DataverseError,
    bad_request,
    method_not_allowed,
    segment_not_found,
)
from d365_components.emulator.records.images import is_image, thumbnail
from d365_components.emulator.records.read import property_value
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Column, Table
from d365_components.emulator.storage.store import Store

FILE_TYPES = frozenset({"File", "Image"})
CHUNK_SIZE = 4 * 1024 * 1024                  # what Dataverse answers in x-ms-chunk-size
SINGLE_REQUEST_LIMIT = 128 * 1024 * 1024      # larger files must be sent in chunks
DEFAULT_MAX_SIZE_KB = 32768
IMAGE_MAX_SIZE_KB = 10240                     # ImageAttributeMetadata.MaxSizeInKB default
SESSION_LIFETIME = 3600.0                     # seconds an unfinished upload session is kept
FILE_TOO_BIG = "0x80044a02"
SAMPLE_COLUMNS = (("account", "new_contract", "Contract"),)
EXPOSED = "x-ms-file-size, x-ms-file-name, mimetype, x-ms-chunk-size"

_TABLES = (
    "CREATE TABLE IF NOT EXISTS _d365_files (fileid TEXT PRIMARY KEY, tablename TEXT NOT NULL, "
    "rowid_ TEXT NOT NULL, columnname TEXT NOT NULL, filename TEXT, mimetype TEXT, size INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_d365_files_row ON _d365_files (tablename, rowid_)",
    "CREATE TABLE IF NOT EXISTS _d365_file_blocks (owner TEXT NOT NULL, start INTEGER NOT NULL, "
    "data BLOB NOT NULL, PRIMARY KEY (owner, start))",
    "CREATE TABLE IF NOT EXISTS _d365_file_uploads (token TEXT PRIMARY KEY, tablename TEXT NOT NULL, "
    "rowid_ TEXT NOT NULL, columnname TEXT NOT NULL, filename TEXT, mimetype TEXT, size INTEGER, "
    "startedat REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _d365_file_staged (token TEXT NOT NULL, blockid TEXT NOT NULL, "
    "data BLOB NOT NULL, PRIMARY KEY (token, blockid))",
)


# ---- setup ----------------------------------------------------------------------------------

def install(store: Store) -> None:
    """Create the file tables and the sample file columns; drop a row's files with the row."""
    with store.lock:
        if "files" in store.installed:
            return
        for sql in _TABLES:
            store.conn.execute(sql)
        for table_name, column, display in SAMPLE_COLUMNS:
            table = store.schema.tables.get(table_name)
            if table is not None and column not in table.columns:
                add_file_column(store, table, column, display)

        def drop_files_of_deleted_rows(message: str, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
            t = store.schema.tables.get(table)
            if message == "Delete" and before is not None and t is not None \
                    and any(c.type in FILE_TYPES for c in t.columns.values()):
                _purge_row(store, t, before[t.primary_id])

        store.listeners.append(drop_files_of_deleted_rows)
        store.installed.add("files")


def add_file_column(store: Store, table: Table, name: str, display: str, *, max_size_kb: int = DEFAULT_MAX_SIZE_KB,
                    kind: str = "File") -> Column:
    """Add a file (or image) column and its read-only `<name>_name` companion to a live table."""
    col = Column(name, kind, display=display, max_value=max_size_kb, writable=False, is_custom=name.startswith("new_"),
                 description=f"The {display.lower()} file attached to the {table.display.lower()}.")
    companion = Column(f"{name}_name", "String", display=f"{display} Name", max_length=260, writable=False,
                       is_custom=col.is_custom)
    existing = {r["name"] for r in store.execute(f'PRAGMA table_info("{table.logical_name}")')}
    for c in (col, companion):
        if c.name in existing:          # a file database from an earlier run already has it
            table.add(c)
        else:
            store.add_column(table.logical_name, c)
    store.schema.version += 1           # cached row plans, metadata and CSDL see the new columns
    return col


def is_file_column(col: Column | None) -> bool:
    return col is not None and col.type in FILE_TYPES


def _purge_row(store: Store, table: Table, row_id: str) -> None:
    with store.lock:
        for f in store.execute("SELECT fileid FROM _d365_files WHERE tablename = ? AND rowid_ = ?",
                               [table.logical_name, row_id]):
            drop_file(store, f["fileid"])


# ---- routes ---------------------------------------------------------------------------------

def handle(ctx: Ctx, table: Table, row: dict[str, Any], col: Column, rest: list[str]) -> Reply:
    """Serve `{set}({key})/{column}` and `{set}({key})/{column}/$value` for a file column."""
    install(ctx.store)
    if rest == ["$value"]:
        if ctx.method != "GET":
            raise method_not_allowed(ctx.method)
        return download(ctx, table, row, col)
    if rest:
        raise segment_not_found(rest[0])
    if ctx.method == "GET":
        return property_value(ctx, table, row, col)
    if ctx.method in ("PATCH", "PUT"):
        if "sessiontoken" in ctx.query:
            return upload_chunk(ctx, table, row, col, ctx.query["sessiontoken"])
        if ctx.headers.get("x-ms-transfer-mode", "").lower() == "chunked":
            return start_upload(ctx, table, row, col)
        return upload(ctx, table, row, col)
    if ctx.method == "DELETE":
        delete_file(ctx.store, table, row, col, user=ctx.user_id)
        return Reply.empty(204)
    raise method_not_allowed(ctx.method)


def upload(ctx: Ctx, table: Table, row: dict[str, Any], col: Column) -> Reply:
    """Single-request upload: the whole file in the body."""
    name = _file_name(ctx)
    data = ctx.body
    if len(data) > SINGLE_REQUEST_LIMIT:
        raise bad_request(f"A single request can upload at most {SINGLE_REQUEST_LIMIT} bytes; "
                          "send larger files in chunks (x-ms-transfer-mode: chunked).", INVALID_ARGUMENT)
    check_size(col, len(data))
    check_image(col, data)
    store = ctx.store
    with store.transaction():
        file_id = str(uuid.uuid4())
        for start in range(0, len(data), CHUNK_SIZE):
            store.conn.execute("INSERT INTO _d365_file_blocks VALUES (?, ?, ?)",
                               [file_id, start, data[start:start + CHUNK_SIZE]])
        attach(ctx, table, row, col, file_id, name, _mime(ctx, name), len(data))
    return Reply.empty(204)


def start_upload(ctx: Ctx, table: Table, row: dict[str, Any], col: Column) -> Reply:
    """Open a chunked upload session: the client sends chunks to the returned Location."""
    name = _file_name(ctx)
    token = secrets.token_urlsafe(24)
    with ctx.store.lock:
        forget_abandoned(ctx.store)
        ctx.store.conn.execute("INSERT INTO _d365_file_uploads VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                               [token, table.logical_name, row[table.primary_id], col.name, name, _mime(ctx, name),
                                time.time()])
    location = f"{ctx.api}/{table.entity_set}({row[table.primary_id]})/{col.name}?sessiontoken={token}"
    return Reply(200, b"", {"Location": location, "Accept-Ranges": "bytes", "x-ms-chunk-size": str(CHUNK_SIZE),
                            "Access-Control-Expose-Headers": "x-ms-chunk-size"})


_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$")


def upload_chunk(ctx: Ctx, table: Table, row: dict[str, Any], col: Column, token: str) -> Reply:
    """One chunk of a session (`Content-Range: bytes a-b/total`); the last one commits the file."""
    store = ctx.store
    with store.transaction():
        session = _session(store, token, table, row, col)
        m = _RANGE.match(ctx.headers.get("content-range", ""))
        if m is None:
            raise bad_request("A chunk needs a Content-Range header such as 'bytes 0-4194303/25870370'.",
                              INVALID_ARGUMENT)
        first, last, total = (int(g) for g in m.groups())
        data = ctx.body
        if last < first or last >= total or len(data) != last - first + 1:
            raise bad_request(f"The Content-Range 'bytes {first}-{last}/{total}' does not match the "
                              f"{len(data)} bytes sent.", INVALID_ARGUMENT)
        if len(data) > CHUNK_SIZE:
            raise bad_request(f"A chunk can hold at most {CHUNK_SIZE} bytes (x-ms-chunk-size).", INVALID_ARGUMENT)
        if session["size"] is not None and session["size"] != total:
            raise bad_request(f"The total size {total} differs from the {session['size']} bytes announced by "
                              "earlier chunks.", INVALID_ARGUMENT)
        check_size(col, total)
        name = ctx.headers.get("x-ms-file-name") or session["filename"]
        store.conn.execute("UPDATE _d365_file_uploads SET size = ?, filename = ? WHERE token = ?", [total, name, token])
        store.conn.execute("INSERT OR REPLACE INTO _d365_file_blocks VALUES (?, ?, ?)", [token, first, data])
        blocks = store.execute("SELECT start, length(data) AS n FROM _d365_file_blocks WHERE owner = ? ORDER BY start",
                               [token])
        if not _complete(blocks, total):
            return Reply.empty(206, {"Accept-Ranges": "bytes"})
        file_id = str(uuid.uuid4())
        store.conn.execute("UPDATE _d365_file_blocks SET owner = ? WHERE owner = ?", [file_id, token])
        store.conn.execute("DELETE FROM _d365_file_uploads WHERE token = ?", [token])
        attach(ctx, table, row, col, file_id, name, session["mimetype"], total)
    return Reply.empty(204)


def forget_abandoned(store: Store) -> None:
    """Drop upload sessions older than SESSION_LIFETIME with their chunks, so they cannot pile up."""
    old = [r["token"] for r in store.execute("SELECT token FROM _d365_file_uploads WHERE startedat < ?",
                                             [time.time() - SESSION_LIFETIME])]
    for token in old:
        store.conn.execute("DELETE FROM _d365_file_blocks WHERE owner = ?", [token])
        store.conn.execute("DELETE FROM _d365_file_staged WHERE token = ?", [token])
        store.conn.execute("DELETE FROM _d365_file_uploads WHERE token = ?", [token])


def _complete(blocks: list[dict[str, Any]], total: int) -> bool:
    """True when the blocks cover [0, total) exactly, without gaps or overlaps."""
    end = 0
    for b in blocks:
        if b["start"] != end:
            return False
        end += b["n"]
    return end == total


def _session(store: Store, token: str, table: Table, row: dict[str, Any], col: Column) -> dict[str, Any]:
    rows = store.execute("SELECT * FROM _d365_file_uploads WHERE token = ?", [token])
    if not rows or (rows[0]["tablename"], rows[0]["rowid_"], rows[0]["columnname"]) != (
            table.logical_name, row[table.primary_id], col.name):
        raise bad_request("The upload session token is not valid for this column: start a new chunked upload.",
                          INVALID_ARGUMENT)
    return rows[0]


def download(ctx: Ctx, table: Table, row: dict[str, Any], col: Column) -> Reply:
    """The file's bytes: all of them, or the `Range: bytes = a-b` asked for (206)."""
    info = file_of(ctx.store, table, row, col)
    size = info["size"]
    if col.type == "Image":
        return _download_image(ctx, col, info)
    headers = {"Content-Type": "application/octet-stream", "x-ms-file-size": str(size),
               "x-ms-file-name": info["filename"] or "", "mimetype": info["mimetype"] or "application/octet-stream",
               "Access-Control-Expose-Headers": EXPOSED}
    wanted = ctx.headers.get("range")
    if not wanted:
        return Reply(200, read_range(ctx.store, info["fileid"], 0, size), headers)
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", wanted)
    if m is None or m.groups() == ("", ""):
        raise bad_request(f"The Range header '{wanted}' is not valid; use 'bytes=<first>-<last>'.", INVALID_ARGUMENT)
    if m.group(1) == "":                               # suffix: the last n bytes
        first, last = max(0, size - int(m.group(2))), size - 1
    else:
        first = int(m.group(1))
        last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if first >= size or last < first:
        raise DataverseError(416, INVALID_ARGUMENT, f"The range '{wanted}' is outside the file's {size} bytes.",
                             {"Content-Range": f"bytes */{size}"})
    headers.update({"Content-Range": f"bytes {first}-{last}/{size}", "x-ms-chunk-size": str(CHUNK_SIZE),
                    "Accept-Ranges": "bytes"})
    return Reply(206, read_range(ctx.store, info["fileid"], first, last - first + 1), headers)


def _download_image(ctx: Ctx, col: Column, info: dict[str, Any]) -> Reply:
    """`$value` is the 144x144 thumbnail; `$value?size=full` the stored image, when the column keeps it."""
    size = ctx.query.get("size", "thumbnail")
    if size not in ("full", "thumbnail"):
        raise bad_request(f"The size '{size}' is not valid; use 'full' or leave it out for the thumbnail.",
                          INVALID_ARGUMENT)
    if ctx.headers.get("range"):
        raise bad_request("Downloading in multiple chunks is not supported for image columns.", "0x80090017")
    data = read_range(ctx.store, info["fileid"], 0, info["size"])
    if size == "full":
        if not col.can_store_full_image:
            raise bad_request(f"The image column '{col.name}' does not store full-size images (CanStoreFullImage "
                              f"is false).", INVALID_ARGUMENT)
    else:
        data = thumbnail(data)
    headers = {"Content-Type": "application/octet-stream", "x-ms-file-size": str(len(data)),
               "x-ms-file-name": info["filename"] or "", "mimetype": info["mimetype"] or "application/octet-stream",
               "Access-Control-Expose-Headers": EXPOSED}
    return Reply(200, data, headers)


def read_range(store: Store, owner: str, offset: int, length: int) -> bytes:
    """`length` bytes from `offset`, reading only the blocks that overlap them."""
    if length <= 0:
        return b""
    end = offset + length
    rows = store.execute(
        "SELECT start, data FROM _d365_file_blocks WHERE owner = ? AND start < ? "
        "AND start + length(data) > ? ORDER BY start", [owner, end, offset])
    out = bytearray()
    for r in rows:
        lo = max(offset - r["start"], 0)
        hi = min(end - r["start"], len(r["data"]))
        out += r["data"][lo:hi]
    return bytes(out)


def delete_file(store: Store, table: Table, row: dict[str, Any], col: Column, *, user: str) -> None:
    """Remove the column's file (no file: nothing to do) and clear the column."""
    with store.transaction():
        file_id = row.get(col.name)
        if file_id:
            drop_file(store, file_id)
        store.update(table.logical_name, row[table.primary_id], {col.name: None, f"{col.name}_name": None},
                     user=user, before=row)


# ---- shared pieces --------------------------------------------------------------------------

def attach(ctx: Ctx, table: Table, row: dict[str, Any], col: Column, file_id: str, name: str, mime: str, size: int) -> None:
    """Record a finished file and point the column at it, replacing the previous file."""
    store = ctx.store
    old = row.get(col.name)
    if old:
        drop_file(store, old)
    store.conn.execute("INSERT INTO _d365_files VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [file_id, table.logical_name, row[table.primary_id], col.name, name, mime, size])
    store.update(table.logical_name, row[table.primary_id], {col.name: file_id, f"{col.name}_name": name},
                 user=ctx.user_id, on_behalf_of=ctx.on_behalf_of, before=row)


def drop_file(store: Store, file_id: str) -> None:
    with store.lock:
        store.conn.execute("DELETE FROM _d365_file_blocks WHERE owner = ?", [file_id])
        store.conn.execute("DELETE FROM _d365_files WHERE fileid = ?", [file_id])


def file_of(store: Store, table: Table, row: dict[str, Any], col: Column) -> dict[str, Any]:
    file_id = row.get(col.name)
    rows = store.execute("SELECT * FROM _d365_files WHERE fileid = ?", [file_id]) if file_id else []
    if not rows:
        raise DataverseError(404, OBJECT_DOES_NOT_EXIST,
                             f"No file attachment found for attribute: {col.name} EntityId: {row[table.primary_id]}.")
    return rows[0]


def _file_name(ctx: Ctx) -> str:
    name = ctx.headers.get("x-ms-file-name") or ctx.query.get("x-ms-file-name")
    if not name:
        raise bad_request("The file name is missing: send it in the x-ms-file-name header.", INVALID_ARGUMENT)
    return name


def _mime(ctx: Ctx, name: str) -> str:
    sent = ctx.headers.get("content-type", "").split(";")[0].strip()
    if sent and sent != "application/octet-stream":
        return sent
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def check_size(col: Column, size: int) -> None:
    limit_kb = int(col.max_value or (IMAGE_MAX_SIZE_KB if col.type == "Image" else DEFAULT_MAX_SIZE_KB))
    if size > limit_kb * 1024:
        raise bad_request("Attachment file size is too big.", FILE_TOO_BIG)


def check_image(col: Column, data: bytes) -> None:
    """An image column takes only images (jpg, png, gif, bmp... as Dataverse lists them)."""
    if col.type == "Image" and not is_image(data):
        raise bad_request(f"The file uploaded to the image column '{col.name}' is not a valid image.", INVALID_ARGUMENT)
