"""Load the newest complete model version from MODEL_DIR and score posters with it."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image
from pydantic import ValidationError

from poster_genres.posters import PosterUnreadable
from poster_genres.schemas.model import (
    INPUT_NAME,
    METADATA_FILE,
    OUTPUT_NAME,
    SIGNATURE,
    ModelMetadata,
    complete_versions,
    genres_from_scores,
)
from poster_genres.worker.errors import WorkerError

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A version folder that cannot be served (missing files, bad metadata, failed warm-up)."""


def configure_devices() -> str:
    """Use a GPU when TensorFlow sees one (memory growth on); return the device used."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass
    device = "GPU:0" if gpus else "CPU:0"
    log.info("TensorFlow %s will run the model on %s", tf.__version__, device)
    return device


def warmup_image(image_size: tuple[int, int]) -> bytes:
    """A small JPEG to run the signature once before serving."""
    height, width = image_size
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (127, 96, 64)).save(buffer, "JPEG")
    return buffer.getvalue()


def padded_size(count: int) -> int:
    """The batch size the signature is called with for `count` images: 1, 2, 4, 8, then the
    next multiple of 8.

    TensorFlow's oneDNN kernels keep what they prepared for every batch size they have
    seen, so a worker whose batches come in every size from 1 to 32 keeps 32 sets of them
    (`bench/batch_sizes.py`). Padded, it sees at most 3 + BATCH_SIZE / 8 sizes,
    at the cost of up to 7 rows scored for nothing in a batch that is not full.
    """
    if count <= 8:
        return 1 << max(0, count - 1).bit_length()
    return -(-count // 8) * 8


@dataclass
class Classifier:
    """One loaded model version: raw image bytes in, per-label scores out."""

    version: int
    path: Path
    metadata: ModelMetadata
    signature: Any
    module: Any = None  # the loaded SavedModel, kept alive as long as its signature
    device: str = "CPU:0"

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    def scores(self, images: list[bytes]) -> np.ndarray:
        """Score a batch in one call of the signature: float32 [len(images), n_labels].

        The batch is padded to `padded_size` with a small plain image, whose rows are dropped.
        """
        if not images:
            return np.zeros((0, len(self.labels)), np.float32)
        padding = [self.filler] * (padded_size(len(images)) - len(images))
        with tf.device(self.device):
            out = self.signature(**{INPUT_NAME: tf.constant(images + padding, dtype=tf.string)})
        return out[OUTPUT_NAME].numpy()[: len(images)]

    @cached_property
    def filler(self) -> bytes:
        """What pads a batch: the warm-up image, which every version decodes at loading."""
        return warmup_image(self.metadata.image_size)

    def classify(self, images: list[bytes]) -> list[np.ndarray | WorkerError]:
        """Score a batch; if it fails on a bad image, score one by one to isolate it."""
        try:
            return list(self.scores(images))
        except tf.errors.InvalidArgumentError:
            if len(images) == 1:
                return [PosterUnreadable("the model could not decode the image")]
        results: list[np.ndarray | WorkerError] = []
        for image in images:
            try:
                results.append(self.scores([image])[0])
            except tf.errors.InvalidArgumentError as exc:
                message = (exc.message or str(exc)).strip().splitlines()[-1][:200]
                results.append(PosterUnreadable(f"the model could not decode the image: {message}"))
        return results

    def genres(self, row: np.ndarray) -> tuple[list[str], dict[str, float]]:
        """Apply the per-label thresholds to one row of scores."""
        return genres_from_scores(row, self.labels, self.thresholds)

    @cached_property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.metadata.thresholds, dtype=np.float32)


def load_version(path: Path, device: str = "CPU:0") -> Classifier:
    """Load one version folder, check it against its metadata and warm it up."""
    if not path.name.isdigit():
        raise ModelLoadError(f"{path} is not an integer version folder")
    if not (path / "saved_model.pb").is_file():
        raise ModelLoadError(f"{path} has no saved_model.pb")
    try:
        metadata = ModelMetadata.read(path)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path} has no {METADATA_FILE}") from exc
    except OSError as exc:
        raise ModelLoadError(f"{path / METADATA_FILE} cannot be read: {exc}") from exc
    except (ValidationError, ValueError) as exc:
        raise ModelLoadError(f"{path / METADATA_FILE} is invalid: {exc}") from exc
    started = time.perf_counter()
    try:
        with tf.device(device):
            loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures[SIGNATURE]
    except KeyError as exc:
        raise ModelLoadError(f"{path} has no {SIGNATURE!r} signature") from exc
    except Exception as exc:  # TensorFlow raises many types for a broken SavedModel
        raise ModelLoadError(f"{path} does not load as a SavedModel: {exc}") from exc
    classifier = Classifier(int(path.name), path, metadata, signature, loaded, device)
    try:
        scores = classifier.scores([classifier.filler] * 2)
    except Exception as exc:
        raise ModelLoadError(f"{path} failed its warm-up: {str(exc)[:300]}") from exc
    if scores.shape != (2, len(metadata.labels)):
        raise ModelLoadError(
            f"{path} outputs {scores.shape[-1] if scores.ndim == 2 else scores.shape} scores "
            f"per image but its metadata names {len(metadata.labels)} labels"
        )
    if not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1:
        raise ModelLoadError(f"{path} gives scores outside [0, 1] on its warm-up image")
    log.info(
        "loaded model version %d (%d labels) from %s in %.2f s",
        classifier.version,
        len(metadata.labels),
        path,
        time.perf_counter() - started,
    )
    return classifier


def load_latest(
    model_dir: Path, newer_than: int = 0, device: str = "CPU:0", refused: set[int] | None = None
) -> Classifier | None:
    """The highest complete version above `newer_than` that loads.

    Versions that fail are logged once, added to `refused` and not tried again.
    """
    refused = set() if refused is None else refused
    for version in reversed(complete_versions(model_dir)):
        if version <= newer_than:
            break
        if version in refused:
            continue
        try:
            return load_version(model_dir / str(version), device)
        except ModelLoadError as exc:
            refused.add(version)
            log.error("refused model version %d, keeping the current one: %s", version, exc)
    return None
