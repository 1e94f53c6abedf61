"""What each input option costs the worker: seconds per batch of the exported signature.

    python bench/trainer_serving.py [--batch 32] [--rounds 5]

Exports one model per option (224x224, 224x224 mirrored, 320x224, 320x224 mirrored, and the
two 224x224 ones and 320x224 mirrored with MobileNet v1 0.25 beside MobileNetV2,
`--extra-extractor`, which sees 224x224) with
MobileNetV2 from `mobilenet_v2_1.0_224_imagenet_no_top.h5` and a head of random weights, as
`train` exports them (`trainer/export.py`), then times each signature on the same batch of
real posters (bytes in, as the worker calls it), the options interleaved round by round so
that other load on the machine falls on all alike. Prints the median per option and its
ratio to 224x224 as JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.h5"
EXTRA = SHARED / "weights" / "mobilenet_v1_0.25_feature_vector"
OPTIONS = {"224x224": ((224, 224), False, None), "224x224+mirror": ((224, 224), True, None)}
OPTIONS |= {"320x224": ((320, 224), False, None), "320x224+mirror": ((320, 224), True, None)}
OPTIONS |= {
    "224x224+v1": ((224, 224), False, EXTRA),
    "224x224+mirror+v1": ((224, 224), True, EXTRA),
}
OPTIONS["320x224+mirror+v1"] = ((320, 224), True, EXTRA)  # v1 sees the input resized to 224x224


def export(name: str, out: Path) -> object:
    """Export one option's model and load its serving signature."""
    import tensorflow as tf

    from poster_genres.schemas.model import SIGNATURE, ModelMetadata
    from poster_genres.trainer.export import export_version
    from poster_genres.trainer.model import build_classifier, build_head, load_extractor

    size, mirror, extra = OPTIONS[name]
    extra_size = (224, 224) if extra else None
    extractor = load_extractor(
        str(WEIGHTS), size, mirror, str(extra) if extra else None, extra_size
    )
    head = build_head(1280 + (256 if extra else 0), 17, hidden=1024)
    classifier = build_classifier(extractor, head, size)
    metadata = ModelMetadata(
        labels=[f"g{j}" for j in range(17)],
        thresholds=[0.5] * 17,
        image_size=size,
        feature_extractor=str(WEIGHTS),
        created_at=datetime.now(UTC),
    )
    version = export_version(classifier, metadata, out / name)
    return tf.saved_model.load(str(version)).signatures[SIGNATURE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=Path, default=SHARED / "posters-dev" / "posters")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import tensorflow as tf

    from poster_genres.schemas.model import INPUT_NAME

    files = sorted(args.posters.glob("*.jpg"))[: args.batch]
    batch = tf.constant([f.read_bytes() for f in files])
    times: dict[str, list[float]] = {name: [] for name in OPTIONS}
    with tempfile.TemporaryDirectory() as tmp:
        serving = {name: export(name, Path(tmp)) for name in OPTIONS}
        for name, serve in serving.items():
            serve(**{INPUT_NAME: batch})  # warm up: trace and allocate
        for _ in range(args.rounds):
            for name, serve in serving.items():
                started = time.perf_counter()
                serve(**{INPUT_NAME: batch})
                times[name].append(time.perf_counter() - started)
    base = float(np.median(times["224x224"]))
    result = {
        "batch": len(files),
        "rounds": args.rounds,
        "seconds_per_batch": {n: round(float(np.median(t)), 4) for n, t in times.items()},
        "ratio_to_224x224": {n: round(float(np.median(t)) / base, 2) for n, t in times.items()},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
