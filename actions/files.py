"""Files: file and image columns (upload, download, delete) and note attachments (reference §13).

Content travels as base64 (or plain text for uploads), the form every flow can carry. Uploads
above the chunk size go in Dataverse's chunked sessions, each chunk decoded from its own slice of
the base64 text, so memory stays at one chunk beyond the input itself; downloads read ranges of
the same size and encode them as they arrive. Note attachments are `annotation` rows whose
`documentbody` holds the base64 and whose `objectid` points at the row they belong to.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import Iterator
from typing import Any, Literal

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import entity_id_field, entity_type_field
from d365_components.actions._lookups import TableInfo, bind_values, metadata_for
from d365_components.connections.odata import entity_path, quote
from d365_components.conventions import COLUMNS, GUID_PATTERN, NAME_PATTERN, TABLES
from d365_components.errors import DataverseError, FieldError, InputValidationError

__all__ = ["AddNoteAttachment", "DeleteFile", "DownloadFile", "GetNoteAttachments", "UploadFile"]

CHUNK_SIZE = 4 * 1024 * 1024            # Dataverse's x-ms-chunk-size; larger uploads go in chunks
DOWNLOAD_CHUNK = CHUNK_SIZE - 1          # a multiple of 3, so base64 pieces join without padding
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_DATA_URL = re.compile(r"^data:([^;,]*)(;[^,]*)?;base64,", re.I)
_EXAMPLE_ID = "7eb682f1-ca75-e511-80d4-00155d2a68d1"
_EXAMPLE_FILE_ID = "3878e950-8e51-ed11-bba1-000d3a9933c9"


# -- content ----------------------------------------------------------------------------------


class Content:
    """Upload content as bytes on demand: base64 is decoded one slice at a time."""

    def __init__(self, text: str, encoding: str, pointer: str = "/content") -> None:
        self.mime_type: str | None = None
        if encoding == "text":
            self._raw: bytes | None = text.encode("utf-8")
            self._b64 = ""
            self.size = len(self._raw)
            return
        match = _DATA_URL.match(text)
        if match:
            self.mime_type = match.group(1) or None
            text = text[match.end():]
        if len(text) % 4 or not _BASE64.match(text):
            # line breaks (MIME), URL-safe letters or dropped padding: normalize once, then insist
            text = "".join(text.split()).replace("-", "+").replace("_", "/")
            text += "=" * (-len(text) % 4)
            if not _BASE64.match(text):
                raise InputValidationError([FieldError(pointer, "is not valid base64 (set contentEncoding to text for plain text)")])
        self._raw = None
        self._b64 = text
        self.size = len(text) // 4 * 3 - text[-2:].count("=") if text else 0

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the content."""
        if self._raw is not None:
            return self._raw[start:end]
        first, last = start // 3 * 4, -(-end // 3) * 4
        return base64.b64decode(self._b64[first:last])[start % 3 : start % 3 + end - start]

    def chunks(self, size: int) -> Iterator[tuple[int, bytes]]:
        for start in range(0, self.size, size):
            yield start, self.read(start, min(start + size, self.size))

    def base64(self) -> str:
        return self._b64 if self._raw is None else base64.b64encode(self._raw).decode()


def _content_field() -> Any:
    return InputField(
        title="Content",
        description="The file's bytes as base64 (a data: URL works too), or plain text when Content encoding is text.",
        examples=["SGVsbG8sIHdvcmxkIQ=="],
        widget="textarea",
    )


def _encoding_field() -> Any:
    return InputField(
        "base64", title="Content encoding",
        description="base64: Content is base64 (binary files). text: Content is text, stored as UTF-8.",
        enum_labels={"base64": "Base64 (binary)", "text": "Text (UTF-8)"},
    )


def _file_name_field(description: str = "The file's name, with its extension (contract.pdf).") -> Any:
    return InputField(title="File name", description=description, examples=["contract.pdf"], min_length=1, max_length=255)


def _mime_type_field() -> Any:
    return InputField(
        None, title="MIME type",
        description="The file's media type (application/pdf); guessed from the file name when empty.",
        examples=["application/pdf"],
    )


