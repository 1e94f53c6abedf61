"""MobileNetV2 from its Keras weights file, split where fine-tuning starts.

The TF Hub feature vector is one opaque layer at 224x224. Built from the `.h5` weights
instead, MobileNetV2 takes any input shape (a 2:3 poster need not be squashed square)
and splits in two: the frozen `base` up to TAIL_START, whose activations are computed
once and cached, and the `tail` (the last inverted-residual block, the 1x1 convolution to
1280 channels and the average pool) that fine-tuning trains on those cached activations.
"""

from __future__ import annotations

import logging

import tensorflow as tf
import tf_keras

log = logging.getLogger(__name__)

TAIL_START = "block_15_add"  # output [h/32, w/32, 160]; the tail is block_16 + Conv_1 + pool


def is_keras_weights(handle: str) -> bool:
    """Whether a feature-extractor handle names a Keras MobileNetV2 weights file."""
    return handle.endswith(".h5")


def mobilenet_v2(weights: str, image_size: tuple[int, int]) -> tf_keras.Model:
    """Images float32 [N, h, w, 3] in [0, 1] -> pooled features [N, 1280]."""
    net = tf_keras.applications.MobileNetV2(
        input_shape=(*image_size, 3), include_top=False, pooling="avg", weights=weights
    )
    images = tf_keras.Input(shape=(*image_size, 3), name="images")
    scaled = tf_keras.layers.Rescaling(2.0, offset=-1.0, name="to_unit_range")(images)
    return tf_keras.Model(images, net(scaled), name="mobilenet_v2")


def split_backbone(
    weights: str, image_size: tuple[int, int]
) -> tuple[tf_keras.Model, tf_keras.Model]:
    """(base: images [N, h, w, 3] in [0, 1] -> activations, tail: activations -> [N, 1280])."""
    net = tf_keras.applications.MobileNetV2(
        input_shape=(*image_size, 3), include_top=False, pooling="avg", weights=weights
    )
    images = tf_keras.Input(shape=(*image_size, 3), name="images")
    cut = net.get_layer(TAIL_START)
    base_inner = tf_keras.Model(net.input, cut.output)
    scaled = tf_keras.layers.Rescaling(2.0, offset=-1.0, name="to_unit_range")(images)
    base = tf_keras.Model(images, base_inner(scaled), name="backbone_base")
    maps = tf_keras.Input(shape=cut.output.shape[1:], name="activations")
    x = maps
    after = net.layers[net.layers.index(cut) + 1 :]
    for layer in after:  # the tail is a chain: each layer takes the one before it
        x = layer(x)
    return base, tf_keras.Model(maps, x, name="backbone_tail")


def join(base: tf_keras.Model, tail: tf_keras.Model) -> tf_keras.Model:
    """One extractor again: images -> base -> tail -> features."""
    images = tf_keras.Input(shape=base.input_shape[1:], name="images")
    return tf_keras.Model(images, tail(base(images)), name="mobilenet_v2")


def cosine(a: tf.Tensor, b: tf.Tensor) -> float:
    """Mean cosine similarity of two feature batches [N, d] (a check of two extractors)."""
    a, b = tf.math.l2_normalize(a, -1), tf.math.l2_normalize(b, -1)
    return float(tf.reduce_mean(tf.reduce_sum(a * b, -1)))
