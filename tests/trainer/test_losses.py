"""Macro soft-F1 loss and the macro-F1 metric."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from poster_genres.trainer.losses import get_loss, macro_f1, macro_soft_f1

Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], np.float32)


def test_soft_f1_is_near_zero_for_perfect_and_near_one_for_wrong_predictions() -> None:
    assert float(macro_soft_f1(Y, Y)) < 1e-6
    assert float(macro_soft_f1(Y, 1.0 - Y)) > 1 - 1e-6
    confident = np.clip(Y, 0.01, 0.99)
    assert float(macro_soft_f1(Y, confident)) < 0.02
    assert 0.3 < float(macro_soft_f1(Y, np.full_like(Y, 0.5))) < 0.7


def test_soft_f1_matches_the_formula() -> None:
    p = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.3], [0.8, 0.4, 0.2], [0.3, 0.1, 0.9]], np.float32)
    tp, fp, fn = (p * Y).sum(0), (p * (1 - Y)).sum(0), ((1 - p) * Y).sum(0)
    expected = np.mean(1 - 2 * tp / (2 * tp + fn + fp))
    assert abs(float(macro_soft_f1(Y, p)) - expected) < 1e-6


def test_macro_f1_metric_thresholds() -> None:
    p = np.where(Y > 0, 0.7, 0.3).astype(np.float32)
    assert abs(float(macro_f1(Y, p)) - 1.0) < 1e-6
    assert float(macro_f1(Y, p, threshold=0.8)) < 1e-6  # nothing predicted


def test_losses_have_gradients() -> None:
    p = tf.Variable(np.full_like(Y, 0.5))
    for name in ("soft-f1", "bce", "soft-f1+bce"):
        with tf.GradientTape() as tape:
            loss = get_loss(name)(Y, p)
        grad = tape.gradient(loss, p).numpy()
        assert np.all(grad[Y > 0] < 0) and np.all(grad[Y == 0] > 0), name


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_soft_f1_lies_in_unit_interval(n: int, labels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) > 0.5).astype(np.float32)
    p = rng.random((n, labels)).astype(np.float32)
    assert -1e-6 <= float(macro_soft_f1(y, p)) <= 1 + 1e-6
