"""Image decoding shared by training and the exported serving signature.

A JPEG much larger than the model's input is decoded at 1/2, 1/4 or 1/8 scale (libjpeg
scales while decoding, in the DCT domain), which costs a fraction of a full decode and
then a smaller resize. The scale is the smallest whose result still covers the input
size twice over in both directions, so the bilinear resize that follows still reduces.
"""

from __future__ import annotations

import tensorflow as tf

JPEG_SCALES = (8, 4, 2)  # libjpeg's DCT scaling ratios that tf.io.decode_jpeg supports
MIN_COVER = 2  # a scaled decode keeps at least this multiple of the input size


def _decode_jpeg_scaled(image_bytes: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """A JPEG decoded at the largest scale-down that keeps MIN_COVER x the input size."""
    shape = tf.image.extract_jpeg_shape(image_bytes)
    factor = tf.minimum(
        shape[0] // (MIN_COVER * image_size[0]), shape[1] // (MIN_COVER * image_size[1])
    )
    branches = [
        (factor >= r, lambda r=r: tf.io.decode_jpeg(image_bytes, channels=3, ratio=r))
        for r in JPEG_SCALES
    ]
    return tf.case(
        branches, default=lambda: tf.io.decode_jpeg(image_bytes, channels=3), exclusive=False
    )


def decode_image(image_bytes: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Encoded JPEG/PNG/WebP/GIF/BMP bytes -> float32 [height, width, 3] RGB in [0, 1]."""
    is_jpeg = tf.strings.substr(image_bytes, 0, 3) == b"\xff\xd8\xff"
    image = tf.cond(
        is_jpeg,
        lambda: _decode_jpeg_scaled(image_bytes, image_size),
        lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False),
    )
    image = tf.image.resize(image, image_size, method="bilinear", antialias=False)
    return tf.clip_by_value(image / 255.0, 0.0, 1.0)


def read_image(path: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """An image file's path -> float32 [height, width, 3] in [0, 1], its static shape set."""
    image = decode_image(tf.io.read_file(path), image_size)
    image.set_shape([*image_size, 3])
    return image
