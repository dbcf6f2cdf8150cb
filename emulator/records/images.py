"""Image column thumbnails: Dataverse serves an image column's `$value` as a 144x144 thumbnail
(cropped to a square, then resized) and the stored image only with `?size=full`, when the column
has CanStoreFullImage (Microsoft Learn, "Image columns")."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

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
