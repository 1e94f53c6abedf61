"""Export a model version: SavedModel with a bytes-in signature, metadata, atomic rename.

The version number comes from `trainer/versions.py`, so it is never one used before.
Pruning never deletes the served version, whatever its age: rolling back to an old
version must not leave the workers pointed at nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import tensorflow as tf

from poster_genres.schemas.model import (
    CANDIDATES_DIR,
    INPUT_NAME,
    METADATA_FILE,
    OUTPUT_NAME,
    SIGNATURE,
    ModelMetadata,
    PointerError,
    served_version,
    version_numbers,
)
from poster_genres.trainer.preprocess import decode_image
from poster_genres.trainer.versions import locked, publish_version

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
REPORT_DIR = "report"  # inside a version folder
REPORTS_DIR = "reports"  # MODEL_DIR/reports/<version>/: the reports of pruned versions


class ServingModule(tf.Module):
    """Wraps an images -> probabilities model with decoding, so serving takes raw bytes."""

    def __init__(self, model: Callable[..., tf.Tensor], image_size: tuple[int, int]):
        super().__init__(name="genre_model")
        self.model = model
        self.image_size = tuple(int(v) for v in image_size)
        height, width = self.image_size
        self.serve = tf.function(
            self._serve,
            input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)],
        )
        self._image_spec = tf.TensorSpec([height, width, 3], tf.float32)

    def _serve(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(
            lambda b: decode_image(b, self.image_size),
            image_bytes,
            fn_output_signature=self._image_spec,
            parallel_iterations=16,
        )
        scores = tf.cast(self.model(images, training=False), tf.float32)
        return {OUTPUT_NAME: scores}


def export_version(
    model: Callable[..., tf.Tensor],
    metadata: ModelMetadata,
    model_dir: Path,
    keep: int | None = None,
    extra_files: Mapping[str, Path] | None = None,
    candidate: bool = False,
) -> Path:
    """Write the next version under `model_dir` (or its candidates/) atomically; its folder.

    `extra_files` (relative name -> source file) are copied into the version folder before
    it appears, e.g. the evaluation report; the worker ignores them.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    module = ServingModule(model, metadata.image_size)
    tmp = model_dir / f"{TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: module.serve})
        (tmp / METADATA_FILE).write_text(metadata.model_dump_json(indent=2), "utf-8")
        for name, source in (extra_files or {}).items():
            target = tmp / name
            if tmp.resolve() not in target.resolve().parents:
                raise ValueError(f"extra file {name!r} would land outside the version folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        final = publish_version(tmp, model_dir, candidate)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported model version %s to %s", final.name, final)
    if keep:
        prune_versions(model_dir, keep)
    return final


def prune_versions(model_dir: Path, keep: int, candidates: bool = False) -> list[Path]:
    """Delete all but the newest `keep` versions (or candidates), keeping their reports.

    A pruned version's `report/` moves to `MODEL_DIR/reports/<version>/` first. The served
    version is kept, besides the newest `keep`. Returns the folders deleted.
    """
    parent = model_dir / CANDIDATES_DIR if candidates else model_dir
    removed = []
    with locked(model_dir):
        try:
            served = None if candidates else served_version(model_dir)
        except PointerError as exc:
            log.warning("not pruning, as which version is served is unknown: %s", exc)
            return []
        old = version_numbers(parent)[:-keep] if keep > 0 else []
        for number in (n for n in old if n != served):
            path = parent / str(number)
            if (path / REPORT_DIR).is_dir():
                kept = model_dir / REPORTS_DIR / str(number)
                shutil.rmtree(kept, ignore_errors=True)
                kept.parent.mkdir(exist_ok=True)
                os.rename(path / REPORT_DIR, kept)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.info(
                "pruned %s %s (its report kept in %s/)",
                "candidate" if candidates else "model version",
                number,
                REPORTS_DIR,
            )
    return removed
