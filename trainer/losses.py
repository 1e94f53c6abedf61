"""Macro soft-F1 loss, binary cross-entropy, and the thresholded macro-F1 metric."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tf_keras

EPSILON = 1e-16


def _f1_per_label(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    """[batch, labels] targets and scores -> [labels] (soft) F1 over the batch."""
    y = tf.cast(y, tf.float32)
    p = tf.cast(p, tf.float32)
    tp = tf.reduce_sum(p * y, axis=0)
    fp = tf.reduce_sum(p * (1.0 - y), axis=0)
    fn = tf.reduce_sum((1.0 - p) * y, axis=0)
    return 2.0 * tp / (2.0 * tp + fn + fp + EPSILON)


def macro_soft_f1(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Loss: mean over labels of 1 - soft-F1, with probabilities in place of 0/1 decisions."""
    return tf.reduce_mean(1.0 - _f1_per_label(y_true, y_pred))


def macro_f1(y_true: tf.Tensor, y_pred: tf.Tensor, threshold: float = 0.5) -> tf.Tensor:
    """Metric: mean over labels of the F1 of `y_pred > threshold` (per batch)."""
    decisions = tf.cast(tf.greater(y_pred, threshold), tf.float32)
    return tf.reduce_mean(_f1_per_label(y_true, decisions))


def soft_f1_bce(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Loss: macro soft-F1 plus binary cross-entropy (calibrated scores, F1-shaped ranking)."""
    bce = tf_keras.losses.binary_crossentropy(tf.cast(y_true, tf.float32), y_pred)
    return macro_soft_f1(y_true, y_pred) + tf.reduce_mean(bce)


def bce(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Loss: binary cross-entropy, averaged over labels and the batch."""
    return tf.reduce_mean(tf_keras.losses.binary_crossentropy(tf.cast(y_true, tf.float32), y_pred))


LOSSES: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "soft-f1": macro_soft_f1,
    "bce": bce,
    "soft-f1+bce": soft_f1_bce,
}


def get_loss(name: str) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """A loss by its command-line name."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}") from None
