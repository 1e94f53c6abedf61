"""A small local feature extractor for the offline demo (the real one comes from TF Hub)."""

from __future__ import annotations

from pathlib import Path


def build_local_extractor(
    path: Path, image_size: tuple[int, int], features: int = 48, seed: int = 1
) -> Path:
    """Save a random-convolution feature vector SavedModel:
    float32 [N, h, w, 3] in [0, 1] -> [N, features].

    Its filters are random, not trained: enough to tell the synthetic posters' colours and
    shapes apart, loaded by `hub.KerasLayer` like the MobileNetV2 feature vector.
    """
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    images = tf_keras.Input(shape=(*image_size, 3), dtype=tf.float32)
    x = tf_keras.layers.Conv2D(features // 2, 3, activation="relu", padding="same")(images)
    x = tf_keras.layers.Concatenate()(
        [tf_keras.layers.GlobalAveragePooling2D()(x), tf_keras.layers.GlobalMaxPooling2D()(x)]
    )
    tf.saved_model.save(tf_keras.Model(images, x), str(path))
    return path
