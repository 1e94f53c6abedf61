"""RSS of a process that runs a model's signature on batches of many sizes (prints figures).

    python bench/batch_sizes.py [--model mobilenet|tiny] [--model-dir DIR]
                                [--sizes 1,3,5,...] [--padded]

Loads the bench's model (`bench/models.py`, built under `--model-dir` if missing), runs
its signature twice on a full batch of 32 of the bench's w342 posters, then twice on each
batch size of `--sizes` in turn, and prints the process's RSS after each size with the
time of the first and the second call. TensorFlow's oneDNN kernels keep what they
prepared for each batch size, so the RSS grows with every size not seen before. With
`--padded` every batch is first padded as the worker's classifier pads it
(`worker.classifier.padded_size`), so the signature sees only those sizes. The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

from bench import models
from bench.fetch_cpu import CACHE
from bench.poster_server import PosterServer
from poster_genres.worker.classifier import padded_size

DEFAULT_SIZES = "1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31"


def rss_mb() -> float:
    """This process's resident set, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", choices=models.MODELS, default="mobilenet")
    p.add_argument("--model-dir", type=Path, help="the bench's models, built there if missing")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="batch sizes, in the order run")
    p.add_argument("--padded", action="store_true", help="pad each batch as the worker does")
    args = p.parse_args(argv)

    import tensorflow as tf

    from poster_genres.schemas.model import INPUT_NAME, OUTPUT_NAME

    poster_cache = CACHE / "bench-posters-v1"
    server = PosterServer(poster_cache, 48)  # builds the posters once, if missing
    try:
        server.wait_ready()
    finally:
        server.stop()
    posters = [path.read_bytes() for path in sorted((poster_cache / "w342").glob("*.jpg"))]
    root = args.model_dir or Path(tempfile.mkdtemp(prefix="bench-batch-sizes-"))
    signature = models.serving_signature(models.prepared(args.model, root / args.model))

    def call(count: int) -> float:
        size = padded_size(count) if args.padded else count
        batch = tf.constant([posters[i % len(posters)] for i in range(size)], dtype=tf.string)
        begun = time.perf_counter()
        signature(**{INPUT_NAME: batch})[OUTPUT_NAME].numpy()
        return (time.perf_counter() - begun) * 1000

    call(32), call(32)
    start = rss_mb()
    print(f"after a batch of 32: {start:.0f} MB", flush=True)
    rows = []
    for count in (int(s) for s in args.sizes.split(",")):
        first, second = call(count), call(count)
        rows.append({"size": count, "first_ms": round(first), "second_ms": round(second)})
        rows[-1]["rss_mb"] = round(rss_mb())
        print(
            f"batch of {count:3d}: first {first:5.0f} ms, second {second:5.0f} ms, "
            f"RSS {rows[-1]['rss_mb']} MB",
            flush=True,
        )
    figures = {"model": args.model, "padded": args.padded, "rss_after_32_mb": round(start)}
    figures |= {"rss_end_mb": rows[-1]["rss_mb"], "growth_mb": round(rows[-1]["rss_mb"] - start)}
    print(json.dumps({"batch_sizes": figures, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
