"""What a model version says about itself in `metadata.json`, beyond labels and thresholds.

The worker reads only the contract's fields; the rest (metrics, what the model was
trained on, head settings, timings) is for the people deciding whether to trust it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from poster_genres.schemas.model import ModelMetadata
from poster_genres.trainer.examples import Examples
from poster_genres.trainer.finetune import Tuned
from poster_genres.trainer.fit import Fitted
from poster_genres.trainer.settings import TrainSettings
from poster_genres.trainer.split import Split

HEADLINE = ("n", "macro_f1", "micro_f1", "samples_f1")


def build_metadata(
    settings: TrainSettings,
    examples: Examples,
    split: Split,
    fitted: Fitted,
    report: Mapping[str, Any],
    total_s: float,
    tuned: Tuned | None = None,
) -> ModelMetadata:
    """The metadata of the version this run exports (`tuned`: the fine-tuning, if any)."""
    timings = {
        "embedding": round(examples.embed_s, 2),
        "head": round(fitted.seconds, 2),
        "head_step": round(fitted.step_s, 5),
        "total": round(total_s, 2),
    }
    if tuned is not None:
        timings.update(finetune=round(tuned.seconds, 2), finetune_step=round(tuned.step_s, 5))
    return ModelMetadata(
        labels=examples.labels.names,
        thresholds=[float(t) for t in fitted.thresholds],
        image_size=settings.image_size,
        feature_extractor=settings.feature_extractor,
        extra_feature_extractor=settings.extra_extractor,
        extra_image_size=settings.extra_image_size if settings.extra_extractor else None,
        metrics=metrics_summary(report),
        training_data=training_data(settings, examples, split),
        created_at=datetime.now(UTC),
        head=settings.head.model_dump(),
        mirror=settings.mirror,
        best_epoch=fitted.best_epoch,
        timings_s=timings,
        finetune=settings.finetune.model_dump() if tuned is not None else None,
    )


def metrics_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The headline metrics (test split if held out, else validation) and per genre.

    With `--cross-validate K`, also the yardstick: mean and spread over K hash folds.
    """
    split = "test" if "test" in report else "validation"
    headline = report[split]
    summary = {
        "split": split,
        **{k: headline[k] for k in HEADLINE},
        "validation": {k: report["validation"][k] for k in HEADLINE},
        "per_genre": headline["per_genre"],
        "films": report["evaluation_films"],
    }
    if "yardstick" in report:
        summary["yardstick"] = report["yardstick"]
    return summary


def training_data(settings: TrainSettings, examples: Examples, split: Split) -> dict[str, Any]:
    """How many movies went where, and where they came from."""
    names, counts = examples.labels.names, examples.labels.y.sum(axis=0)
    return {
        "movielens": str(settings.movielens) if settings.movielens else settings.release,
        "labelled_movies": examples.labelled,
        "with_poster": examples.with_poster,
        "unreadable_posters": len(examples.skipped),
        "train": len(split.train),
        "validation": len(split.validation),
        "folds": settings.folds,
        "test": len(split.test),
        "split": settings.split,
        "seed": settings.seed,
        "label_counts": {n: int(c) for n, c in zip(names, counts, strict=True)},
        "min_genre_count": settings.min_genre_count,
        "left_out_genres": dict(examples.labels.left_out),
        "excluded_genres": list(settings.exclude_genres),
        "test_fraction": settings.test_fraction,
        "fetch": examples.fetch_summary,
    }
