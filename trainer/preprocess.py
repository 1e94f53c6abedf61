"""Image decoding shared by training and the exported serving signature."""

from __future__ import annotations

import tensorflow as tf


def decode_image(image_bytes: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Encoded JPEG/PNG/WebP/GIF bytes -> float32 [height, width, 3] RGB in [0, 1]."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image = tf.image.resize(image, image_size, method="bilinear", antialias=False)
    return tf.clip_by_value(image / 255.0, 0.0, 1.0)


def read_image(path: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """An image file's path -> float32 [height, width, 3] in [0, 1], its static shape set."""
    image = decode_image(tf.io.read_file(path), image_size)
    image.set_shape([*image_size, 3])
    return image
