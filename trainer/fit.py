"""Fitting the head on cached embeddings, and tuning its per-genre thresholds.

One head on the train part, stopped at its best epoch on validation; or, with K folds,
K heads cross-fitted on train + validation and averaged, whose out-of-fold scores (each
movie scored by the head that did not see it) give thresholds many more examples. With R
repeats the K-fold cross-fit runs R times on other fold splits: R x K heads are averaged,
and each movie's out-of-fold score is the mean over repeats, which steadies both the
ensemble and the thresholds (docs/trainer.md has what each bought).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tf_keras

from poster_genres.trainer.data import array_dataset, stratified_split
from poster_genres.trainer.evaluation import evaluate, tune_thresholds
from poster_genres.trainer.losses import get_loss, macro_f1
from poster_genres.trainer.model import build_head
from poster_genres.trainer.settings import HeadSettings, TrainSettings
from poster_genres.trainer.split import Split
from poster_genres.trainer.thresholds import choose_thresholds

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """The trained head, its thresholds and the held-out scores they were tuned on."""

    head: tf_keras.Model  # embeddings [n, dim] -> probabilities [n, n_labels]
    thresholds: np.ndarray  # [n_labels]
    tuned_rows: np.ndarray  # [m] the held-out rows: validation, or train + validation when folded
    tuned_y: np.ndarray  # [m, n_labels] their labels
    tuned_scores: np.ndarray  # [m, n_labels] their scores: validation or out-of-fold
    history: dict[str, list[float]]  # per epoch (the first fold's, when cross-fitting)
    best_epoch: int
    seconds: float  # spent training
    step_s: float = 0.0  # mean seconds per training step (one batch) of the heads


def fit(x: np.ndarray, y: np.ndarray, split: Split, settings: TrainSettings) -> Fitted:
    """Train on embeddings x [n, dim] and labels y [n, n_labels]; tune thresholds held out."""
    started = time.monotonic()
    clock = StepClock()
    if settings.folds > 1:
        rows = np.sort(np.concatenate([split.train, split.validation]))
        head, scores, history, best_epoch = cross_fit(
            x[rows],
            y[rows],
            settings.head,
            settings.folds,
            settings.seed,
            settings.tensorboard_dir,
            settings.repeats,
            clock,
        )
    else:
        rows = split.validation
        head, history, best_epoch = fit_head(
            x[split.train],
            y[split.train],
            x[rows],
            y[rows],
            settings.head,
            tensorboard_dir=settings.tensorboard_dir,
            clock=clock,
        )
        scores = head.predict(x[rows], verbose=0)
    seconds = time.monotonic() - started
    thresholds = choose_thresholds(
        y[rows], scores, settings.objective, settings.macro_weight, settings.max_predicted_ratio
    )
    log.info("heads trained in %.1fs, %.4fs per step of %d", seconds, clock.step_s, clock.steps)
    return Fitted(
        head, thresholds, rows, y[rows], scores, history, best_epoch, seconds, clock.step_s
    )


class StepClock(tf_keras.callbacks.Callback):
    """Counts training steps (batches) and the time spent in them, across fits."""

    def __init__(self) -> None:
        super().__init__()
        self.steps, self.seconds, self._started = 0, 0.0, 0.0

    def on_train_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None:
        """Start the step's clock."""
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        """Add the step's time."""
        self.steps += 1
        self.seconds += time.perf_counter() - self._started

    @property
    def step_s(self) -> float:
        """Mean seconds per step."""
        return self.seconds / max(self.steps, 1)


class BestEpoch(tf_keras.callbacks.Callback):
    """Scores the validation split each epoch (macro F1 at 0.5 and at tuned thresholds),
    keeps the weights of the best epoch and stops after `patience` epochs without progress."""

    def __init__(self, x_val: np.ndarray, y_val: np.ndarray, patience: int):
        super().__init__()
        self.x_val, self.y_val, self.patience = x_val, y_val, patience
        self.best = -1.0
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.epochs_run = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Score this epoch; keep its weights if best, or stop when patience runs out."""
        self.epochs_run = epoch + 1
        scores = self.model.predict_on_batch(self.x_val)
        unnamed = [""] * scores.shape[1]
        at_half = evaluate(self.y_val, scores, np.full(scores.shape[1], 0.5), unnamed)
        at_tuned = evaluate(self.y_val, scores, tune_thresholds(self.y_val, scores), unnamed)
        if logs is not None:
            logs["val_macro_f1_at_0.5"] = at_half["macro_f1"]
            logs["val_macro_f1_tuned"] = at_tuned["macro_f1"]
        if at_tuned["macro_f1"] > self.best + 1e-4:
            self.best, self.best_epoch = at_tuned["macro_f1"], epoch + 1
            self.best_weights = self.model.get_weights()
        elif self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        """Restore the best epoch's weights."""
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
    clock: StepClock | None = None,
) -> tuple[tf_keras.Model, dict[str, list[float]], int]:
    """Train a head on embeddings; return it (best epoch's weights), its history and that epoch."""
    tf_keras.utils.set_random_seed(head_settings.seed)
    head = build_head(
        x_train.shape[1],
        y_train.shape[1],
        head_settings.hidden,
        head_settings.dropout,
        head_settings.l2,
        normalize_with=x_train if head_settings.standardize else None,
    )
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
    if clock is not None:
        callbacks.append(clock)
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
    repeats: int = 1,
    clock: StepClock | None = None,
) -> tuple[tf_keras.Model, np.ndarray, dict[str, list[float]], int]:
    """Train one head per stratified fold, each validated (best epoch) on its held-out fold.

    Returns the heads' average as one model, the out-of-fold scores [len(x), n_labels]
    (every row scored by the heads that did not train on it, averaged over `repeats`
    fold splits: what thresholds are tuned on), the first fold's history and the median
    best epoch.
    """
    out_of_fold = np.zeros(y.shape, np.float32)
    heads, epochs = [], []
    history: dict[str, list[float]] = {}
    for r in range(repeats):
        for k, held in enumerate(stratified_split(y, [1 / folds] * folds, seed + r)):
            fit_rows = np.setdiff1d(np.arange(len(y)), held)
            settings_k = head_settings.model_copy(update={"seed": head_settings.seed + 100 * r + k})
            head, hist, best = fit_head(
                x[fit_rows],
                y[fit_rows],
                x[held],
                y[held],
                settings_k,
                tensorboard_dir=tensorboard_dir / f"r{r}fold{k}" if tensorboard_dir else None,
                clock=clock,
            )
            out_of_fold[held] += head.predict(x[held], verbose=0) / repeats
            heads.append(head)
            epochs.append(best)
            history = history or hist
            log.info("repeat %d/%d, fold %d/%d: best epoch %d", r + 1, repeats, k + 1, folds, best)
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
