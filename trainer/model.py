"""The model: a frozen feature extractor and a small dense head (tf-keras).

The extractor is a TF Hub layer, or MobileNetV2 built from Keras weights (`trainer/backbone.py`),
which takes any input shape. With `extra`, a second extractor runs on the same images and
its features are put beside the first's: two networks trained apart see different things in
a poster (docs/trainer.md has what the default pair buys). With `mirror`, it returns the
mean of the features of the image and of its mirror image: test-time augmentation that
costs a second pass per poster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from poster_genres.trainer.backbone import is_keras_weights, mobilenet_v2

log = logging.getLogger(__name__)


def load_extractor(
    handle: str,
    image_size: tuple[int, int] = (224, 224),
    mirror: bool = False,
    extra: str | None = None,
    extra_size: tuple[int, int] | None = None,
) -> tf_keras.layers.Layer | tf_keras.Model:
    """The frozen extractor: images float32 [N, h, w, 3] in [0, 1] -> features [N, d].

    `handle` (and `extra`, if given) is a TF Hub / Kaggle handle (cached under
    TFHUB_CACHE_DIR) or a SavedModel folder, loaded by `hub.KerasLayer`, or a MobileNetV2
    Keras weights file (`.h5`). With `extra`, the features are [first's, extra's] side by
    side; the extra extractor sees the images resized to `extra_size` (default: as they are).
    """
    log.info(
        "loading feature extractor %s%s%s",
        handle,
        f" and {extra} beside it" if extra else "",
        " (with the mirror image)" if mirror else "",
    )
    extractor = _frozen(handle, image_size, "feature_extractor")
    if extra is not None:
        size = tuple(extra_size or image_size)
        second = _frozen(extra, size, "extra_feature_extractor")
        extractor = side_by_side([(extractor, image_size), (second, size)], image_size)
    return with_mirror(extractor, image_size) if mirror else extractor


def _frozen(
    handle: str, image_size: tuple[int, int], name: str
) -> tf_keras.layers.Layer | tf_keras.Model:
    """One frozen extractor from its handle, folder or `.h5` file."""
    if is_keras_weights(handle):
        extractor = mobilenet_v2(handle, image_size)
        extractor.trainable = False
        return extractor
    return hub.KerasLayer(handle, trainable=False, name=name)


def side_by_side(
    extractors: list[tuple[Callable[..., tf.Tensor], tuple[int, int]]],
    image_size: tuple[int, int],
) -> tf_keras.Model:
    """One extractor whose features are each extractor's, concatenated in order.

    Each extractor comes with the input size it takes; images of `image_size` are resized
    (bilinear) for an extractor that takes another.
    """
    images = tf_keras.Input(shape=(*image_size, 3), name="images", dtype=tf.float32)
    features = []
    for k, (extractor, size) in enumerate(extractors):
        seen = images
        if tuple(size) != tuple(image_size):
            seen = tf_keras.layers.Resizing(*size, name=f"resize_for_{k}")(images)
        features.append(extractor(seen))
    joined = tf_keras.layers.Concatenate(name="features_side_by_side")(features)
    return tf_keras.Model(images, joined, name="extractors")


def with_mirror(extractor: Callable[..., tf.Tensor], image_size: tuple[int, int]) -> tf_keras.Model:
    """An extractor returning the mean of the features of each image and of its mirror image."""
    images = tf_keras.Input(shape=(*image_size, 3), name="images", dtype=tf.float32)
    mirrored = tf_keras.layers.Lambda(tf.image.flip_left_right, name="mirror")(images)
    mean = tf_keras.layers.Average(name="mean_features")([extractor(images), extractor(mirrored)])
    return tf_keras.Model(images, mean, name="mirrored_extractor")


def feature_dim(extractor: Callable[..., tf.Tensor], image_size: tuple[int, int]) -> int:
    """Length of the extractor's feature vector, found by running it once."""
    return int(extractor(tf.zeros([1, *image_size, 3], tf.float32)).shape[-1])


def build_head(
    input_dim: int,
    n_labels: int,
    hidden: int = 1024,
    dropout: float = 0.0,
    l2: float = 0.0,
    normalize_with: np.ndarray | None = None,
) -> tf_keras.Model:
    """Embeddings [N, input_dim] -> probabilities [N, n_labels]: Dense relu, Dense sigmoid.

    With `normalize_with` (training embeddings [n, input_dim]) the head first standardises
    each feature with that data's mean and variance (frozen into the model).
    """
    reg = tf_keras.regularizers.l2(l2) if l2 else None
    inputs = tf_keras.Input(shape=(input_dim,), name="embedding")
    x = inputs
    if normalize_with is not None:
        norm = tf_keras.layers.Normalization(axis=-1, name="standardise")
        norm.adapt(normalize_with)
        x = norm(x)
    if dropout:
        x = tf_keras.layers.Dropout(dropout, name="dropout_in")(x)
    x = tf_keras.layers.Dense(hidden, activation="relu", kernel_regularizer=reg, name="hidden")(x)
    if dropout:
        x = tf_keras.layers.Dropout(dropout, name="dropout_hidden")(x)
    outputs = tf_keras.layers.Dense(
        n_labels, activation="sigmoid", kernel_regularizer=reg, name="genres"
    )(x)
    return tf_keras.Model(inputs, outputs, name="head")


def build_classifier(
    extractor: Callable[..., tf.Tensor], head: tf_keras.Model, image_size: tuple[int, int]
) -> tf_keras.Model:
    """Images float32 [N, h, w, 3] in [0, 1] -> probabilities [N, n_labels]."""
    images = tf_keras.Input(shape=(*image_size, 3), name="images", dtype=tf.float32)
    return tf_keras.Model(images, head(extractor(images)), name="genre_classifier")
