"""The `train` command: MovieLens + posters -> embeddings -> head -> thresholds -> a model version.

`train` reads as the recipe; each step is a function of its own module (examples, split,
fit, evaluation, metadata, export) that a test can call on its own.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tf_keras

from schemas.model import ModelMetadata
from trainer.evaluation import evaluate_fit, write_run_report
from trainer.examples import embed_examples, postered_movies
from trainer.export import REPORT_DIR, export_version
from trainer.fit import cross_fit, fit, fit_head
from trainer.metadata import build_metadata
from trainer.model import build_classifier, load_extractor
from trainer.settings import TrainSettings
from trainer.split import split_examples

if TYPE_CHECKING:
    from posters import FetchSettings

__all__ = ["TrainResult", "cross_fit", "fit_head", "train"]  # bench/ imports the fitting here


@dataclass
class TrainResult:
    """The exported version and what went into it."""

    version_dir: Path
    metadata: ModelMetadata
    report: dict[str, Any]
    head: tf_keras.Model  # embeddings -> probabilities (the exported model minus the extractor)


def train(settings: TrainSettings, fetch_settings: FetchSettings | None = None) -> TrainResult:
    """Run the whole training job and export a new model version."""
    started = time.monotonic()
    postered = postered_movies(settings, fetch_settings)
    extractor = load_extractor(settings.feature_extractor)
    examples = embed_examples(postered, extractor, settings)
    split = split_examples(examples.tmdb_ids, examples.labels.y, settings)
    fitted = fit(examples.x, examples.labels.y, split, settings)
    report = evaluate_fit(fitted, examples, split, settings.folds)
    metadata = build_metadata(settings, examples, split, fitted, report, time.monotonic() - started)
    classifier = build_classifier(extractor, fitted.head, settings.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_run_report(report, examples.skipped, Path(tmp))
        version_dir = export_version(
            classifier, metadata, settings.model_dir, keep=settings.keep_versions or None,
            extra_files={f"{REPORT_DIR}/{f.name}": f for f in files},
        )
    return TrainResult(version_dir, metadata, report, fitted.head)
