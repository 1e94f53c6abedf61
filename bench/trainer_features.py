"""Poster features for the trainer's lever study: MobileNetV2 at several input shapes, flipped or not.

    python bench/trainer_features.py --out data/levers [--data ../shared/data/posters-dev]

For each view (input height x width, mirrored or not) every poster goes through the
Keras MobileNetV2 built from `mobilenet_v2_1.0_224_imagenet_no_top.h5` once, decoded by
`trainer/preprocess.py` as serving does. Written per view to `<out>/<view>.npz`:
`ids` [n] TMDB ids, `features` [n, 1280] pooled (frozen backbone) and `maps`
[n, h', w', c] float16, the activations below the tail that fine-tuning trains
(`trainer.backbone.TAIL_START`). `bench/trainer_levers.py` reads them. By default the
four views of the lever study are written; `--views 384x256,448x304` adds larger 2:3
inputs, which `bench/trainer_pooling.py` can screen.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.h5"
VIEWS = {"224x224": (224, 224, False), "224x224-flip": (224, 224, True)}
VIEWS |= {"320x224": (320, 224, False), "320x224-flip": (320, 224, True)}
# larger 2:3 inputs, for the pooling screen only (not written unless named in --views)
LARGER = {"384x256": (384, 256, False), "448x304": (448, 304, False)}
log = logging.getLogger("bench.trainer_features")


def write_view(paths: list[str], ids: np.ndarray, view: str, out: Path, batch: int) -> float:
    """Run every poster through the backbone for one view; seconds taken."""
    import tensorflow as tf

    from poster_genres.trainer.backbone import split_backbone
    from poster_genres.trainer.preprocess import read_image

    height, width, flip = (VIEWS | LARGER)[view]
    base, tail = split_backbone(str(WEIGHTS), (height, width))

    def load(path: tf.Tensor) -> tf.Tensor:
        image = read_image(path, (height, width))
        return tf.image.flip_left_right(image) if flip else image

    ds = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=2).batch(batch)
    run = tf.function(lambda images: _both(base, tail, images))
    maps, features = [], []
    started = time.perf_counter()
    for images in ds.prefetch(2):
        m, f = run(images)
        maps.append(m.numpy().astype(np.float16))
        features.append(f.numpy())
    seconds = time.perf_counter() - started
    np.savez(
        out / f"{view}.npz", ids=ids, maps=np.concatenate(maps), features=np.concatenate(features)
    )
    log.info("%s: %d posters in %.1fs", view, len(paths), seconds)
    return seconds


def _both(base, tail, images):
    """The cached activations and the pooled features of a batch."""
    maps = base(images, training=False)
    return maps, tail(maps, training=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "posters-dev")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--views", default=",".join(VIEWS))
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, str(ROOT))
    from poster_genres.trainer.movielens import read_movielens

    movies = read_movielens(args.data).labelled
    posters = args.data / "posters"
    ids = np.asarray([int(i) for i in movies["tmdbId"] if (posters / f"{int(i)}.jpg").is_file()])
    paths = [str(posters / f"{i}.jpg") for i in ids]
    args.out.mkdir(parents=True, exist_ok=True)
    for view in args.views.split(","):
        if not (args.out / f"{view}.npz").is_file():
            write_view(paths, ids, view, args.out, args.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
