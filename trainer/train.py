"""The `train` command: MovieLens + posters -> embeddings -> head -> thresholds -> a model version.

`train` reads as the recipe; each step is a function of its own module (examples, split,
fit, evaluation, metadata, export, gate) that a test can call on its own. The version is
exported as a candidate and served only if the release gate lets it (`trainer/gate.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tf_keras

from poster_genres.schemas.model import ModelMetadata
from poster_genres.trainer.evaluation import evaluate_fit, write_run_report
from poster_genres.trainer.examples import Examples, embed_examples, postered_movies
from poster_genres.trainer.export import REPORT_DIR, export_version, prune_versions
from poster_genres.trainer.finetune import Tuned, finetuned_features
from poster_genres.trainer.fit import cross_fit, fit, fit_head
from poster_genres.trainer.gate import Decision, release_candidate
from poster_genres.trainer.metadata import build_metadata
from poster_genres.trainer.model import build_classifier, load_extractor
from poster_genres.trainer.posters import PosterCache
from poster_genres.trainer.scoring import films_of
from poster_genres.trainer.settings import TrainSettings
from poster_genres.trainer.split import Split, split_examples
from poster_genres.trainer.yardstick import cross_validate, head_recipe

if TYPE_CHECKING:
    from poster_genres.posters import FetchSettings

__all__ = ["TrainResult", "cross_fit", "fit_head", "train"]  # bench/ imports the fitting here

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The exported version, what went into it, and whether it is served."""

    version_dir: Path  # MODEL_DIR/<N> when promoted, else MODEL_DIR/candidates/<N>
    metadata: ModelMetadata
    report: dict[str, Any]
    head: tf_keras.Model  # embeddings -> probabilities (the exported model minus the extractor)
    promoted: bool
    decision: Decision  # the release gate's
    gate_report: dict[str, Any]  # the candidate and the served version on the same films


def yardstick(examples: Examples, settings: TrainSettings) -> dict[str, Any]:
    """The recipe's quality on unseen films: mean and spread over hash folds of all examples."""
    x, y, ids = examples.x, examples.labels.y, examples.tmdb_ids
    recipe = head_recipe(x, y, ids, settings, settings.cross_validate)
    summary = cross_validate(recipe, y, ids, examples.labels.names, settings.cross_validate)
    log.info(
        "yardstick over %d hash folds: macro F1 %.4f (sd %.4f), micro F1 %.4f (sd %.4f)",
        settings.cross_validate,
        summary["macro_f1"],
        summary["macro_f1_sd"],
        summary["micro_f1"],
        summary["micro_f1_sd"],
    )
    return summary


def finetune(
    examples: Examples, split: Split, settings: TrainSettings
) -> tuple[tf_keras.Model, Examples, Tuned]:
    """Fine-tune the backbone's tail on the training films; its extractor and features."""
    paths = [str(PosterCache(settings.posters).path(int(i))) for i in examples.tmdb_ids]
    rows = (split.train, split.validation)
    extractor, x, tuned = finetuned_features(paths, examples.labels.y, rows, settings)
    log.info("fine-tuned in %.1fs, %.4fs per step", tuned.seconds, tuned.step_s)
    return extractor, dataclasses.replace(examples, x=x), tuned


def train(settings: TrainSettings, fetch_settings: FetchSettings | None = None) -> TrainResult:
    """Run the whole training job, export a candidate, and serve it if the gate allows."""
    started = time.monotonic()
    postered = postered_movies(settings, fetch_settings)
    extractor = load_extractor(
        settings.feature_extractor,
        settings.image_size,
        settings.mirror,
        settings.extra_extractor,
        settings.extra_image_size,
    )
    examples = embed_examples(postered, extractor, settings)
    split = split_examples(examples.tmdb_ids, examples.labels.y, settings)
    tuned = None
    if settings.finetune.enabled:
        extractor, examples, tuned = finetune(examples, split, settings)
    fitted = fit(examples.x, examples.labels.y, split, settings)
    report = evaluate_fit(fitted, examples, split, settings.folds)
    if settings.cross_validate:
        report["yardstick"] = yardstick(examples, settings)
    metadata = build_metadata(
        settings, examples, split, fitted, report, time.monotonic() - started, tuned
    )
    classifier = build_classifier(extractor, fitted.head, settings.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_run_report(report, examples.skipped, Path(tmp))
        candidate = export_version(
            classifier,
            metadata,
            settings.model_dir,
            candidate=True,
            extra_files={f"{REPORT_DIR}/{f.name}": f for f in files},
        )
    films = films_of(postered.genres, examples.tmdb_ids[split.test], PosterCache(settings.posters))
    released = release_candidate(candidate, films, settings)
    if settings.keep_versions:
        prune_versions(settings.model_dir, settings.keep_versions)
        prune_versions(settings.model_dir, settings.keep_versions, candidates=True)
    return TrainResult(
        released.version_dir,
        metadata,
        report,
        fitted.head,
        released.promoted,
        released.decision,
        released.report,
    )
