"""Decoding posters: scaled JPEG decodes stay close to full ones; other formats unchanged."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from poster_genres.trainer.preprocess import decode_image

SIZE = (32, 32)


def _poster(width: int, fmt: str = "JPEG") -> bytes:
    """A smooth poster (gradients and blobs, like a photo) of `width` x 1.5 `width`."""
    y, x = np.mgrid[0 : width * 3 // 2, 0:width] / width
    rgb = np.stack([np.sin(3 * x) * 0.5 + 0.5, np.cos(2 * y) * 0.5 + 0.5, x * y / 1.5], -1)
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buffer, fmt, quality=90)
    return buffer.getvalue()


def _full_decode(image_bytes: bytes) -> np.ndarray:
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    return (tf.image.resize(image, SIZE, method="bilinear", antialias=False) / 255.0).numpy()


def test_small_jpeg_is_decoded_at_full_scale() -> None:
    blob = _poster(60)  # under twice the input size: nothing to gain from scaling
    np.testing.assert_array_equal(decode_image(tf.constant(blob), SIZE).numpy(), _full_decode(blob))


@pytest.mark.parametrize("width", [160, 400])
def test_large_jpeg_decoded_at_reduced_scale_stays_close(width: int) -> None:
    blob = _poster(width)  # 160: 1/2 scale; 400: 1/4 scale (still 3x the input size)
    scaled = decode_image(tf.constant(blob), SIZE).numpy()
    assert scaled.shape == (*SIZE, 3)
    assert np.abs(scaled - _full_decode(blob)).mean() < 0.01


def test_scaled_decode_is_used_for_large_jpegs() -> None:
    blob = _poster(400)
    quarter = tf.io.decode_jpeg(blob, channels=3, ratio=4)
    expected = tf.image.resize(quarter, SIZE, method="bilinear", antialias=False) / 255.0
    np.testing.assert_allclose(
        decode_image(tf.constant(blob), SIZE).numpy(), expected.numpy(), atol=1e-6
    )


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP"])
def test_other_formats_decode_as_before(fmt: str) -> None:
    blob = _poster(400, fmt)
    np.testing.assert_array_equal(decode_image(tf.constant(blob), SIZE).numpy(), _full_decode(blob))
