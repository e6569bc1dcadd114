"""Photos attached to a case's step: JPEG, PNG or WebP only, checked by decoding them, bounded in size and number.

A photo is checked by Pillow opening it and verifying its structure (``Image.verify``), not by its name or claimed
content type: a text file called ``x.jpg`` is refused. A bad photo fails the whole step before anything is stored,
naming the photo (its index and name) and why.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from cim.errors import InvalidInput

MAX_PHOTO_BYTES = 5 * 1024 * 1024
MAX_PHOTOS = 5
#: Pillow's format name → the content type the photo is stored with.
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo as received: its bytes and the name the client gave it (for messages)."""

    data: bytes
    name: str = ""


def check_photos(photos: Sequence[Photo | bytes]) -> list[tuple[bytes, str]]:
    """``(data, content type)`` of each photo, or :class:`~cim.errors.InvalidInput` naming the first bad one."""
    if len(photos) > MAX_PHOTOS:
        raise InvalidInput("photos", f"{len(photos)} given; at most {MAX_PHOTOS} per step")
    checked = []
    for index, photo in enumerate(photos):
        if isinstance(photo, bytes | bytearray):
            photo = Photo(bytes(photo))
        what = f"photo {index}" + (f" ({photo.name})" if photo.name else "")
        if not photo.data:
            raise InvalidInput(what, "is empty")
        if len(photo.data) > MAX_PHOTO_BYTES:
            raise InvalidInput(what, f"is {len(photo.data):,} bytes; at most {MAX_PHOTO_BYTES:,}")
        checked.append((photo.data, _content_type(photo.data, what)))
    return checked


def _content_type(data: bytes, what: str) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
            if kind not in FORMATS:
                raise InvalidInput(what, f"is a {kind or 'unknown'} image; accepted: JPEG, PNG, WebP")
            image.verify()
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(what, f"is not a JPEG, PNG or WebP image ({type(exc).__name__})") from None
    except Image.DecompressionBombError:
        raise InvalidInput(what, "is too large an image (decompression bomb)") from None
    return FORMATS[kind]
