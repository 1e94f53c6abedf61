"""Repeated cross-fitting: every repeat adds a head per fold, scores average over repeats."""

from __future__ import annotations

import numpy as np
import pytest

from poster_genres.trainer.fit import cross_fit
from poster_genres.trainer.settings import HeadSettings

QUICK = HeadSettings(epochs=2, patience=0, hidden=8, batch_size=32)


def _data(n: int = 120, dim: int = 6, labels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random((n, labels)) < 0.4).astype(np.float32)
    x = (y @ rng.normal(size=(labels, dim)) + rng.normal(0, 0.5, (n, dim))).astype(np.float32)
    return x, y


@pytest.mark.slow
def test_repeats_average_more_heads_and_every_row_is_scored_out_of_fold() -> None:
    x, y = _data()
    once, oof_once, _, _ = cross_fit(x, y, QUICK, folds=2, seed=1, repeats=1)
    twice, oof_twice, _, _ = cross_fit(x, y, QUICK, folds=2, seed=1, repeats=2)
    assert len(once.layers) < len(twice.layers)  # 2 heads against 4 inside the ensemble
    heads = [layer for layer in twice.layers if layer.name.startswith("head_")]
    assert len(heads) == 4
    assert oof_twice.shape == y.shape and np.all((oof_twice > 0) & (oof_twice < 1))
    assert not np.allclose(oof_once, oof_twice)  # the second split's heads moved the scores
