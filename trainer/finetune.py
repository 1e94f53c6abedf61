"""Fine-tuning the backbone's tail on cached activations, with mirrored posters as augmentation.

Running MobileNetV2 through every poster each epoch is what makes fine-tuning slow on a
CPU. Only the tail trains (`trainer.backbone`), so the activations below it are computed
once per poster and per view (as is and mirrored) and kept; each epoch draws, per poster,
one of its two views, and runs only the tail and a sigmoid layer. Batch normalisation
stays in inference mode (its statistics are ImageNet's, folded into the weights).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras

from poster_genres.trainer.backbone import is_keras_weights, join, split_backbone
from poster_genres.trainer.errors import DataError
from poster_genres.trainer.fit import BestEpoch
from poster_genres.trainer.losses import get_loss
from poster_genres.trainer.model import with_mirror
from poster_genres.trainer.settings import FinetuneSettings, TrainSettings

log = logging.getLogger(__name__)


@dataclass
class Tuned:
    """The fine-tuned tail and what its training took."""

    tail: tf_keras.Model  # activations -> features [N, 1280], weights updated
    best_epoch: int
    seconds: float
    step_s: float  # mean seconds per training step (one batch)


def augmented(
    maps: np.ndarray, mirrored: np.ndarray, y: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """Batches of (activations, labels), each poster as is or mirrored at random, shuffled."""
    ds = tf.data.Dataset.from_tensor_slices((maps, mirrored, y)).shuffle(
        len(y), seed=seed, reshuffle_each_iteration=True
    )
    rng = tf.random.Generator.from_seed(seed)

    def pick(a: tf.Tensor, b: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        chosen = tf.where(rng.uniform([]) < 0.5, a, b)
        return tf.cast(chosen, tf.float32), labels

    return ds.map(pick).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def finetune_tail(
    tail: tf_keras.Model,
    views: tuple[np.ndarray, np.ndarray],
    y: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    settings: FinetuneSettings,
) -> Tuned:
    """Train `tail` + a sigmoid layer on `views` (activations as is, mirrored) [n, h, w, c].

    `rows` are (training rows, validation rows); the validation rows, as is, pick the best
    epoch. The tail's weights are updated in place and also returned.
    """
    tf_keras.utils.set_random_seed(settings.seed)
    for layer in tail.layers:
        layer.trainable = not isinstance(layer, tf_keras.layers.BatchNormalization)
    maps = tf_keras.Input(shape=tail.input_shape[1:], name="activations")
    x = tf_keras.layers.Dropout(settings.dropout)(tail(maps, training=False))
    out = tf_keras.layers.Dense(y.shape[1], activation="sigmoid", name="genres")(x)
    model = tf_keras.Model(maps, out)
    model.compile(tf_keras.optimizers.Adam(settings.learning_rate), get_loss(settings.loss))
    train, val = rows
    best = BestEpoch(views[0][val].astype(np.float32), y[val], settings.patience)
    data = augmented(views[0][train], views[1][train], y[train], settings.batch_size, settings.seed)
    started = time.monotonic()
    model.fit(data, epochs=settings.epochs, callbacks=[best], verbose=0)
    seconds = time.monotonic() - started
    steps = best.epochs_run * int(np.ceil(len(train) / settings.batch_size))
    log.info(
        "tail fine-tuned: best epoch %d of %d, %.1fs", best.best_epoch, best.epochs_run, seconds
    )
    return Tuned(tail, best.best_epoch, seconds, seconds / max(steps, 1))


def pooled(tail: tf_keras.Model, maps: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The tail's features [n, 1280] of cached activations [n, h, w, c]."""
    run = tf.function(lambda m: tail(tf.cast(m, tf.float32), training=False))
    out = [run(maps[i : i + batch_size]).numpy() for i in range(0, len(maps), batch_size)]
    return np.concatenate(out).astype(np.float32)


def activations(
    base: tf_keras.Model, paths: list[str], image_size: tuple[int, int], batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The base's activations of each poster, as is and mirrored: float16 [n, h', w', c] each."""
    from poster_genres.trainer.preprocess import read_image

    run = tf.function(lambda images: base(images, training=False))
    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: read_image(path, image_size), num_parallel_calls=tf.data.AUTOTUNE
    )
    plain, mirrored = [], []
    for images in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        plain.append(run(images).numpy().astype(np.float16))
        mirrored.append(run(tf.image.flip_left_right(images)).numpy().astype(np.float16))
    return np.concatenate(plain), np.concatenate(mirrored)


def finetuned_features(
    paths: list[str],
    y: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    settings: TrainSettings,
) -> tuple[tf_keras.Model, np.ndarray, Tuned]:
    """Fine-tune the tail on `rows` (train, validation); the new extractor and its features.

    The features [n, 1280] are of every poster in `paths`, the mean over the mirror when
    `settings.mirror`; the extractor takes images [N, h, w, 3] in [0, 1] as `load_extractor`'s.
    """
    if not is_keras_weights(settings.feature_extractor):
        raise DataError("--finetune needs a MobileNetV2 Keras weights file (.h5) as extractor")
    base, tail = split_backbone(settings.feature_extractor, settings.image_size)
    base.trainable = False
    views = activations(base, paths, settings.image_size, settings.embed_batch_size)
    tuned = finetune_tail(tail, views, y, rows, settings.finetune)
    used = views if settings.mirror else views[:1]
    x = np.mean([pooled(tail, v) for v in used], axis=0)
    tail.trainable = False
    extractor = join(base, tail)
    if settings.mirror:
        extractor = with_mirror(extractor, settings.image_size)
    return extractor, x, tuned
