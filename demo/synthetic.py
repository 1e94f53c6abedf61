"""Deterministic synthetic posters and a small MovieLens-format data set made of them.

Every genre has its own colour and shape, so a poster's genres can be seen (and learnt)
from the image alone. The demo and the tests use this instead of real posters:

    >>> jpeg = draw_poster(["Comedy", "Horror"], seed=7)  # JPEG bytes
    >>> data = write_dataset(Path("ml"), n_labelled=60, n_unlabelled=5)
    >>> data.movies_csv, data.posters_dir  # movies.csv, posters/<tmdbId>.jpg
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

NO_GENRES = "(no genres listed)"

# genre -> (RGB colour, shape); shapes: circle, square, triangle, bars, diamond, ring, cross, band
GENRE_STYLES: dict[str, tuple[tuple[int, int, int], str]] = {
    "Action": ((220, 30, 30), "triangle"),
    "Comedy": ((245, 215, 30), "circle"),
    "Drama": ((30, 60, 200), "square"),
    "Horror": ((20, 20, 20), "bars"),
    "Romance": ((240, 120, 190), "ring"),
    "Sci-Fi": ((30, 210, 220), "diamond"),
    "Western": ((150, 90, 30), "band"),
    "Animation": ((60, 200, 60), "cross"),
}
GENRES: tuple[str, ...] = tuple(GENRE_STYLES)

_TITLE_WORDS = ("Night", "Return", "Last", "Storm", "Garden", "City", "Secret", "River", "Star")


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    box: tuple[int, int, int, int],
    colour: tuple[int, int, int],
) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    w, h = x1 - x0, y1 - y0
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, w // 5))
    elif shape == "bars":
        step = max(2, w // 5)
        for x in range(x0, x1, 2 * step):
            draw.rectangle((x, y0, min(x + step - 1, x1), y1), fill=colour)
    elif shape == "cross":
        t = max(2, w // 4)
        draw.rectangle((cx - t // 2, y0, cx + t // 2, y1), fill=colour)
        draw.rectangle((x0, cy - t // 2, x1, cy + t // 2), fill=colour)
    elif shape == "band":
        draw.rectangle((x0, cy - h // 5, x1, cy + h // 5), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def draw_poster(
    genres: Sequence[str],
    size: tuple[int, int] = (64, 96),
    seed: int = 0,
    quality: int = 90,
) -> bytes:
    """Draw a poster for `genres` as JPEG bytes; `size` is (width, height).

    Each known genre adds its shape in its colour, at a seeded place and scale in a cell
    of its own, on a noisy grey background; unknown genres add nothing. The same arguments
    always give the same bytes.
    """
    rng = random.Random(f"{seed}:{'|'.join(genres)}")
    width, height = size
    grey = rng.randint(150, 200)
    image = Image.new("RGB", size, (grey, grey, grey))
    draw = ImageDraw.Draw(image)
    for _ in range(width * height // 40):  # speckle noise, so no two posters are alike
        x, y = rng.randrange(width), rng.randrange(height)
        v = rng.randint(110, 230)
        draw.point((x, y), fill=(v, v, v))
    known = [g for g in genres if g in GENRE_STYLES]
    # one slot per shape on a 2-column grid, so shapes never hide one another
    rows = max(1, -(-len(known) // 2))
    slots = rng.sample(range(2 * rows), len(known))
    cell_w, cell_h = width // 2, height // rows
    for genre, slot in zip(known, slots):
        colour, shape = GENRE_STYLES[genre]
        side = int(min(cell_w, cell_h) * rng.uniform(0.6, 0.9))
        x0 = (slot % 2) * cell_w + rng.randrange(0, max(1, cell_w - side))
        y0 = (slot // 2) * cell_h + rng.randrange(0, max(1, cell_h - side))
        jitter = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in colour)
        _draw_shape(draw, shape, (x0, y0, x0 + side, y0 + side), jitter)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass
class SyntheticDataset:
    """Where `write_dataset` put things and what it wrote."""

    root: Path
    movies_csv: Path
    links_csv: Path
    posters_dir: Path
    labelled: dict[int, list[str]] = field(default_factory=dict)  # tmdbId -> genres
    unlabelled: list[int] = field(default_factory=list)  # tmdbIds of "(no genres listed)" rows
    without_tmdb: list[int] = field(default_factory=list)  # movieIds with a blank tmdbId


def _title(rng: random.Random, movie_id: int) -> str:
    words = rng.sample(_TITLE_WORDS, 2)
    kind = movie_id % 4
    year = 1950 + movie_id % 70
    if kind == 0:
        return f"{words[0]} {words[1]}, The ({year})"  # comma: quoted in the CSV
    if kind == 1:
        return f'The "{words[0]}" of {words[1]} ({year})'  # embedded quotes
    return f"{words[0]} of the {words[1]} ({year})"


def write_dataset(
    root: Path,
    n_labelled: int = 120,
    n_unlabelled: int = 6,
    n_without_tmdb: int = 3,
    genres: Sequence[str] = GENRES,
    max_genres: int = 3,
    poster_size: tuple[int, int] = (64, 96),
    seed: int = 0,
    write_posters: bool = True,
) -> SyntheticDataset:
    """Write `movies.csv`, `links.csv` (MovieLens format) and `posters/<tmdbId>.jpg` under `root`.

    `n_labelled` movies get 1..`max_genres` genres and a poster; `n_unlabelled` get
    `(no genres listed)` and a poster too (to predict); `n_without_tmdb` get genres but a
    blank tmdbId (no poster can be found for them).
    """
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    posters = root / "posters"
    if write_posters:
        posters.mkdir(exist_ok=True)
    data = SyntheticDataset(root, root / "movies.csv", root / "links.csv", posters)
    movie_rows: list[list[str]] = []
    link_rows: list[list[str]] = []
    movie_id = 0
    kinds = ["labelled"] * n_labelled + ["unlabelled"] * n_unlabelled
    kinds += ["no_tmdb"] * n_without_tmdb
    for kind in kinds:
        movie_id += 1 + rng.randrange(3)
        tmdb_id = 10_000 + movie_id * 7
        if kind == "unlabelled":
            movie_genres: list[str] = []
        else:
            movie_genres = rng.sample(list(genres), rng.randint(1, min(max_genres, len(genres))))
        movie_rows.append(
            [str(movie_id), _title(rng, movie_id), "|".join(movie_genres) or NO_GENRES]
        )
        imdb = f"{1_000_000 + movie_id:07d}"
        if kind == "no_tmdb":
            link_rows.append([str(movie_id), imdb, ""])
            data.without_tmdb.append(movie_id)
            continue
        link_rows.append([str(movie_id), imdb, str(tmdb_id)])
        if kind == "unlabelled":
            data.unlabelled.append(tmdb_id)
        else:
            data.labelled[tmdb_id] = movie_genres
        if write_posters:
            jpeg = draw_poster(movie_genres, poster_size, seed=seed * 1_000_003 + tmdb_id)
            (posters / f"{tmdb_id}.jpg").write_bytes(jpeg)
    with data.movies_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        writer.writerows(movie_rows)
    with data.links_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["movieId", "imdbId", "tmdbId"])
        writer.writerows(link_rows)
    return data
