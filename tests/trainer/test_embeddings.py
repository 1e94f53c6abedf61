"""The embedding cache: keyed by image content and extractor, reused, robust to bad posters."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from demo.synthetic import SyntheticDataset
from poster_genres.trainer.embeddings import EmbeddingCache, embed_images, extractor_key
from poster_genres.trainer.model import feature_dim, load_extractor

from .conftest import FEATURES, IMAGE_SIZE, OTHER_FEATURES, OTHER_SIZE


def test_extractor_loads_through_hub(tiny_extractor: Path) -> None:
    assert feature_dim(load_extractor(str(tiny_extractor)), IMAGE_SIZE) == FEATURES


def test_a_second_extractor_puts_its_features_beside_the_first(
    tiny_extractor: Path, other_extractor: Path
) -> None:
    first, extra = str(tiny_extractor), str(other_extractor)
    images = tf.random.stateless_uniform([3, *IMAGE_SIZE, 3], seed=(1, 2))
    both = load_extractor(first, IMAGE_SIZE, extra=extra, extra_size=OTHER_SIZE)
    alone = [
        load_extractor(first, IMAGE_SIZE)(images),
        load_extractor(extra, OTHER_SIZE)(tf.image.resize(images, OTHER_SIZE)),
    ]
    assert both(images).shape == (3, FEATURES + OTHER_FEATURES)
    np.testing.assert_allclose(both(images), np.concatenate(alone, axis=1), rtol=1e-5, atol=1e-6)
    # the mirror mean covers both: each extractor's features of the poster and its mirror
    mirrored = load_extractor(first, IMAGE_SIZE, mirror=True, extra=extra, extra_size=OTHER_SIZE)
    flipped = tf.image.flip_left_right(images)
    expected = (both(images).numpy() + both(flipped).numpy()) / 2
    np.testing.assert_allclose(mirrored(images), expected, rtol=1e-5, atol=1e-6)
    # the embedding cache tells the pair from either extractor alone and from the other order
    keys = {
        extractor_key(first, IMAGE_SIZE),
        extractor_key(first, IMAGE_SIZE, extra=extra),
        extractor_key(first, IMAGE_SIZE, extra=extra, extra_size=OTHER_SIZE),
        extractor_key(extra, IMAGE_SIZE, extra=first),
        extractor_key(first, IMAGE_SIZE, mirror=True, extra=extra),
    }
    assert len(keys) == 5


def test_cache_is_reused_and_keyed_by_content(
    tiny_extractor: Path, synthetic: SyntheticDataset, tmp_path: Path
) -> None:
    extractor = load_extractor(str(tiny_extractor))
    ids = sorted(synthetic.labelled)[:10]
    paths = [tmp_path / f"{i}.jpg" for i in ids]
    for i, path in zip(ids, paths, strict=True):
        shutil.copy(synthetic.posters_dir / f"{i}.jpg", path)
    key = extractor_key(str(tiny_extractor), IMAGE_SIZE)
    first = embed_images(
        paths, extractor, IMAGE_SIZE, 4, EmbeddingCache(tmp_path / "c", key), False
    )
    assert first.computed == 10 and first.vectors.shape == (10, FEATURES)

    # a fresh cache object reads the shards back: nothing is computed again
    calls = []

    def counting(images):
        calls.append(1)
        return extractor(images)

    again = embed_images(paths, counting, IMAGE_SIZE, 4, EmbeddingCache(tmp_path / "c", key), False)
    assert again.computed == 0 and not calls
    np.testing.assert_allclose(again.vectors, first.vectors, rtol=1e-6)

    # a changed poster is recomputed; the others are not
    shutil.copy(synthetic.posters_dir / f"{sorted(synthetic.labelled)[20]}.jpg", paths[3])
    changed = embed_images(
        paths, extractor, IMAGE_SIZE, 4, EmbeddingCache(tmp_path / "c", key), False
    )
    assert changed.computed == 1
    assert not np.allclose(changed.vectors[3], first.vectors[3])

    # another extractor or image size is another key
    assert extractor_key(str(tiny_extractor), (64, 64)) != key
    assert extractor_key("https://tfhub.dev/some/model/1", IMAGE_SIZE) != key


def test_unreadable_posters_are_skipped_and_reported(
    tiny_extractor: Path, synthetic: SyntheticDataset, tmp_path: Path
) -> None:
    good = [synthetic.posters_dir / f"{i}.jpg" for i in sorted(synthetic.labelled)[:3]]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    missing = tmp_path / "missing.jpg"
    paths = [good[0], broken, good[1], missing, good[2]]
    result = embed_images(paths, load_extractor(str(tiny_extractor)), IMAGE_SIZE, 2, None, False)
    assert result.ok.tolist() == [0, 2, 4]
    assert set(result.failed) == {1, 3}
    assert "not a decodable image" in result.failed[1] and "cannot read" in result.failed[3]
    assert result.vectors.shape == (3, FEATURES)
