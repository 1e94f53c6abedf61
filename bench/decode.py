"""Poster decoding benchmark: full-size JPEG decode against libjpeg's scaled decode.

    python bench/decode.py [--posters DIR] [--n 200] [--extractor DIR]

Real posters (``../shared/data/posters-dev/posters`` when present, else synthetic ones)
are re-encoded at TMDB's rendition sizes (w342, w500, w780 and a 2000 px original),
JPEG quality 85. For each size it times `trainer.preprocess.decode_image` (which scales
large JPEGs while decoding) against a plain full decode, both followed by the same
224x224 bilinear resize, and compares the pixels they give. With ``--extractor`` (a
feature-vector folder such as ``../shared/data/weights/mobilenet_v2_1.0_224_feature_vector``)
it also compares the features and the scores of a fixed random sigmoid head on them.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before bench/, whose trainer.py would shadow the package

import tensorflow as tf

from poster_genres.trainer.preprocess import decode_image

SHARED = ROOT.parent / "shared" / "data"
RENDITIONS = {"w342": 342, "w500": 500, "w780": 780, "original": 2000}
IMAGE_SIZE = (224, 224)


def full_decode(image_bytes: tf.Tensor) -> tf.Tensor:
    """The decoding every poster got before scaled decoding: full size, then resize."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image = tf.image.resize(image, IMAGE_SIZE, method="bilinear", antialias=False)
    return tf.clip_by_value(image / 255.0, 0.0, 1.0)


def source_images(posters: Path | None, n: int) -> list[Image.Image]:
    """Real posters if there are any, else smooth synthetic ones."""
    files = sorted(posters.glob("*.jpg"))[:n] if posters and posters.is_dir() else []
    if files:
        return [Image.open(f).convert("RGB") for f in files]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        base = rng.integers(0, 255, (6, 4, 3), dtype=np.uint8)
        out.append(Image.fromarray(base).resize((182, 268), Image.BICUBIC))
    return out


def encode(images: list[Image.Image], width: int) -> list[bytes]:
    """JPEG quality 85 at `width` x 1.5 `width`, as TMDB's renditions are shaped."""
    out = []
    for image in images:
        buffer = io.BytesIO()
        image.resize((width, width * 3 // 2), Image.BICUBIC).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def timed_map(fn, blobs: list[bytes], rounds: int = 3) -> tuple[np.ndarray, float]:
    """Pixels from `fn` over every blob, and the best per-image milliseconds of `rounds`."""
    graph = tf.function(lambda b: tf.map_fn(fn, b, fn_output_signature=tf.float32))
    batch = tf.constant(blobs)
    pixels = graph(batch).numpy()
    best = float("inf")
    for _ in range(rounds):
        begun = time.perf_counter()
        graph(batch)
        best = min(best, time.perf_counter() - begun)
    return pixels, 1000 * best / len(blobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posters", type=Path, default=SHARED / "posters-dev" / "posters")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument(
        "--extractor", type=Path, default=SHARED / "weights" / "mobilenet_v2_1.0_224_feature_vector"
    )
    args = parser.parse_args()
    images = source_images(args.posters, args.n)
    extractor = tf.saved_model.load(str(args.extractor)) if args.extractor.is_dir() else None
    rng = np.random.default_rng(1)
    head = None
    results = {"n": len(images), "source": "real posters" if args.posters.is_dir() else "synthetic"}
    print(f"{len(images)} {results['source']}, decode + resize to {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}")
    for name, width in RENDITIONS.items():
        blobs = encode(images, width)
        old, old_ms = timed_map(full_decode, blobs)
        new, new_ms = timed_map(lambda b: decode_image(b, IMAGE_SIZE), blobs)
        diff = np.abs(old - new)
        row = {
            "kb": round(sum(map(len, blobs)) / len(blobs) / 1024, 1),
            "full_ms": round(old_ms, 2),
            "scaled_ms": round(new_ms, 2),
            "speedup": round(old_ms / new_ms, 2),
            "pixel_mae": round(float(diff.mean()), 4),
            "pixel_p99": round(float(np.quantile(diff, 0.99)), 4),
        }
        if extractor is not None:
            f_old = extractor(tf.constant(old), training=False).numpy()
            f_new = extractor(tf.constant(new), training=False).numpy()
            if head is None:
                head = rng.normal(0, 1 / np.sqrt(f_old.shape[1]), (f_old.shape[1], 20)).astype(
                    np.float32
                )
            cos = np.sum(f_old * f_new, 1) / (
                np.linalg.norm(f_old, axis=1) * np.linalg.norm(f_new, axis=1)
            )
            s_old, s_new = (1 / (1 + np.exp(-(f @ head))) for f in (f_old, f_new))
            row |= {
                "feature_cosine_min": round(float(cos.min()), 4),
                "score_abs_diff_mean": round(float(np.abs(s_old - s_new).mean()), 4),
                "score_abs_diff_max": round(float(np.abs(s_old - s_new).max()), 4),
            }
        results[name] = row
        print(f"{name:>8}: {row}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
