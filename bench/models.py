"""The bench's two models, both honouring the model contract, and the bare-model measurement.

- `mobilenet`: MobileNetV2 1.0/224 (weights=None, random), pooling avg + Dense(20,
  sigmoid): the CPU flavour's real cost.
- `tiny`: mean colour + Dense(20, sigmoid), as the tests' tiny model, but at the same
  224x224 input: the signature still decodes and resizes every poster on the CPU, the
  network costs nothing. It stands in for a GPU, where the model is (nearly) free and
  the rest of the worker sets the pace; its bare CPU per event is also the decode and
  resize cost inside MobileNetV2's signature, which the CPU split uses.
"""

from __future__ import annotations

import signal
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

N_LABELS = 20
IMAGE_SIZE = (224, 224)
MODELS = ("tiny", "mobilenet")


def prepared(kind: str, root: Path) -> Path:
    """The newest complete version of model `kind` under `root`, built there if there is none."""
    from poster_genres.schemas.model import complete_versions

    versions = complete_versions(root) if root.is_dir() else []
    if versions:
        return root / str(versions[-1])
    begun = time.monotonic()
    version_dir = build(kind, root)
    print(f"model {kind}: built in {time.monotonic() - begun:.1f} s", flush=True)
    return version_dir


def build(kind: str, model_dir: Path) -> Path:
    """Export model `kind` under `model_dir` with the trainer's exporter; its version folder."""
    import tf_keras

    from poster_genres.schemas.model import ModelMetadata
    from poster_genres.trainer.export import export_version

    if kind == "mobilenet":
        backbone = tf_keras.applications.MobileNetV2(
            weights=None, include_top=False, pooling="avg", input_shape=(*IMAGE_SIZE, 3)
        )
        model = tf_keras.Sequential(
            [backbone, tf_keras.layers.Dense(N_LABELS, activation="sigmoid")]
        )
        handle = "bench/mobilenet_v2_1.00_224-random"
    elif kind == "tiny":
        model = tf_keras.Sequential(
            [
                tf_keras.layers.Input((*IMAGE_SIZE, 3)),
                tf_keras.layers.GlobalAveragePooling2D(),
                tf_keras.layers.Dense(N_LABELS, activation="sigmoid"),
            ]
        )
        handle = "bench/tiny-mean-colour-224"
    else:
        raise ValueError(f"unknown model {kind!r}: one of {', '.join(MODELS)}")
    metadata = ModelMetadata(
        labels=[f"Genre{i:02d}" for i in range(N_LABELS)],
        thresholds=[0.5] * N_LABELS,
        image_size=IMAGE_SIZE,
        feature_extractor=handle,
        created_at=datetime.now(UTC),
    )
    return export_version(model, metadata, model_dir)


_LOADED: dict[Path, Any] = {}


def serving_signature(version_dir: Path) -> Any:
    """The serving signature of a model version, loaded once per process."""
    import tensorflow as tf

    from poster_genres.schemas.model import SIGNATURE

    if version_dir not in _LOADED:
        _LOADED[version_dir] = tf.saved_model.load(str(version_dir))
    return _LOADED[version_dir].signatures[SIGNATURE]


def bare(
    version_dir: Path, posters: list[bytes], batch_size: int, seconds: float
) -> dict[str, float]:
    """Events/s and CPU ms per event of the signature alone on the posters, in full batches; one batch's time."""
    import tensorflow as tf

    from poster_genres.schemas.model import INPUT_NAME, OUTPUT_NAME

    signature = serving_signature(version_dir)
    batches = [
        [posters[(i * batch_size + j) % len(posters)] for j in range(batch_size)]
        for i in range(max(1, len(posters) // batch_size + 1))
    ]

    def call(batch: list[bytes]) -> None:
        signature(**{INPUT_NAME: tf.constant(batch, dtype=tf.string)})[OUTPUT_NAME].numpy()

    for batch in batches[:2]:
        call(batch)  # warm-up
    times = []
    cpu0 = time.process_time()
    begun = time.perf_counter()
    i = 0
    while time.perf_counter() - begun < seconds or len(times) < 5:
        t0 = time.perf_counter()
        call(batches[i % len(batches)])
        times.append(time.perf_counter() - t0)
        i += 1
    cpu = time.process_time() - cpu0
    return {
        "eps": batch_size * len(times) / sum(times),
        "cpu_ms_per_event": 1000 * cpu / (batch_size * len(times)),
        "batch_ms": statistics.median(times) * 1000,
        "batches": len(times),
    }


def busy(version_dir: Path, poster_dir: Path, batch_size: int = 32) -> None:
    """Run the signature on full batches of `poster_dir`'s JPEGs until SIGTERM: a neighbour.

    Prints `ready` once the model is loaded and warm. `bench/fetch_cpu.py --beside-model`
    stops and continues this process (SIGSTOP / SIGCONT) to alternate its rounds.
    """
    import tensorflow as tf

    from poster_genres.schemas.model import INPUT_NAME, OUTPUT_NAME

    signature = serving_signature(version_dir)
    posters = [path.read_bytes() for path in sorted(poster_dir.glob("*.jpg"))]
    batch = tf.constant([posters[i % len(posters)] for i in range(batch_size)], dtype=tf.string)
    signature(**{INPUT_NAME: batch})[OUTPUT_NAME].numpy()
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.clear())
    print("ready", flush=True)
    while running:
        signature(**{INPUT_NAME: batch})[OUTPUT_NAME].numpy()


if __name__ == "__main__":  # python -m bench.models busy VERSION_DIR POSTER_DIR
    if len(sys.argv) != 4 or sys.argv[1] != "busy":
        raise SystemExit("usage: python -m bench.models busy VERSION_DIR POSTER_DIR")
    busy(Path(sys.argv[2]), Path(sys.argv[3]))
