"""Image column thumbnails: Dataverse serves an image column's `$value` as a 144x144 thumbnail
(cropped to a square, then resized) and the stored image only with `?size=full`, when the column
has CanStoreFullImage (Microsoft Learn, "Image columns")."""

from __future__ import annotations

import base64
import io

from PIL import Image, UnidentifiedImageError

from d365_components.emulator.storage.store import Store

THUMBNAIL_SIDE = 144


def is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError):
        return False
    return True


def thumbnail(data: bytes) -> bytes:
    """The square 144x144 thumbnail of an image, in the image's own format (an image already that
    size or smaller is served as stored)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width <= THUMBNAIL_SIDE and height <= THUMBNAIL_SIDE:
            return data
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        square = image.crop((left, top, left + side, top + side)).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        out = io.BytesIO()
        square.save(out, format=image.format or "PNG")
        return out.getvalue()


def record_value(store: Store, file_id: str) -> str | None:
    """An image column read with its record: the thumbnail's bytes, base64-encoded, as Dataverse
    returns them (the file's id is what the column stores here)."""
    blocks = store.execute("SELECT data FROM _d365_file_blocks WHERE owner = ? ORDER BY start", [file_id])
    if not blocks:
        return None
    return base64.b64encode(thumbnail(b"".join(b["data"] for b in blocks))).decode("ascii")
