"""The `predict` command: score posters (files or TMDB ids) with an exported model version."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tensorflow as tf

from poster_genres.schemas.model import (
    INPUT_NAME,
    OUTPUT_NAME,
    SIGNATURE,
    ModelMetadata,
    PointerError,
    genres_from_scores,
    is_complete,
    served_version,
)
from poster_genres.trainer.errors import PredictError
from poster_genres.trainer.posters import PosterCache, fetch_posters

if TYPE_CHECKING:
    from poster_genres.posters import FetchSettings

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One poster's genres (over their thresholds, best first) and every label's score."""

    source: str
    title: str | None
    image: bytes
    genres: list[str]
    scores: dict[str, float]


def served_version_dir(model_dir: Path) -> Path:
    """The folder of the version the workers serve (`serving.json`, else the highest)."""
    try:
        version = served_version(model_dir)
    except PointerError as exc:
        raise PredictError(str(exc)) from exc
    if version is None or not is_complete(model_dir / str(version)):
        raise PredictError(
            f"no served model version under {model_dir}"
            + (f" (version {version} is missing)" if version else "")
        )
    return model_dir / str(version)


def load_images(
    inputs: list[str],
    cache: PosterCache,
    fetch_settings: FetchSettings | None,
    titles: dict[int, str],
) -> list[tuple[str, str | None, bytes]]:
    """Resolve each input (an image file, or a TMDB id looked up in the poster cache) to bytes."""
    ids = [int(i) for i in inputs if i.isdigit() and not Path(i).is_file()]
    missing = [i for i in ids if not cache.has(i)]
    if missing and fetch_settings is not None:
        fetch_posters(missing, cache, fetch_settings, retry_failed=True, progress=False)
    out = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            out.append((item, None, path.read_bytes()))
        elif item.isdigit():
            tmdb_id = int(item)
            if not cache.has(tmdb_id):
                reason = cache.failures().get(tmdb_id, {}).get("detail", "not in the poster cache")
                raise PredictError(f"no poster for TMDB id {tmdb_id}: {reason}")
            out.append((item, titles.get(tmdb_id), cache.path(tmdb_id).read_bytes()))
        else:
            raise PredictError(f"{item!r} is neither an image file nor a TMDB id")
    return out


def predict(version_dir: Path, images: list[tuple[str, str | None, bytes]]) -> list[Prediction]:
    """Score encoded images with the version's serving signature and apply its thresholds."""
    metadata = ModelMetadata.read(version_dir)
    serve = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE]
    try:
        scores = serve(**{INPUT_NAME: tf.constant([b for _, _, b in images])})[OUTPUT_NAME].numpy()
    except tf.errors.InvalidArgumentError as exc:
        first_line = exc.message.splitlines()[0]
        raise PredictError(f"an input is not a decodable image: {first_line}") from exc
    labels, thresholds = metadata.labels, metadata.thresholds
    return [
        Prediction(source, title, data, *genres_from_scores(row, labels, thresholds))
        for (source, title, data), row in zip(images, scores, strict=True)
    ]


def render(predictions: list[Prediction], path: Path, model_name: str) -> Path:
    """Draw the posters side by side with their title and predicted genres, as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    n = len(predictions)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 5.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, p in zip(axes.ravel(), predictions, strict=False):
        ax.imshow(Image.open(io.BytesIO(p.image)).convert("RGB"))
        top = (
            ", ".join(f"{g} {p.scores[g]:.2f}" for g in p.genres) or "(no genre over its threshold)"
        )
        ax.set_title(f"{p.title or p.source}\n{top}", fontsize=8, wrap=True)
    fig.suptitle(f"model {model_name}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
