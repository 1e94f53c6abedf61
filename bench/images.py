"""Synthetic posters in TMDB's renditions, built once and kept on disk for the poster server.

TMDB serves each poster under `/t/p/<rendition>/<file>.jpg`: `w92` ... `w780` are that
width and 1.5x as high, `original` is the upload (posters are mostly 2000x3000), and the
`wW_and_hH_bestv2` renditions are the page's own `img.poster` sizes. The images are
gradients, smooth shapes at two scales and grain: with JPEG quality 80-90 their sizes
land where real renditions do (w185 ~15 KB, w500 50-100 KB, w780 120-230 KB, original
~0.7-1.3 MB), which is what decoding and transfer cost depends on.
"""

from __future__ import annotations

import io
import os
import string
from pathlib import Path

RENDITIONS: dict[str, tuple[int, int]] = {
    "w92": (92, 138),
    "w154": (154, 231),
    "w185": (185, 278),
    "w342": (342, 513),
    "w500": (500, 750),
    "w780": (780, 1170),
    "original": (2000, 3000),
    "w300_and_h450_bestv2": (300, 450),
    "w600_and_h900_bestv2": (600, 900),
}
ORIGINALS = 4  # distinct `original` uploads (1 s each to build; the worker never asks for them)
FILE_CHARS = string.ascii_letters + string.digits


def file_names(n: int, seed: int = 42) -> list[str]:
    """`n` TMDB-like poster file names (27 base-62 characters + .jpg), the same for a seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        "".join(FILE_CHARS[k] for k in rng.integers(0, len(FILE_CHARS), 27)) + ".jpg"
        for _ in range(n)
    ]


def poster(index: int, size: tuple[int, int], seed: int = 42) -> bytes:
    """Poster `index` drawn at `size`: the same picture in every rendition, its own grain."""
    import numpy as np
    from PIL import Image

    width, height = size
    rng = np.random.default_rng([seed, index])  # the picture: one per index
    base = rng.uniform(30, 220, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    amplitude = rng.uniform(-120, 120, 3).astype(np.float32)
    shapes = rng.uniform(-70, 70, (int(rng.integers(6, 20)), int(rng.integers(4, 14)), 3))
    detail = rng.uniform(-40, 40, (60, 40, 3))
    grain_sigma = rng.uniform(3, 7)
    quality = int(rng.integers(80, 91))
    x = (np.cos(angle) * np.linspace(0, 1, width, dtype=np.float32))[None, :, None]
    y = (np.sin(angle) * np.linspace(0, 1, height, dtype=np.float32))[:, None, None]

    def smooth(noise: np.ndarray) -> np.ndarray:
        small = Image.fromarray((noise + 128).clip(0, 255).astype(np.uint8))
        return np.asarray(small.resize((width, height), Image.BICUBIC), np.float32) - 128

    grain = np.random.default_rng([seed, index, width]).standard_normal(
        (height, width, 1), dtype=np.float32
    )
    image = base + (x + y) * amplitude + smooth(shapes) + smooth(detail) + grain * grain_sigma
    buffer = io.BytesIO()
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def build(folder: Path, n: int, renditions: list[str] | None = None, seed: int = 42) -> list[str]:
    """Write `folder/<rendition>/<file>` for `n` posters (skipping files already there);
    the file names."""
    names = file_names(n, seed)
    for rendition in renditions or list(RENDITIONS):
        out = folder / rendition
        out.mkdir(parents=True, exist_ok=True)
        count = min(n, ORIGINALS) if rendition == "original" else n
        for i, name in enumerate(names[:count]):
            path = out / name
            if not path.exists():
                tmp = path.with_suffix(f".{os.getpid()}.tmp")  # another bench may be building too
                tmp.write_bytes(poster(i, RENDITIONS[rendition], seed))
                tmp.rename(path)
    return names


def load(folder: Path, rendition: str, names: list[str]) -> list[bytes]:
    """The bytes of one rendition, in poster order (cycling where fewer were built)."""
    present = [folder / rendition / name for name in names if (folder / rendition / name).exists()]
    return [present[i % len(present)].read_bytes() for i in range(len(names))]
