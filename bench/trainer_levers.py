"""The trainer's quality levers, each alone and combined, on the yardstick (hash-fold CV).

    python bench/trainer_features.py --out data/levers        # the cached views, once
    python bench/trainer_levers.py --features data/levers --levers base,flip,tall --out levers.json

Every lever runs the trainer's own recipe (`trainer.yardstick.head_recipe`: cross-fitted
heads, out-of-fold thresholds) inside each of `--k` hash folds of the whole labelled set
and is scored on the held-out fold. Levers:

- `base`: MobileNetV2 features of the poster squashed to 224x224 (the trainer's default
  before this study);
- `flip`: the features of the poster and of its mirror image averaged (test-time
  augmentation, at training and at serving);
- `tall`: a 320x224 input (the poster's 2:3 shape kept), pooled over the taller grid;
- `ft`: the backbone's tail fine-tuned on the training folds (`trainer/finetune.py`), mirrored
  posters as augmentation; its features feed the same recipe;
- combinations joined with `+`, e.g. `tall+flip+ft`.

The last line printed is JSON: per lever, the yardstick's summary and the seconds it took.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.h5"
log = logging.getLogger("bench.trainer_levers")


def load_view(folder: Path, view: str, ids: np.ndarray, maps: bool) -> dict[str, np.ndarray]:
    """One cached view, rows in the order of `ids`."""
    with np.load(folder / f"{view}.npz") as data:
        order = {int(i): r for r, i in enumerate(data["ids"])}
        rows = np.asarray([order[int(i)] for i in ids])
        out = {"features": data["features"][rows]}
        if maps:
            out["maps"] = data["maps"][rows]
    return out


def lever_recipe(
    lever: str,
    folder: Path,
    ids: np.ndarray,
    y: np.ndarray,
    settings: Any,
    k: int,
    keep: list[dict[str, np.ndarray]],
) -> Any:
    """The `FitAndScore` of one lever (its parts joined by `+`)."""
    from poster_genres.trainer.yardstick import head_recipe

    parts = set(lever.split("+"))
    size = "320x224" if "tall" in parts else "224x224"
    views = [size, f"{size}-flip"] if ("flip" in parts or "ft" in parts) else [size]
    loaded = [load_view(folder, v, ids, "ft" in parts) for v in views]
    use = loaded if "flip" in parts else loaded[:1]
    if "ft" not in parts:
        x = np.mean([v["features"] for v in use], axis=0)
        return head_recipe(x, y, ids, settings, k, keep)
    image_size = (320, 224) if "tall" in parts else (224, 224)
    return finetuned_recipe(loaded, len(use), image_size, ids, y, settings, k, keep)


def finetuned_recipe(
    loaded: list[dict[str, np.ndarray]],
    n_views: int,
    image_size: tuple[int, int],
    ids: np.ndarray,
    y: np.ndarray,
    settings: Any,
    k: int,
    keep: list[dict[str, np.ndarray]],
) -> Any:
    """Fine-tune the tail on the training rows, then the head recipe on its features."""
    from poster_genres.trainer.backbone import split_backbone
    from poster_genres.trainer.finetune import finetune_tail, pooled
    from poster_genres.trainer.yardstick import head_recipe, inner_split

    def run(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, tail = split_backbone(str(WEIGHTS), image_size)
        views = (loaded[0]["maps"], loaded[1]["maps"])
        rows = inner_split(train, ids, k, settings.val_fraction)
        tuned = finetune_tail(tail, views, y, rows, settings.finetune)
        run.steps.append(tuned.step_s)
        x = np.mean([pooled(tail, v["maps"]) for v in loaded[:n_views]], axis=0)
        return head_recipe(x, y, ids, settings, k, keep)(train, test)

    run.steps = []
    return run


def run_lever(
    lever: str, args: argparse.Namespace, ids: np.ndarray, labels: Any, settings: Any
) -> dict[str, Any]:
    """One lever on the yardstick: its summary; its fold scores saved with `--scores`."""
    from poster_genres.trainer.yardstick import cross_validate

    started = time.monotonic()
    keep: list[dict[str, np.ndarray]] = []
    recipe = lever_recipe(lever, args.features, ids, labels.y, settings, args.k, keep)
    summary = cross_validate(recipe, labels.y, ids, labels.names, args.k)
    summary["seconds"] = round(time.monotonic() - started, 1)
    if hasattr(recipe, "steps"):
        summary["finetune_step_s"] = round(float(np.mean(recipe.steps)), 4)
    if args.scores:
        args.scores.mkdir(parents=True, exist_ok=True)
        arrays = {f"{key}_{j}": v for j, fold in enumerate(keep) for key, v in fold.items()}
        np.savez(args.scores / f"{lever}.npz", y=labels.y, ids=ids, **arrays)
    log.info(
        "%s: macro F1 %.4f +- %.4f, micro F1 %.4f +- %.4f (%.0fs)",
        lever,
        summary["macro_f1"],
        summary["macro_f1_sd"],
        summary["micro_f1"],
        summary["micro_f1_sd"],
        summary["seconds"],
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "posters-dev")
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--levers", default="base,flip,tall,tall+flip")
    parser.add_argument("--k", type=int, default=5, help="hash folds of the yardstick")
    parser.add_argument("--repeats", type=int, default=1, help="the head recipe's --repeats")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads; 0 = its own")
    parser.add_argument("--finetune-epochs", type=int, default=8)
    parser.add_argument("--scores", type=Path, default=None, help="save each fold's scores here")
    args = parser.parse_args(argv)
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, str(ROOT))
    from poster_genres.trainer.data import binarize
    from poster_genres.trainer.movielens import read_movielens, without_genres
    from poster_genres.trainer.settings import TrainSettings

    settings = TrainSettings(
        repeats=args.repeats,
        seed=args.seed,
        offline=True,
        finetune={"epochs": args.finetune_epochs},
    )
    movies = without_genres(read_movielens(args.data).labelled, settings.exclude_genres)
    posters = args.data / "posters"
    movies = movies[[(posters / f"{int(i)}.jpg").is_file() for i in movies["tmdbId"]]]
    ids = movies["tmdbId"].to_numpy(dtype=np.int64)
    labels = binarize(list(movies["genres"]), settings.min_genre_count)
    results: dict[str, Any] = {"k": args.k, "repeats": args.repeats, "labels": labels.names}
    for lever in args.levers.split(","):
        results[lever] = run_lever(lever, args, ids, labels, settings)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2), "utf-8")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
