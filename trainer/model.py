"""The model: a frozen TF Hub feature extractor and a small dense head (tf-keras)."""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

log = logging.getLogger(__name__)


def load_extractor(handle: str, trainable: bool = False) -> hub.KerasLayer:
    """`hub.KerasLayer` for a TF Hub / Kaggle handle (cached under TFHUB_CACHE_DIR) or a folder."""
    log.info("loading feature extractor %s", handle)
    return hub.KerasLayer(handle, trainable=trainable, name="feature_extractor")


def feature_dim(extractor: hub.KerasLayer, image_size: tuple[int, int]) -> int:
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
    extractor: hub.KerasLayer, head: tf_keras.Model, image_size: tuple[int, int]
) -> tf_keras.Model:
    """Images float32 [N, h, w, 3] in [0, 1] -> probabilities [N, n_labels]."""
    images = tf_keras.Input(shape=(*image_size, 3), name="images", dtype=tf.float32)
    return tf_keras.Model(images, head(extractor(images)), name="genre_classifier")
