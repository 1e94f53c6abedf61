"""Binarisation, the stratified split and the image pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from demo.synthetic import draw_poster
from poster_genres.trainer.data import DataError, binarize, image_dataset, stratified_split


def test_binarize_orders_by_frequency_and_drops_rare_genres() -> None:
    labels = binarize(
        [["Drama", "Comedy"], ["Drama"], ["Horror", "Drama"], ["Comedy"]], min_count=2
    )
    assert labels.names == ["Drama", "Comedy"]
    assert labels.y.tolist() == [[1, 1], [1, 0], [1, 0], [0, 1]]
    with pytest.raises(DataError):
        binarize([["Horror"]], min_count=2)


def test_stratified_split_is_seeded_disjoint_and_balanced() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((600, 6)) < [0.5, 0.3, 0.1, 0.05, 0.02, 0.5]).astype(np.float32)
    parts = stratified_split(y, [0.7, 0.15, 0.15], seed=42)
    again = stratified_split(y, [0.7, 0.15, 0.15], seed=42)
    other = stratified_split(y, [0.7, 0.15, 0.15], seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(parts[1], other[1])
    everything = np.concatenate(parts)
    assert sorted(everything.tolist()) == list(range(600))
    assert [len(p) for p in parts] == pytest.approx([420, 90, 90], abs=6)
    for part, share in zip(parts, [0.7, 0.15, 0.15], strict=True):
        # every label, even one with 12 examples, is split close to its share
        assert np.all(np.abs(y[part].sum(0) - share * y.sum(0)) <= 1.5)


def test_image_dataset_decodes_resizes_and_scales(tmp_path: Path) -> None:
    paths = []
    for i, genres in enumerate([["Comedy"], ["Horror", "Drama"], []]):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(draw_poster(genres, (40, 60), seed=i))
        paths.append(str(path))
    y = np.eye(3, dtype=np.float32)
    batches = list(image_dataset(paths, (24, 24), batch_size=2, labels=y))
    images, labels = batches[0]
    assert images.shape == (2, 24, 24, 3) and images.dtype.name == "float32"
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.0
    assert labels.numpy().tolist() == y[:2].tolist()
    assert sum(int(b[0].shape[0]) for b in batches) == 3


def test_genres_too_rare_to_learn_are_listed_with_their_counts() -> None:
    from poster_genres.trainer.data import binarize

    labels = binarize([["Drama"], ["Drama", "Animation"], ["Drama", "Comedy"], ["Comedy"]], 2)
    assert labels.names == ["Drama", "Comedy"]
    assert labels.left_out == {"Animation": 1}
