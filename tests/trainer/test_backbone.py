"""MobileNetV2 from Keras weights: any input shape, split for fine-tuning, and the mirror mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from demo.synthetic import SyntheticDataset
from poster_genres.schemas.model import INPUT_NAME, OUTPUT_NAME, SIGNATURE, ModelMetadata
from poster_genres.trainer.backbone import TAIL_START, join, split_backbone
from poster_genres.trainer.embeddings import extractor_key
from poster_genres.trainer.finetune import finetune_tail, pooled
from poster_genres.trainer.model import load_extractor
from poster_genres.trainer.settings import FinetuneSettings, HeadSettings
from poster_genres.trainer.train import train

from .test_train import settings_for

TALL = (96, 64)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2 weights file with random weights (the ImageNet file is not in the repo)."""
    tf_keras.utils.set_random_seed(0)
    net = tf_keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), include_top=False, pooling="avg", weights=None
    )
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2.h5"
    net.save_weights(str(path))
    return path


def _images(n: int = 3, size: tuple[int, int] = TALL) -> tf.Tensor:
    return tf.random.stateless_uniform([n, *size, 3], seed=(1, 2))


def test_a_weights_file_gives_an_extractor_of_any_shape(weights: Path) -> None:
    extractor = load_extractor(str(weights), TALL)
    assert extractor(_images()).shape == (3, 1280)
    assert not extractor.trainable_weights
    assert extractor_key(str(weights), TALL) != extractor_key(str(weights), (64, 64))


def test_the_mirror_mean_does_not_see_which_way_round_the_poster_is(weights: Path) -> None:
    plain = load_extractor(str(weights), TALL)
    mirrored = load_extractor(str(weights), TALL, mirror=True)
    images = _images()
    flipped = tf.image.flip_left_right(images)
    np.testing.assert_allclose(mirrored(images), mirrored(flipped), rtol=1e-5, atol=0)
    assert not np.allclose(plain(images), plain(flipped), rtol=1e-3, atol=0)
    key = extractor_key(str(weights), TALL)
    assert extractor_key(str(weights), TALL, mirror=True) != key


def test_base_and_tail_make_the_whole_backbone(weights: Path) -> None:
    base, tail = split_backbone(str(weights), TALL)
    whole = load_extractor(str(weights), TALL)
    images = _images()
    np.testing.assert_allclose(join(base, tail)(images), whole(images), rtol=1e-4, atol=0)
    assert base.output_shape[1:] == (TALL[0] // 32, TALL[1] // 32, 160)
    assert TAIL_START not in [layer.name for layer in tail.layers]


def test_finetuning_moves_the_tail_and_learns_from_cached_activations(weights: Path) -> None:
    base, tail = split_backbone(str(weights), TALL)
    images = _images(40)
    maps = base(images).numpy()
    mirrored = base(tf.image.flip_left_right(images)).numpy()
    y = maps.mean(axis=(1, 2))[:, :2] > np.median(maps.mean(axis=(1, 2))[:, :2], axis=0)
    before = pooled(tail, maps)
    settings = FinetuneSettings(epochs=2, patience=0, batch_size=8, learning_rate=1e-2)
    tuned = finetune_tail(
        tail, (maps, mirrored), y.astype(np.float32), (np.arange(30), np.arange(30, 40)), settings
    )
    assert tuned.tail is tail and tuned.step_s > 0 and 1 <= tuned.best_epoch <= 2
    assert not np.allclose(pooled(tail, maps), before, rtol=1e-3, atol=0)


@pytest.mark.slow
def test_train_finetunes_mirrors_and_exports_a_tall_bytes_in_model(
    weights: Path, synthetic: SyntheticDataset, tmp_path: Path
) -> None:
    settings = settings_for(
        synthetic,
        weights,
        tmp_path,
        image_size=TALL,
        mirror=True,
        finetune={"enabled": True, "epochs": 1, "batch_size": 32},
        head=HeadSettings(epochs=2, patience=0, batch_size=32, hidden=16),
        folds=2,
    )
    result = train(settings)
    metadata = ModelMetadata.read(result.version_dir)
    assert tuple(metadata.image_size) == TALL and metadata.model_extra["mirror"] is True
    assert metadata.timings_s["finetune_step"] > 0 and metadata.timings_s["head_step"] > 0
    serve = tf.saved_model.load(str(result.version_dir)).signatures[SIGNATURE]
    poster = (synthetic.posters_dir / f"{min(synthetic.labelled)}.jpg").read_bytes()
    mirrored = tf.io.encode_png(tf.image.flip_left_right(tf.io.decode_jpeg(poster))).numpy()
    scores = serve(**{INPUT_NAME: tf.constant([poster, mirrored])})[OUTPUT_NAME].numpy()
    assert scores.shape == (2, len(metadata.labels)) and scores.dtype == np.float32
    np.testing.assert_allclose(scores[0], scores[1], atol=2e-3)  # the mirror mean, as served