def _column_field() -> Any:
    return InputField(
        title="File column",
        description="The file or image column's logical name (a column of type File or Image).",
        examples=["new_contract"],
        data_source=COLUMNS,
        data_source_inputs={"table": "entityType"},
        pattern=NAME_PATTERN,
    )


def _guess_mime(name: str, given: str | None, content: Content | None = None) -> str:
    return given or (content.mime_type if content else None) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _name_headers(file_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, params) carrying the file name: the header only takes ASCII, the query parameter anything."""
    if file_name.isascii():
        return {"x-ms-file-name": file_name}, {}
    return {}, {"x-ms-file-name": file_name}


async def _row_path(ctx: Context, entity_type: str, entity_id: str) -> tuple[TableInfo, str]:
    table = await metadata_for(ctx.web_api).table(entity_type)
    return table, entity_path(table.entity_set, entity_id)


# -- file columns -----------------------------------------------------------------------------


FILE_OUTPUT = {
    "type": "object",
    "required": ["entityType", "entityId", "column", "fileId", "fileName", "size"],
    "properties": {
        "entityType": {"type": "string", "description": "The table's entity set name."},
        "entityId": {"type": "string", "description": "The row's GUID."},
        "column": {"type": "string", "description": "The file column."},
        "fileId": {"type": ["string", "null"], "description": "The stored file's id (what the column reads as)."},
        "fileName": {"type": "string"},
        "size": {"type": "integer", "description": "Bytes uploaded."},
        "mimeType": {"type": "string"},
        "chunks": {"type": "integer", "description": "Requests that carried the bytes (1 unless chunked)."},
    },
}


class UploadFile(Action):
    """Upload a file into a file or image column; large files go in chunks automatically."""

    key = "dynamics365.upload_file"
    label = "Upload File"
    group = "Files"

    class Inputs(InputModel):
        entity_type: str = entity_type_field()
        entity_id: str = entity_id_field()
        column: str = _column_field()
        file_name: str = _file_name_field()
        content: str = _content_field()
        content_encoding: Literal["base64", "text"] = _encoding_field()
        mime_type: str | None = _mime_type_field()
        chunk_size: int = InputField(
            CHUNK_SIZE, title="Chunk size",
            description="Files larger than this many bytes are sent in chunks of this size (at most 4 MB, Dataverse's limit).",
            ge=1024, le=CHUNK_SIZE, group="Advanced", advanced=True,
        )

    output_schema = FILE_OUTPUT
    example = {"entityType": "accounts", "entityId": _EXAMPLE_ID, "column": "new_contract", "fileId": _EXAMPLE_FILE_ID,
               "fileName": "contract.pdf", "size": 25870370, "mimeType": "application/pdf", "chunks": 7}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        content = Content(inputs.content, inputs.content_encoding)
        table, path = await _row_path(ctx, inputs.entity_type, inputs.entity_id)
        url = f"{path}/{inputs.column}"
        mime = _guess_mime(inputs.file_name, inputs.mime_type, content)
        name_headers, name_params = _name_headers(inputs.file_name)
        if content.size <= inputs.chunk_size:
            await ctx.web_api.request("PATCH", url, params=name_params or None, content=content.read(0, content.size),
                                     headers={"Content-Type": mime, **name_headers})
            chunks = 1
        else:
            chunks = await _upload_chunks(ctx, url, inputs.file_name, content, inputs.chunk_size, mime)
        row = await ctx.web_api.get_json(path, params={"$select": inputs.column})
        return {"entityType": table.entity_set, "entityId": inputs.entity_id.strip("{}").lower(), "column": inputs.column,
                "fileId": row.get(inputs.column), "fileName": inputs.file_name, "size": content.size,
                "mimeType": mime, "chunks": chunks}


async def _upload_chunks(ctx: Context, url: str, file_name: str, content: Content, chunk_size: int, mime: str) -> int:
    name_headers, _ = _name_headers(file_name)
    started = await ctx.web_api.request("PATCH", url, params={"x-ms-file-name": file_name},
                                       headers={"x-ms-transfer-mode": "chunked", "Content-Type": mime})
    location = started.headers.get("Location")
    if not location:
        raise InputValidationError([FieldError("/column", "Dataverse did not open an upload session: is it a file column?")])
    server_chunk = started.headers.get("x-ms-chunk-size", "")
    size = min(chunk_size, int(server_chunk)) if server_chunk.isdigit() else chunk_size
    sent = 0
    for start, data in content.chunks(size):
        await ctx.web_api.request("PATCH", location, content=data, headers={
            "Content-Type": "application/octet-stream", **name_headers,
            "Content-Range": f"bytes {start}-{start + len(data) - 1}/{content.size}",
        })
        sent += 1
        ctx.report(start + len(data), content.size)
    return sent


class DownloadFile(Action):
    """Download a file or image column as base64, whole or a byte range, read in chunks."""

    key = "dynamics365.download_file"
    label = "Download File"
    group = "Files"

    class Inputs(InputModel):
        entity_type: str = entity_type_field()
        entity_id: str = entity_id_field()
        column: str = _column_field()
        range_start: int | None = InputField(
            None, title="From byte", description="First byte to read (0-based); empty reads from the start.",
            ge=0, group="Range", advanced=True,
        )
        range_end: int | None = InputField(
            None, title="To byte", description="Last byte to read (inclusive); empty reads to the end.",
            ge=0, group="Range", advanced=True,
        )
        thumbnail: bool = InputField(
            False, title="Image thumbnail",
            description="For image columns: the 144x144 thumbnail instead of the full-size image.",
            group="Advanced", advanced=True,
        )

    output_schema = {
        "type": "object",
        "required": ["fileName", "mimeType", "size", "content", "rangeStart", "length"],
        "properties": {
            "fileName": {"type": "string"},
            "mimeType": {"type": "string"},
            "size": {"type": "integer", "description": "The whole file's size in bytes."},
            "content": {"type": "string", "contentEncoding": "base64", "description": "The bytes read, base64."},
            "rangeStart": {"type": "integer", "description": "Offset of the first byte returned."},
            "length": {"type": "integer", "description": "Bytes returned."},
        },
    }
    example = {"fileName": "contract.txt", "mimeType": "text/plain", "size": 13, "content": "SGVsbG8sIHdvcmxkIQ==",
               "rangeStart": 0, "length": 13}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        start, end = inputs.range_start or 0, inputs.range_end
        if end is not None and end < start:
            raise InputValidationError([FieldError("/rangeEnd", "must not be before From byte (rangeStart)")])
        table, path = await _row_path(ctx, inputs.entity_type, inputs.entity_id)
        url = f"{path}/{inputs.column}/$value"
        image = not inputs.thumbnail and await _is_image(ctx, table, inputs.column)
        params = {"size": "full"} if image else None
        pieces: list[str] = []
        carry = b""
        position, total, name, mime = start, None, "", "application/octet-stream"
        while total is None or position < (total if end is None else min(end + 1, total)):
            last = position + DOWNLOAD_CHUNK - 1
            if end is not None:
                last = min(last, end)
            try:
                response = await ctx.web_api.request("GET", url, params=params, headers={"Range": f"bytes={position}-{last}"})
            except DataverseError as exc:
                if exc.status != 416 or position != start:
                    raise
                if start == 0:                              # an empty file has no byte 0
                    total = 0
                    break
                raise InputValidationError([FieldError("/rangeStart", "is beyond the end of the file")]) from None
            total = int(response.headers.get("x-ms-file-size") or 0)
            name = response.headers.get("x-ms-file-name") or name
            mime = response.headers.get("mimetype") or mime
            data = response.content
            if response.status_code == 200:            # the server sent the whole file
                data = data[position: total if end is None else end + 1]
                position = total
            else:
                position += len(data)
            data, carry = carry + data, b""
            keep = len(data) - len(data) % 3
            pieces.append(base64.b64encode(data[:keep]).decode())
            carry = data[keep:]
            if not response.content:
                break
        pieces.append(base64.b64encode(carry).decode())
        encoded = "".join(pieces)
        length = len(encoded) // 4 * 3 - encoded[-2:].count("=") if encoded else 0
        return {"fileName": name, "mimeType": mime, "size": total or 0, "content": encoded,
                "rangeStart": start, "length": length}


async def _is_image(ctx: Context, table: TableInfo, column: str) -> bool:
    """Whether `column` is an image column (they answer thumbnails unless asked for size=full);
    without metadata rights it is taken for a file column."""
    if not table.logical_name:
        return False
    try:
        found = await ctx.web_api.get_json(
            f"EntityDefinitions(LogicalName={quote(table.logical_name)})/Attributes(LogicalName={quote(column)})",
            params={"$select": "AttributeType"})
    except DataverseError:
        return False
    return found.get("AttributeType") == "Image"


class DeleteFile(Action):
    """Delete the file of a file or image column (the row stays; the column becomes empty)."""

    key = "dynamics365.delete_file"
    label = "Delete File"
    group = "Files"

    class Inputs(InputModel):
        entity_type: str = entity_type_field()
        entity_id: str = entity_id_field()
        column: str = _column_field()

    output_schema = {
        "type": "object",
        "required": ["deleted", "entityType", "entityId", "column"],
        "properties": {
            "deleted": {"type": "boolean"},
            "entityType": {"type": "string"},
            "entityId": {"type": "string"},
            "column": {"type": "string"},
        },
    }
    example = {"deleted": True, "entityType": "accounts", "entityId": _EXAMPLE_ID, "column": "new_contract"}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        table, path = await _row_path(ctx, inputs.entity_type, inputs.entity_id)
        await ctx.web_api.request("DELETE", f"{path}/{inputs.column}")
        return {"deleted": True, "entityType": table.entity_set, "entityId": inputs.entity_id.strip("{}").lower(),
                "column": inputs.column}


# -- note attachments -------------------------------------------------------------------------


class Regarding(InputModel):
    """The row a note belongs to."""

    table: str = InputField(
        title="Table", description="The row's table: entity set name (accounts) or logical name (account).",
        examples=["accounts"], data_source=TABLES, min_length=1, pattern=NAME_PATTERN,
    )
    id: str = InputField(title="Row ID", description="The row's GUID.", examples=[_EXAMPLE_ID], pattern=GUID_PATTERN)


def _regarding_field(description: str) -> Any:
    return InputField(title="Regarding", description=description,
                      examples=[{"table": "accounts", "id": _EXAMPLE_ID}])


NOTE_PROPERTIES = {
    "id": {"type": "string", "description": "The note's (annotation's) GUID."},
    "subject": {"type": ["string", "null"]},
    "noteText": {"type": ["string", "null"]},
    "fileName": {"type": ["string", "null"]},
    "mimeType": {"type": ["string", "null"]},
    "size": {"type": ["integer", "null"], "description": "Attachment size in bytes."},
    "content": {"type": ["string", "null"], "contentEncoding": "base64", "description": "The attachment, base64 (null when not asked for)."},
    "createdOn": {"type": ["string", "null"]},
}


class AddNoteAttachment(Action):
    """Attach a file to a row as a note (annotation with documentbody), with an optional text."""

    key = "dynamics365.add_note_attachment"
    label = "Add Note Attachment"
    group = "Files"

    class Inputs(InputModel):
        regarding: Regarding = _regarding_field("The row to attach the note to: {table, id}.")
        subject: str | None = InputField(None, title="Title", description="The note's title.", examples=["Signed contract"],
                                         max_length=500)
        note_text: str | None = InputField(None, title="Text", description="The note's text.", widget="textarea")
        file_name: str = _file_name_field()
        mime_type: str | None = _mime_type_field()
        content: str = _content_field()
        content_encoding: Literal["base64", "text"] = _encoding_field()

    output_schema = {
        "type": "object",
        "required": ["id", "entityUrl", "fileName", "mimeType", "size"],
        "properties": {
            "id": {"type": ["string", "null"], "description": "The new note's GUID."},
            "entityUrl": {"type": ["string", "null"]},
            "fileName": {"type": "string"},
            "mimeType": {"type": "string"},
            "size": {"type": "integer"},
        },
    }
    example = {"id": _EXAMPLE_FILE_ID, "entityUrl": f"https://contoso.crm.dynamics.com/api/data/v9.2/annotations({_EXAMPLE_FILE_ID})",
               "fileName": "contract.pdf", "mimeType": "application/pdf", "size": 48213}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        content = Content(inputs.content, inputs.content_encoding)
        mime = _guess_mime(inputs.file_name, inputs.mime_type, content)
        metadata = metadata_for(ctx.web_api)
        notes = await metadata.table("annotations")
        values = {"objectid": {"table": inputs.regarding.table, "id": inputs.regarding.id}}
        body = await bind_values(metadata, notes, values, {"objectid": "/regarding/table"})
        body.update({"filename": inputs.file_name, "mimetype": mime, "documentbody": content.base64()})
        if inputs.subject is not None:
            body["subject"] = inputs.subject
        if inputs.note_text is not None:
            body["notetext"] = inputs.note_text
        created = await ctx.web_api.create(notes.entity_set, body)
        return {"id": created.get("id"), "entityUrl": created.get("entityUrl"), "fileName": inputs.file_name,
                "mimeType": mime, "size": content.size}


class GetNoteAttachments(Action):
    """List the notes with attachments of a row, with their files as base64."""

    key = "dynamics365.get_note_attachments"
    label = "Get Note Attachments"
    group = "Files"

    class Inputs(InputModel):
        regarding: Regarding = _regarding_field("The row whose note attachments to list: {table, id}.")
        include_content: bool = InputField(True, title="Include content",
                                           description="Return each attachment's bytes (base64); off lists names and sizes only.")
        file_name_contains: str | None = InputField(None, title="File name contains",
                                                    description="Only attachments whose file name contains this text.",
                                                    examples=[".pdf"])
        top: int = InputField(50, title="Maximum notes", description="Return at most this many notes, newest first.", ge=1, le=5000)

    output_schema = {
        "type": "object",
        "required": ["value", "count"],
        "properties": {
            "value": {"type": "array", "items": {"type": "object", "required": ["id", "fileName"], "properties": NOTE_PROPERTIES}},
            "count": {"type": "integer"},
        },
    }
    example = {"value": [{"id": _EXAMPLE_FILE_ID, "subject": "Signed contract", "noteText": None, "fileName": "contract.txt",
                          "mimeType": "text/plain", "size": 13, "content": "SGVsbG8sIHdvcmxkIQ==",
                          "createdOn": "2026-03-25T17:42:47Z"}], "count": 1}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        metadata = metadata_for(ctx.web_api)
        await metadata.table(inputs.regarding.table, pointer="/regarding/table")
        notes = await metadata.table("annotations")
        row_id = inputs.regarding.id.strip("{}").lower()
        select = ["annotationid", "subject", "notetext", "filename", "mimetype", "filesize", "createdon"]
        if inputs.include_content:
            select.append("documentbody")
        condition = f"_objectid_value eq {row_id} and filename ne null"
        if inputs.file_name_contains:
            condition += f" and contains(filename,{quote(inputs.file_name_contains)})"
        params = {"$select": select, "$filter": condition, "$orderby": "createdon desc", "$top": inputs.top}
        body = await ctx.web_api.get_json(notes.entity_set, params=params)
        found = []
        for row in body.get("value", [])[: inputs.top]:
            document = row.get("documentbody")
            size = row.get("filesize")
            if size is None and document:
                size = len(document) // 4 * 3 - document[-2:].count("=")
            found.append({"id": row.get("annotationid"), "subject": row.get("subject"), "noteText": row.get("notetext"),
                          "fileName": row.get("filename"), "mimeType": row.get("mimetype"), "size": size,
                          "content": document if inputs.include_content else None, "createdOn": row.get("createdon")})
        return {"value": found, "count": len(found)}
