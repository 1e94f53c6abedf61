"""Other features from the same frozen backbone, screened with a linear probe on the yardstick's folds.

    python bench/trainer_features.py --out data/levers     # the cached views, once
    python bench/trainer_pooling.py --features data/levers
    python bench/trainer_pooling.py --features data/levers --recipe "flip:avg" --repeats 3

From each cached view's activations (`maps`, below the backbone's tail) the tail runs to
its last [h, w, 1280] map, which is then pooled several ways: `avg` (what the trainer
uses), `max`, `gem` (generalised mean, p = 3), and `top` / `bottom` (the average over the
upper / lower half of the poster). `b15avg` and `b15std` pool the cached activations
themselves (block 15, 160 channels: mid-level texture and colour), and `colour` is a
histogram of hue, saturation and value with their means and spreads, per third of the
poster too.

A variant names its parts joined by `|` (concatenated); each part is `views:pooling`,
where `views` is `flip` (the poster and its mirror at 224x224, averaged), `tall` (the same
at 320x224), `square` (224x224, no mirror), or `flip&tall` (all four averaged), or any
one cached view by its name, such as `320x224` or `448x304`; `colour` stands alone, and so
does `v1`: a second backbone, MobileNet v1 0.25 (`mobilenet_v1_0.25_224_imagenet_no_top.h5`,
256 features), on the poster at 224x224 and its mirror, averaged, as `train
--extra-extractor` puts beside MobileNetV2 (computed once, kept in the features folder).

The probe is ridge regression on standardised features, fit on four hash folds and scored
on the fifth (`trainer.yardstick.hash_folds`), for each of `--alphas`. Per variant and
alpha it prints the macro mean over genres of ROC AUC, average precision and the best F1
any threshold gives on the held-out scores (an upper bound: the threshold is chosen on the
films it is judged on). It ranks features in seconds where the trainer's recipe takes
minutes; `--recipe` runs that recipe (`trainer.yardstick.head_recipe`) on the variants
named instead, and prints the yardstick as `trainer_levers.py` does.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.h5"
V1_WEIGHTS = SHARED / "weights" / "mobilenet_v1_0.25_224_imagenet_no_top.h5"
VIEWS = {
    "square": ("224x224",),
    "flip": ("224x224", "224x224-flip"),
    "tall": ("320x224", "320x224-flip"),
    "flip&tall": ("224x224", "224x224-flip", "320x224", "320x224-flip"),
}
SCREEN = (
    "flip:avg",
    "flip:avg|flip:max",
    "flip:gem",
    "flip:avg|flip:b15avg|flip:b15std",
    "flip:avg|colour",
    "tall:avg",
    "tall:avg|tall:top|tall:bottom",
    "flip:avg|tall:avg",
    "flip&tall:avg",
    "flip:avg|v1",
    "tall:avg|v1",
)
log = logging.getLogger("bench.trainer_pooling")


def pool_view(maps: np.ndarray, view: str) -> dict[str, np.ndarray]:
    """Every pooling of one view's cached activations `maps`, row for row."""
    import tensorflow as tf
    import tf_keras

    from poster_genres.trainer.backbone import split_backbone

    height, width = (int(n) for n in view.split("-")[0].split("x"))
    _, tail = split_backbone(str(WEIGHTS), (height, width))
    activations = tf_keras.Input(shape=tail.input_shape[1:])
    x = activations
    for layer in tail.layers[1:-1]:  # the tail without its average pool
        x = layer(x)
    spatial = tf.function(tf_keras.Model(activations, x))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(maps), 128):
        block = maps[start : start + 128].astype(np.float32)
        out = spatial(block, training=False).numpy()
        half = out.shape[1] // 2
        pooled = {
            "avg": out.mean((1, 2)),
            "max": out.max((1, 2)),
            "gem": np.cbrt((np.maximum(out, 0.0) ** 3).mean((1, 2))),
            "top": out[:, : out.shape[1] - half].mean((1, 2)),
            "bottom": out[:, half:].mean((1, 2)),
            "b15avg": block.mean((1, 2)),
            "b15std": block.std((1, 2)),
        }
        for name, values in pooled.items():
            parts.setdefault(name, []).append(values)
    return {name: np.concatenate(values) for name, values in parts.items()}


def colour(paths: list[str]) -> np.ndarray:
    """Hue x saturation x value histogram (8x3x3), value and saturation histograms (8 each),
    RGB and HSV means and spreads, and mean saturation and value per third, per poster."""
    import tensorflow as tf

    from poster_genres.trainer.preprocess import read_image

    rows = []
    for path in paths:
        rgb = read_image(tf.constant(path), (96, 64)).numpy()
        hsv = tf.image.rgb_to_hsv(rgb).numpy()
        joint, _ = np.histogramdd(hsv.reshape(-1, 3), bins=(8, 3, 3), range=((0, 1),) * 3)
        value, _ = np.histogram(hsv[..., 2], bins=8, range=(0, 1))
        saturation, _ = np.histogram(hsv[..., 1], bins=8, range=(0, 1))
        spread = [
            rgb.mean((0, 1)),
            rgb.std((0, 1)),
            hsv[..., 1:].mean((0, 1)),
            hsv[..., 1:].std((0, 1)),
        ]
        thirds = [third[..., 1:].mean((0, 1)) for third in np.array_split(hsv, 3, axis=0)]
        n = hsv.shape[0] * hsv.shape[1]
        rows.append(
            np.concatenate([joint.ravel() / n, value / n, saturation / n, *spread, *thirds])
        )
    return np.asarray(rows, np.float32)


