"""Is it a poster? The image's header is read, its pixels are not.

Decoding happens inside the model's signature (the worker) or the trainer's input
pipeline; here only the format and the dimensions are checked, so that a decompression
bomb is refused before anything inflates it.
"""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit, urlunsplit

from PIL import Image, UnidentifiedImageError

from poster_genres.posters.errors import PosterTooLarge, PosterUnreadable

IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"})
# `/t/p/<size>/<file>`: w500, h632, original, w600_and_h900_bestv2, w220_and_h330_face, ...
_TMDB_IMAGE_SIZE = re.compile(r"^/t/p/(?:original|[wh]\d+|w\d+_and_h\d+(?:_[a-z0-9]+)*)/(?=[^/]+$)")


def with_rendition(url: str, size: str) -> str:
    """`url` asking for TMDB image size `size` if it has TMDB's shape; other URLs as they are."""
    if not size:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    path = _TMDB_IMAGE_SIZE.sub(f"/t/p/{size}/", parts.path, count=1)
    return url if path == parts.path else urlunsplit(parts._replace(path=path))


def inspect_image(content: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Format, width and height from the image header; refuse what will not decode or is too big."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            fmt, (width, height) = image.format, image.size
    except Image.DecompressionBombError as exc:
        raise PosterTooLarge(f"image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise PosterUnreadable(f"not an image in a known format ({len(content)} bytes)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise PosterUnreadable(f"not a readable image: {exc}") from exc
    if fmt not in IMAGE_FORMATS:
        formats = ", ".join(sorted(IMAGE_FORMATS))
        raise PosterUnreadable(f"image format {fmt} is not one of {formats}")
    if width <= 0 or height <= 0:
        raise PosterUnreadable(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PosterTooLarge(f"image is {width}x{height}, over the cap of {max_pixels} pixels")
    return fmt, width, height
