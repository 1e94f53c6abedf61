"""CPU per event of the worker's Kafka-side work that needs no broker (prints figures; not a test).

    python bench/kafka_cpu.py [--batch 32] [--reps 200]

In batches of `--batch` records: reading a fetched record batch (kafka-python's
`MemoryRecords`, its CRC32C checked as the consumer does), decoding and validating each
`movies.new` value (`schemas.events.decode_new_movie`), building and serialising each
`movies.genres` event (20 labels, as `worker.results` does), and building the produce
batch (kafka-python's `MemoryRecordsBuilder`, its CRC32C computed). Network I/O, the
group protocol and the acknowledgements are not in it: measure those in the worker
(`bench/worker.py`, stage `kafka`). It prints whether kafka-python found the `crc32c`
C extension: without it the checksums are computed in pure Python.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the project's packages first; this folder's modules (trainer.py, worker.py) must not shadow them
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

from kafka.record import util as record_util
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder

from poster_genres.schemas.events import MovieGenres, decode_new_movie

LABELS = [f"Genre{i}" for i in range(20)]
POSTER = "https://image.tmdb.org/t/p/w342/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"


def new_movie(i: int) -> bytes:
    event = {"tmdb_id": 600 + i, "event_id": str(uuid.uuid4()), "title": f"Movie {i}"}
    return json.dumps({**event, "occurred_at": "2026-11-28T09:30:00Z"}).encode()


def output(i: int) -> bytes:
    event = MovieGenres(
        event_id=str(uuid.uuid4()),
        source_event_id=str(uuid.uuid4()),
        tmdb_id=600 + i,
        title=f"Movie {i}",
        genres=LABELS[:3],
        scores={label: 0.123456789 for label in LABELS},
        model_version=3,
        poster_url=POSTER,
        classified_at=datetime.now(UTC),
    )
    return event.model_dump_json().encode()


def record_batch(values: list[bytes]) -> bytes:
    builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    for i, value in enumerate(values):
        builder.append(
            timestamp=1_700_000_000_000 + i, key=str(i).encode(), value=value, headers=[]
        )
    builder.close()
    return bytes(builder.buffer())


def read_batch(buffer: bytes) -> int:
    records, n = MemoryRecords(buffer), 0
    while records.has_next():
        batch = records.next_batch()
        if not batch.validate_crc():
            raise RuntimeError("CRC mismatch")
        n += sum(1 for _ in batch)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=200)
    args = p.parse_args(argv)
    n = args.batch
    inputs = [new_movie(i) for i in range(n)]
    outputs = [output(i) for i in range(n)]
    fetched = record_batch(inputs)
    steps: dict[str, Callable[[], object]] = {
        "consume_batch_and_crc": lambda: read_batch(fetched),
        "decode_new_movie": lambda: [decode_new_movie(v) for v in inputs],
        "build_and_serialise_output": lambda: [output(i) for i in range(n)],
        "produce_batch_and_crc": lambda: record_batch(outputs),
    }
    figures: dict[str, float] = {}
    for name, step in steps.items():
        step()
        begun = time.process_time()
        for _ in range(args.reps):
            step()
        figures[name] = round((time.process_time() - begun) * 1000 / args.reps / n, 4)
    figures["total"] = round(sum(figures.values()), 4)
    c_crc = getattr(record_util, "crc32c_c", None) is not None
    print(f"crc32c C extension: {c_crc}; value bytes in {len(inputs[0])}, out {len(outputs[0])}")
    for name, ms in figures.items():
        print(f"  {name:28s} {ms:.4f} CPU ms/event")
    print(json.dumps({"kafka_cpu_ms_per_event": figures, "crc32c_c": c_crc}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