def mobilenet_v1(paths: list[str]) -> np.ndarray:
    """MobileNet v1 0.25 features [n, 256] of each poster at 224x224 and of its mirror, averaged."""
    import tensorflow as tf
    import tf_keras

    from poster_genres.trainer.preprocess import read_image

    net = tf_keras.applications.MobileNet(
        alpha=0.25,
        include_top=False,
        pooling="avg",
        input_shape=(224, 224, 3),
        weights=str(V1_WEIGHTS),
    )
    run = tf.function(lambda images: net(images * 2.0 - 1.0, training=False))  # [0, 1] -> [-1, 1]
    ds = tf.data.Dataset.from_tensor_slices(paths).map(lambda p: read_image(p, (224, 224)))
    out = []
    for images in ds.batch(64).prefetch(2):
        out.append((run(images).numpy() + run(tf.image.flip_left_right(images)).numpy()) / 2)
    return np.concatenate(out).astype(np.float32)


class Features:
    """Pooled views, computed once each, rows in the order of `ids`."""

    def __init__(self, folder: Path, ids: np.ndarray, posters: Path):
        self.folder, self.ids, self.posters = folder, ids, posters
        self._views: dict[str, dict[str, np.ndarray]] = {}
        self._colour: np.ndarray | None = None

    def view(self, view: str) -> dict[str, np.ndarray]:
        if view not in self._views:
            with np.load(self.folder / f"{view}.npz") as data:
                order = {int(i): r for r, i in enumerate(data["ids"])}
                rows = np.asarray([order[int(i)] for i in self.ids])
                self._views[view] = pool_view(data["maps"][rows], view)
            log.info("pooled %s", view)
        return self._views[view]

    def second_backbone(self) -> np.ndarray:
        """The `v1` features, read from the features folder or computed and kept there."""
        kept = self.folder / "v1-224x224-mirror.npz"
        if not kept.is_file():
            paths = [str(self.posters / f"{i}.jpg") for i in self.ids]
            np.savez(kept, ids=self.ids, features=mobilenet_v1(paths))
        with np.load(kept) as data:
            order = {int(i): r for r, i in enumerate(data["ids"])}
            return data["features"][[order[int(i)] for i in self.ids]]

    def variant(self, spec: str) -> np.ndarray:
        blocks = []
        for part in spec.split("|"):
            if part == "colour":
                if self._colour is None:
                    self._colour = colour([str(self.posters / f"{i}.jpg") for i in self.ids])
                blocks.append(self._colour)
                continue
            if part == "v1":
                blocks.append(self.second_backbone())
                continue
            views, pooling = part.split(":")
            named = VIEWS.get(views, (views,))
            blocks.append(np.mean([self.view(v)[pooling] for v in named], axis=0))
        return np.concatenate(blocks, axis=1)


def probe(x: np.ndarray, y: np.ndarray, folds: list[np.ndarray], alpha: float) -> dict[str, float]:
    """Ridge on four folds, scored on the fifth; macro ROC AUC, AP and best F1 over genres."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    scores = np.zeros(y.shape)
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        mean, sd = x[train].mean(0), x[train].std(0) + 1e-6
        a, b = (x[train] - mean) / sd, (x[test] - mean) / sd
        weights = np.linalg.solve(
            a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y[train] - y[train].mean(0))
        )
        scores[test] = b @ weights

    def best_f1(truth: np.ndarray, score: np.ndarray) -> float:
        precision, recall, _ = precision_recall_curve(truth, score)
        return float((2 * precision * recall / np.maximum(precision + recall, 1e-12)).max())

    genres = range(y.shape[1])
    return {
        "roc_auc": round(float(np.mean([roc_auc_score(y[:, g], scores[:, g]) for g in genres])), 4),
        "ap": round(
            float(np.mean([average_precision_score(y[:, g], scores[:, g]) for g in genres])), 4
        ),
        "best_f1": round(float(np.mean([best_f1(y[:, g], scores[:, g]) for g in genres])), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "posters-dev")
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(SCREEN))
    parser.add_argument("--alphas", default="3e4,1e5")
    parser.add_argument("--recipe", default=None, help="variants to run the trainer's recipe on")
    parser.add_argument("--repeats", type=int, default=1, help="the recipe's --repeats")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, str(ROOT))
    from poster_genres.trainer.data import binarize
    from poster_genres.trainer.movielens import read_movielens, without_genres
    from poster_genres.trainer.settings import TrainSettings
    from poster_genres.trainer.yardstick import cross_validate, hash_folds, head_recipe

    settings = TrainSettings(repeats=args.repeats, seed=42, offline=True)
    movies = without_genres(read_movielens(args.data).labelled, settings.exclude_genres)
    posters = args.data / "posters"
    movies = movies[[(posters / f"{int(i)}.jpg").is_file() for i in movies["tmdbId"]]]
    ids = movies["tmdbId"].to_numpy(dtype=np.int64)
    labels = binarize(list(movies["genres"]), settings.min_genre_count)
    features = Features(args.features, ids, posters)
    results: dict[str, Any] = {}
    if args.recipe:
        for spec in args.recipe.split(","):
            x = features.variant(spec)
            recipe = head_recipe(x, labels.y, ids, settings, 5)
            results[spec] = cross_validate(recipe, labels.y, ids, labels.names, 5)
            summary = {k: v for k, v in results[spec].items() if not isinstance(v, list)}
            print(spec, x.shape[1], json.dumps(summary), flush=True)
    else:
        y, folds = labels.y.astype(np.float64), hash_folds(ids, 5)
        for spec in args.variants.split(","):
            x = features.variant(spec).astype(np.float64)
            results[spec] = {a: probe(x, y, folds, float(a)) for a in args.alphas.split(",")}
            for alpha, figures in results[spec].items():
                print(
                    f"{spec:36s} dim {x.shape[1]:5d} alpha {alpha:>5s} {json.dumps(figures)}",
                    flush=True,
                )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
