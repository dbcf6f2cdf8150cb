"""File and Image columns created through metadata over real HTTPS: upload (single request and
chunked), download, the image's 144x144 thumbnail and its full-size `$value?size=full`."""

from __future__ import annotations

import base64
import io

from PIL import Image


def label(text: str) -> dict:
    return {"LocalizedLabels": [{"Label": text, "LanguageCode": 1033}]}


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


async def new_account(api, name: str) -> str:
    response = await api.post("accounts", json={"name": name}, headers={"Prefer": "return=representation"})
    return response.json()["accountid"]


async def test_file_column_created_through_metadata_takes_uploads(api, unique):
    column = f"new_doc{unique}"
    created = await api.post("EntityDefinitions(LogicalName='account')/Attributes", json={
        "@odata.type": "Microsoft.Dynamics.CRM.FileAttributeMetadata", "SchemaName": f"new_Doc{unique}",
        "DisplayName": label("Doc"), "MaxSizeInKB": 1})
    assert created.status_code == 204, created.text
    typed = (await api.get(f"EntityDefinitions(LogicalName='account')/Attributes(LogicalName='{column}')/"
                           "Microsoft.Dynamics.CRM.FileAttributeMetadata")).json()
    assert typed["MaxSizeInKB"] == 1
    account = await new_account(api, f"file {unique}")
    headers = {"Content-Type": "application/octet-stream", "x-ms-file-name": "a.txt"}
    assert (await api.patch(f"accounts({account})/{column}", content=b"hello", headers=headers)).status_code == 204
    assert (await api.get(f"accounts({account})/{column}/$value")).content == b"hello"
    too_big = await api.patch(f"accounts({account})/{column}", content=b"x" * 2048, headers=headers)
    assert too_big.status_code == 400 and too_big.json()["error"]["code"] == "0x80044a02"

    start = await api.patch(f"accounts({account})/{column}?x-ms-file-name=b.bin",
                            headers={"x-ms-transfer-mode": "chunked"})
    assert start.status_code == 200
    body = bytes(range(200))
    chunk = await api.patch(start.headers["Location"], content=body, headers={
        "Content-Range": f"bytes 0-{len(body) - 1}/{len(body)}", "x-ms-file-name": "b.bin",
        "Content-Type": "application/octet-stream"})
    assert chunk.status_code == 204
    assert (await api.get(f"accounts({account})/{column}/$value")).content == body

    dropped = await api.delete(f"EntityDefinitions(LogicalName='account')/Attributes({typed['MetadataId']})",
                               headers={"If-Match": "*"})
    assert dropped.status_code == 204
    assert (await api.get(f"accounts({account})/{column}/$value")).status_code == 404


async def test_image_column_serves_a_thumbnail_and_the_full_image(api, unique):
    column = f"new_photo{unique}"
    created = await api.post("EntityDefinitions(LogicalName='contact')/Attributes", json={
        "@odata.type": "Microsoft.Dynamics.CRM.ImageAttributeMetadata", "SchemaName": f"new_Photo{unique}",
        "DisplayName": label("Photo"), "CanStoreFullImage": True, "IsPrimaryImage": True})
    assert created.status_code == 204, created.text
    typed = (await api.get(f"EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='{column}')/"
                           "Microsoft.Dynamics.CRM.ImageAttributeMetadata")).json()
    assert (typed["CanStoreFullImage"], typed["IsPrimaryImage"], typed["MaxSizeInKB"]) == (True, True, 10240)
    entity = (await api.get("EntityDefinitions(LogicalName='contact')?$select=PrimaryImageAttribute")).json()
    assert entity["PrimaryImageAttribute"] == column

    contact = (await api.post("contacts", json={"lastname": "pictured"},
                              headers={"Prefer": "return=representation"})).json()["contactid"]
    picture = png(400, 300)
    headers = {"Content-Type": "application/octet-stream", "x-ms-file-name": "me.png"}
    assert (await api.patch(f"contacts({contact})/{column}", content=picture, headers=headers)).status_code == 204
    thumb = await api.get(f"contacts({contact})/{column}/$value")
    assert thumb.status_code == 200
    assert Image.open(io.BytesIO(thumb.content)).size == (144, 144)
    full = await api.get(f"contacts({contact})/{column}/$value?size=full")
    assert full.content == picture
    record = (await api.get(f"contacts({contact})?$select={column}")).json()
    assert base64.b64decode(record[column]) == thumb.content

    not_an_image = await api.patch(f"contacts({contact})/{column}", content=b"plain text", headers=headers)
    assert not_an_image.status_code == 400


async def test_image_column_without_full_images_refuses_size_full(api, unique):
    column = f"new_icon{unique}"
    assert (await api.post("EntityDefinitions(LogicalName='contact')/Attributes", json={
        "@odata.type": "Microsoft.Dynamics.CRM.ImageAttributeMetadata", "SchemaName": f"new_Icon{unique}",
        "DisplayName": label("Icon")})).status_code == 204
    contact = (await api.post("contacts", json={"lastname": "iconic"},
                              headers={"Prefer": "return=representation"})).json()["contactid"]
    small = png(64, 64)
    headers = {"Content-Type": "application/octet-stream", "x-ms-file-name": "i.png"}
    assert (await api.patch(f"contacts({contact})/{column}", content=small, headers=headers)).status_code == 204
    assert (await api.get(f"contacts({contact})/{column}/$value")).content == small
    assert (await api.get(f"contacts({contact})/{column}/$value?size=full")).status_code == 400
