"""The `train` command: MovieLens + posters -> embeddings -> head -> thresholds -> a model version."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tf_keras

from schemas.model import ModelMetadata
from trainer.data import DataError, array_dataset, binarize, stratified_split
from trainer.embeddings import EmbeddingCache, embed_images, extractor_key
from trainer.evaluation import evaluate, plot_curves, tune_thresholds, write_report
from trainer.export import export_version
from trainer.losses import get_loss, macro_f1
from trainer.model import build_classifier, build_head, load_extractor
from trainer.movielens import load_movies
from trainer.posters import PosterCache, fetch_posters
from trainer.settings import HeadSettings, TrainSettings

if TYPE_CHECKING:
    from worker.settings import FetchSettings

log = logging.getLogger(__name__)


class BestEpoch(tf_keras.callbacks.Callback):
    """Scores the validation split each epoch (macro F1 at 0.5 and at tuned thresholds),
    keeps the weights of the best epoch and stops after `patience` epochs without progress."""

    def __init__(self, x_val: np.ndarray, y_val: np.ndarray, patience: int):
        super().__init__()
        self.x_val, self.y_val, self.patience = x_val, y_val, patience
        self.best = -1.0
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        scores = self.model.predict_on_batch(self.x_val)
        at_half = evaluate(self.y_val, scores, np.full(scores.shape[1], 0.5), [""] * scores.shape[1])
        tuned = tune_thresholds(self.y_val, scores)
        at_tuned = evaluate(self.y_val, scores, tuned, [""] * scores.shape[1])
        if logs is not None:
            logs["val_macro_f1_at_0.5"] = at_half["macro_f1"]
            logs["val_macro_f1_tuned"] = at_tuned["macro_f1"]
        if at_tuned["macro_f1"] > self.best + 1e-4:
            self.best, self.best_epoch = at_tuned["macro_f1"], epoch + 1
            self.best_weights = self.model.get_weights()
        elif self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    head_settings: HeadSettings,
    select_best: bool = True,
    tensorboard_dir: Path | None = None,
    verbose: int = 0,
) -> tuple[tf_keras.Model, dict[str, list[float]], int]:
    """Train the head on embeddings; returns it (best epoch's weights), its history and that epoch."""
    tf_keras.utils.set_random_seed(head_settings.seed)
    head = build_head(x_train.shape[1], y_train.shape[1], head_settings.hidden,
                      head_settings.dropout, head_settings.l2,
                      normalize_with=x_train if head_settings.standardize else None)
    head.compile(
        optimizer=tf_keras.optimizers.Adam(head_settings.learning_rate),
        loss=get_loss(head_settings.loss),
        metrics=[macro_f1],
    )
    callbacks: list[tf_keras.callbacks.Callback] = []
    best = BestEpoch(x_val, y_val, head_settings.patience) if select_best else None
    if best is not None:
        callbacks.append(best)
    if tensorboard_dir is not None:
        callbacks.append(tf_keras.callbacks.TensorBoard(str(tensorboard_dir), write_graph=False))
    history = head.fit(
        array_dataset(x_train, y_train, head_settings.batch_size, shuffle_seed=head_settings.seed),
        validation_data=array_dataset(x_val, y_val, max(len(x_val), 1)),
        epochs=head_settings.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    best_epoch = best.best_epoch if best is not None else len(history.history["loss"])
    return head, {k: [float(v) for v in vs] for k, vs in history.history.items()}, best_epoch


def cross_fit(
    x: np.ndarray,
    y: np.ndarray,
    head_settings: HeadSettings,
    folds: int,
    seed: int,
    tensorboard_dir: Path | None = None,
) -> tuple[tf_keras.Model, np.ndarray, dict[str, list[float]], int]:
    """Train one head per stratified fold, each validated (best epoch) on its held-out fold.

    Returns the heads' average as one model, the out-of-fold scores [len(x), n_labels]
    (every row scored by the head that did not train on it: what thresholds are tuned on),
    the first fold's history and the median best epoch.
    """
    parts = stratified_split(y, [1 / folds] * folds, seed)
    out_of_fold = np.zeros(y.shape, np.float32)
    heads, epochs = [], []
    history: dict[str, list[float]] = {}
    for k, held in enumerate(parts):
        fit = np.setdiff1d(np.arange(len(y)), held)
        settings_k = head_settings.model_copy(update={"seed": head_settings.seed + k})
        head, hist, best = fit_head(
            x[fit], y[fit], x[held], y[held], settings_k,
            tensorboard_dir=tensorboard_dir / f"fold{k}" if tensorboard_dir else None,
        )
        out_of_fold[held] = head.predict(x[held], verbose=0)
        heads.append(head)
        epochs.append(best)
        history = history or hist
        log.info("fold %d/%d: best epoch %d", k + 1, folds, best)
    return average_heads(heads), out_of_fold, history, int(np.median(epochs))


def average_heads(heads: list[tf_keras.Model]) -> tf_keras.Model:
    """One model whose output is the mean of the heads' probabilities."""
    if len(heads) == 1:
        return heads[0]
    inputs = tf_keras.Input(shape=heads[0].input_shape[1:], name="embedding")
    for k, head in enumerate(heads):
        head._name = f"head_{k}"  # unique layer names inside the ensemble
    outputs = tf_keras.layers.Average(name="mean_probability")([h(inputs) for h in heads])
    return tf_keras.Model(inputs, outputs, name="head_ensemble")


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
    movies = load_movies(settings)
    labelled = movies.labelled
    if labelled.empty:
        raise DataError("no movie has both genres and a TMDB id: nothing to train on")
    cache = PosterCache(settings.posters)
    ids = [int(i) for i in labelled["tmdbId"]]
    fetch_summary = None
    if not settings.offline:
        if fetch_settings is None:
            raise ValueError("fetching posters needs fetch settings (or use --offline)")
        fetch_summary = fetch_posters(ids, cache, fetch_settings, progress=settings.progress).summary()
    have = labelled[[cache.has(i) for i in ids]]
    log.info("%d of %d labelled movies have a cached poster", len(have), len(labelled))
    if have.empty:
        raise DataError(f"no poster of a labelled movie is in {settings.posters}")

    extractor = load_extractor(settings.feature_extractor)
    emb_cache = EmbeddingCache(settings.embedding_dir,
                               extractor_key(settings.feature_extractor, settings.image_size))
    t0 = time.monotonic()
    embedded = embed_images([cache.path(int(i)) for i in have["tmdbId"]], extractor,
                            settings.image_size, settings.embed_batch_size, emb_cache, settings.progress)
    embed_s = time.monotonic() - t0
    usable = have.iloc[embedded.ok]
    skipped = {int(have.iloc[i]["tmdbId"]): reason for i, reason in embedded.failed.items()}
    if skipped:
        log.warning("skipped %d unreadable poster(s) in the cache", len(skipped))
    labels = binarize(list(usable["genres"]), settings.min_genre_count)
    x, y = embedded.vectors, labels.y
    fractions = [1 - settings.val_fraction - settings.test_fraction, settings.val_fraction]
    if settings.test_fraction:
        fractions.append(settings.test_fraction)
    parts = stratified_split(y, fractions, settings.seed)
    train_idx, val_idx = parts[0], parts[1]
    test_idx = parts[2] if len(parts) > 2 else np.zeros(0, int)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(f"{len(usable)} usable posters are too few to split for training")
    log.info("split: %d train, %d validation, %d test; %d labels; embeddings %s (%d computed in %.1fs)",
             len(train_idx), len(val_idx), len(test_idx), len(labels.names), x.shape[1:],
             embedded.computed, embed_s)

    t0 = time.monotonic()
    if settings.folds > 1:
        fit_idx = np.sort(np.concatenate([train_idx, val_idx]))
        head, val_scores, history, best_epoch = cross_fit(
            x[fit_idx], y[fit_idx], settings.head, settings.folds, settings.seed,
            settings.tensorboard_dir,
        )
        val_y = y[fit_idx]
    else:
        head, history, best_epoch = fit_head(
            x[train_idx], y[train_idx], x[val_idx], y[val_idx], settings.head,
            tensorboard_dir=settings.tensorboard_dir,
        )
        val_scores, val_y = head.predict(x[val_idx], verbose=0), y[val_idx]
    train_s = time.monotonic() - t0
    thresholds = tune_thresholds(val_y, val_scores)
    half = np.full(len(labels.names), 0.5)
    report: dict[str, Any] = {
        "validation": evaluate(val_y, val_scores, thresholds, labels.names),
        "validation_at_0.5": evaluate(val_y, val_scores, half, labels.names),
        "folds": settings.folds,
    }
    if len(test_idx):
        test_scores = head.predict(x[test_idx], verbose=0)
        report["test"] = evaluate(y[test_idx], test_scores, thresholds, labels.names)
        report["test_at_0.5"] = evaluate(y[test_idx], test_scores, half, labels.names)
    report["history"] = history
    report["best_epoch"] = best_epoch
    headline = report.get("test") or report["validation"]
    log.info("%s macro F1 %.3f, micro F1 %.3f (best epoch %d, head trained in %.1fs)",
             "test" if "test" in report else "validation", headline["macro_f1"],
             headline["micro_f1"], best_epoch, train_s)

    metadata = ModelMetadata(
        labels=labels.names,
        thresholds=[float(t) for t in thresholds],
        image_size=settings.image_size,
        feature_extractor=settings.feature_extractor,
        metrics={
            "split": "test" if "test" in report else "validation",
            **{k: headline[k] for k in ("n", "macro_f1", "micro_f1", "samples_f1")},
            "validation": {k: report["validation"][k] for k in ("n", "macro_f1", "micro_f1", "samples_f1")},
            "per_genre": headline["per_genre"],
        },
        training_data={
            "movielens": str(settings.movielens) if settings.movielens else settings.release,
            "labelled_movies": int(len(labelled)),
            "with_poster": int(len(have)),
            "unreadable_posters": len(skipped),
            "train": int(len(train_idx)),
            "validation": int(len(val_idx)),
            "folds": settings.folds,
            "test": int(len(test_idx)),
            "split_seed": settings.seed,
            "label_counts": {n: int(c) for n, c in zip(labels.names, y.sum(axis=0), strict=True)},
            "min_genre_count": settings.min_genre_count,
            "fetch": fetch_summary,
        },
        created_at=datetime.now(UTC),
        head=settings.head.model_dump(),
        best_epoch=best_epoch,
        timings_s={"embedding": round(embed_s, 2), "head": round(train_s, 2),
                   "total": round(time.monotonic() - started, 2)},
    )
    classifier = build_classifier(extractor, head, settings.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        report_dir = Path(tmp)
        files = write_report(report, report_dir)
        files.append(plot_curves(history, report_dir / "curves.png"))
        (report_dir / "skipped_posters.json").write_text(json.dumps(skipped, indent=1), "utf-8")
        files.append(report_dir / "skipped_posters.json")
        version_dir = export_version(
            classifier, metadata, settings.model_dir, keep=settings.keep_versions or None,
            extra_files={f"report/{f.name}": f for f in files},
        )
    return TrainResult(version_dir, metadata, report, head)
