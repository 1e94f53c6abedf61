"""Splitting the examples into train, validation and test parts.

A stratified, seeded split (`trainer.data.stratified_split`): every genre keeps close
to its share in each part, and the same examples and seed give the same parts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from trainer.data import stratified_split
from trainer.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Row indices of the examples in each part, ascending."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray  # empty when no test fraction is held out


def split_examples(y: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Split the rows of the label matrix y [n, n_labels] by the given fractions."""
    fractions = [1 - val_fraction - test_fraction, val_fraction]
    if test_fraction:
        fractions.append(test_fraction)
    parts = stratified_split(y, fractions, seed)
    split = Split(parts[0], parts[1], parts[2] if len(parts) > 2 else np.zeros(0, int))
    if len(split.train) == 0 or len(split.validation) == 0:
        raise DataError(f"{len(y)} usable posters are too few to split for training")
    log.info("split: %d train, %d validation, %d test; %d labels",
             len(split.train), len(split.validation), len(split.test), y.shape[1])
    return split
