"""Worker benchmark: the real `genre-worker` process against the bare model, in one run.

    python bench/worker.py [--events 1200] [--batch-size 32] [--latency-s 30]
                           [--variant NAME=SRC_DIR[,KEY=VALUE...]] [--profile DIR]

What it starts, all on 127.0.0.1:
  - the embedded Tansu broker (demo.broker) with fresh topics per worker variant;
  - a lean poster server (`--serve` mode of this file, its own process): asyncio
    protocol, keep-alive, pre-built responses; `/movie/<id>` answers a TMDB-like page
    with an og:image, `/t/p/w500/<id>.jpg` one of `--posters` distinct 500x750 JPEGs
    (noise + gradients, 50-150 KB, like real w500 posters);
  - a MobileNetV2-sized model honouring the model contract (MobileNetV2 1.0/224,
    weights=None, pooling avg + Dense(20, sigmoid), random weights), exported with
    trainer.export.export_version;
  - `python -m worker` (the real process, env-configured like tests/conftest.py).

Phases, in this order, so both sides share the same (noisy) machine state:
  1. bare model A: the same SavedModel signature on the same poster bytes, in batches of
     the worker's batch size (this process, TF default threading unless --model-threads);
  2. per worker variant: start -> /readyz 200 (time to ready), warm-up burst, saturation
     burst of --events events (events/s from the output record timestamps, the pipeline
     fill excluded), then a steady rate of half that throughput for --latency-s seconds
     (end-to-end latency = output record timestamp - input record timestamp), then
     SIGTERM; peak RSS = VmHWM of the worker process;
  3. bare model B (same as A).
model_eps and throughput_ratio use the bare model measured just before and just after each
saturation burst (`--paired-model-s`, the worker idle meanwhile), because the machine's
other load changes from minute to minute; A and B are reported too (throughput_ratio_ab).
worker CPU ms per event vs. the bare model's (cpu_ratio) is a second, load-robust view.

The poster server's CPU time is reported (share of one core during saturation) to show
it is not the bottleneck; `--server-check` measures its standalone capacity too.

A variant runs the worker from another checkout (a git worktree with a patch applied)
and/or with extra environment: `--variant base=. --variant linger=../other-checkout,BATCH_LINGER_MS=5`.
The last line printed is one JSON object with worker_eps, model_eps, throughput_ratio,
p50_ms, p99_ms, peak_rss_mb, ready_s (of the first variant) and every variant's figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.worker")

N_LABELS = 20
IMAGE_SIZE = (224, 224)
POSTER_SIZE = (500, 750)  # width, height of a TMDB w500 poster


# -- posters ------------------------------------------------------------------------------


def make_posters(n: int, seed: int = 42) -> list[bytes]:
    """`n` distinct 500x750 JPEGs: gradients + smooth noise blobs + grain, ~50-150 KB each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = POSTER_SIZE
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    posters = []
    for i in range(n):
        base = rng.uniform(30, 220, 3)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)[..., None]
        image = base + ramp * rng.uniform(-120, 120, 3)
        # smooth blobs: coarse noise upsampled (what the eye sees as shapes and shading)
        coarse = rng.uniform(-70, 70, (int(rng.integers(6, 20)), int(rng.integers(4, 14)), 3)).astype(np.float32)
        blobs = np.asarray(
            Image.fromarray(((coarse + 128).clip(0, 255)).astype(np.uint8)).resize((width, height), Image.BICUBIC),
            np.float32,
        ) - 128
        image = image + blobs
        # grain: what makes real posters 50-150 KB rather than 10 KB
        grain = rng.normal(0, 1, (height, width, 1)).astype(np.float32) * rng.uniform(4, 9)
        image = (image + grain).clip(0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(rng.integers(80, 92)))
        posters.append(buffer.getvalue())
    return posters


# -- lean poster server (its own process) ---------------------------------------------------


PAGE = (
    '<!DOCTYPE html><html><head><title>Movie {id} - The Movie Database (TMDB)</title>'
    '<meta property="og:image" content="{url}"><meta property="og:title" content="Movie {id}">'
    '</head><body><h2><a>Movie {id}</a></h2><div class="poster">'
    '<img class="poster" src="{url}" alt="Movie {id}"></div></body></html>'
)


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def serve_posters(poster_dir: Path, port: int, delay_s: float = 0.0) -> None:
    """Answer pages and posters from memory over HTTP/1.1 keep-alive until killed.

    `delay_s` holds every answer back that long (an internet round trip), without
    holding up other connections.
    """
    posters = [p.read_bytes() for p in sorted(poster_dir.glob("*.jpg"))]
    images = [_response("200 OK", p, "image/jpeg") for p in posters]
    base = f"http://127.0.0.1:{port}"
    not_found = _response("404 Not Found", b"not found", "text/plain")
    movie = re.compile(rb"GET /movie/(\d+)[^ ]* HTTP")
    image = re.compile(rb"GET /t/p/w\d+/(\d+)\.jpg HTTP")  # any rendition: the same bytes
    pages: dict[bytes, bytes] = {}

    class Http(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                request, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                line = request.split(b"\r\n", 1)[0]
                if m := image.match(line):
                    out = images[int(m.group(1)) % len(images)]
                elif m := movie.match(line):
                    key = m.group(1)
                    out = pages.get(key)
                    if out is None:
                        tmdb_id = key.decode()
                        body = PAGE.format(id=tmdb_id, url=f"{base}/t/p/w500/{tmdb_id}.jpg").encode()
                        out = pages[key] = _response("200 OK", body, "text/html; charset=utf-8")
                else:
                    out = not_found
                if delay_s > 0:
                    asyncio.get_running_loop().call_later(delay_s, self._write, out)
                else:
                    self.transport.write(out)  # type: ignore[attr-defined]

        def _write(self, out: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(out)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Http, "127.0.0.1", port, backlog=512)
        print("serving", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class PosterServer:
    """The `--serve` process; `cpu_s()` is its user+system CPU time so far."""

    def __init__(self, poster_dir: Path, delay_ms: float = 0.0):
        from demo.broker import free_port

        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(poster_dir), "--port", str(self.port),
             "--delay-ms", str(delay_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "serving":
            raise RuntimeError("the poster server did not start")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        return proc_cpu_s(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def server_capacity(base_url: str, seconds: float = 3.0, concurrency: int = 16) -> float:
    """Page + poster fetches per second the server sustains for an httpx client (client-bound)."""
    import httpx

    async def run() -> int:
        done = 0
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:

            async def one(i: int) -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    await client.get(f"{base_url}/movie/{i}?language=en-US")
                    await client.get(f"{base_url}/t/p/w500/{i}.jpg")
                    done += 1

            await asyncio.gather(*(one(i) for i in range(concurrency)))
        return done

    return asyncio.run(run()) / seconds


# -- process figures --------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- the model --------------------------------------------------------------------------------


def build_model(model_dir: Path) -> Path:
    """MobileNetV2 1.0/224 (random weights) + Dense(20, sigmoid), exported with the trainer's code."""
    import tf_keras

    from schemas.model import ModelMetadata
    from trainer.export import export_version

    backbone = tf_keras.applications.MobileNetV2(
        weights=None, include_top=False, pooling="avg", input_shape=(*IMAGE_SIZE, 3)
    )
    model = tf_keras.Sequential([backbone, tf_keras.layers.Dense(N_LABELS, activation="sigmoid")])
    metadata = ModelMetadata(
        labels=[f"Genre{i:02d}" for i in range(N_LABELS)],
        thresholds=[0.5] * N_LABELS,
        image_size=IMAGE_SIZE,
        feature_extractor="bench/mobilenet_v2_1.00_224-random",
        created_at=datetime.now(UTC),
    )
    return export_version(model, metadata, model_dir)


_LOADED: dict[Path, Any] = {}


def bare_model(version_dir: Path, posters: list[bytes], batch_size: int, seconds: float) -> dict[str, float]:
    """Events/s of the signature alone on the posters, in full batches; and one batch's time."""
    import tensorflow as tf

    from schemas.model import INPUT_NAME, OUTPUT_NAME, SIGNATURE

    if version_dir not in _LOADED:
        _LOADED[version_dir] = tf.saved_model.load(str(version_dir))
    signature = _LOADED[version_dir].signatures[SIGNATURE]
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


# -- Kafka side ----------------------------------------------------------------------------


class OutputReader(threading.Thread):
    """Reads the output and dead-letter topics from the start; `seen` maps source_event_id -> timestamps."""

    def __init__(self, bootstrap: str, topics: list[str]):
        super().__init__(name="output-reader", daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
        )
        parts = []
        for topic in topics:
            for p in sorted(self.consumer.partitions_for_topic(topic) or {0}):
                parts.append(TopicPartition(topic, p))
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning()
        self.output_topic = topics[0]
        self.seen: dict[str, tuple[int, str]] = {}  # source_event_id -> (record timestamp ms, classified_at)
        self.dead: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for tp, records in self.consumer.poll(timeout_ms=200).items():
                with self.lock:
                    for r in records:
                        value = json.loads(r.value)
                        if tp.topic == self.output_topic:
                            self.seen[value["source_event_id"]] = (r.timestamp, value["classified_at"])
                        else:
                            self.dead.append(value)
                    self.changed.notify_all()
        self.consumer.close()

    def wait_for(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                missing = sum(1 for i in ids if i not in self.seen)
                if missing == 0:
                    return True
                if len(self.dead) and missing <= len(self.dead):
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def event_value(event_id: str, tmdb_id: int) -> bytes:
    return json.dumps({"tmdb_id": tmdb_id, "event_id": event_id, "title": f"Movie {tmdb_id}"}).encode()


# -- one worker variant ------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    src: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, rest = text.partition("=")
        src, *pairs = rest.split(",") if rest else (".",)
        env = dict(pair.split("=", 1) for pair in pairs if pair)
        return cls(name, Path(src or ".").resolve(), env)


BATCH_LINE = re.compile(
    r"batch of (\d+): .*wait for posters ([\d.]+) s, classify ([\d.]+) s, publish ([\d.]+) s"
)


def run_variant(
    variant: Variant,
    args: argparse.Namespace,
    broker: Any,
    server: PosterServer,
    model_dir: Path,
    workdir: Path,
    measure_model: Any = None,
) -> dict[str, Any]:
    from kafka import KafkaProducer

    from demo.broker import create_topics, free_port

    suffix = uuid.uuid4().hex[:8]
    t_in, t_out, t_dlq, group = f"bench.new.{suffix}", f"bench.genres.{suffix}", f"bench.dlq.{suffix}", f"g-{suffix}"
    create_topics(broker.bootstrap_servers, {t_in: args.partitions, t_out: 1, t_dlq: 1})
    reader = OutputReader(broker.bootstrap_servers, [t_out, t_dlq])
    reader.start()
    http_port = free_port()
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(variant.src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        INPUT_TOPIC=t_in,
        OUTPUT_TOPIC=t_out,
        DLQ_TOPIC=t_dlq,
        GROUP_ID=group,
        MODEL_DIR=str(model_dir),
        TMDB_BASE_URL=server.base_url,
        POSTER_HOSTS=f"127.0.0.1:{server.port}",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        SESSION_TIMEOUT_MS="6000",
        HEARTBEAT_INTERVAL_MS="1000",
        BATCH_SIZE=str(args.batch_size),
        SITE_RATE_LIMIT="0",  # a loopback server: measure the worker, not the politeness limit
        IMAGE_RATE_LIMIT="0",
    )
    env.update({k: v for k, v in variant.env.items() if k != "PYTHONPATH"})
    if "PYTHONPATH" in variant.env:  # extra paths go after the variant's checkout
        env["PYTHONPATH"] = os.pathsep.join([str(variant.src), variant.env["PYTHONPATH"]])
    log_path = workdir / f"worker-{variant.name}-{suffix}.log"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks=1, linger_ms=0)
    result: dict[str, Any] = {"variant": variant.name, "src": str(variant.src), "env": variant.env}
    with open(log_path, "w") as log_file:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "worker"], env=env, cwd=variant.src, stdout=log_file, stderr=subprocess.STDOUT
        )
        rss_peak_sampled = 0
        try:
            # -- time to ready
            ready_s = None
            while time.monotonic() - started < 120:
                if process.poll() is not None:
                    raise RuntimeError(f"worker {variant.name} exited with {process.returncode}: see {log_path}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as answer:
                        if answer.status == 200:
                            ready_s = time.monotonic() - started
                            break
                except OSError:
                    pass
                time.sleep(0.05)
            if ready_s is None:
                raise RuntimeError(f"worker {variant.name} not ready in 120 s: see {log_path}")
            result["ready_s"] = round(ready_s, 2)
            print(f"[{variant.name}] ready in {ready_s:.2f} s", flush=True)

            counter = iter(range(10**9))

            def send(prefix: str, n: int, paced_eps: float | None = None) -> dict[str, int]:
                ids: dict[str, int] = {}
                begun = time.monotonic()
                for k in range(n):
                    if paced_eps:
                        due = begun + k / paced_eps
                        if (pause := due - time.monotonic()) > 0:
                            time.sleep(pause)
                    i = next(counter)
                    event_id = f"{prefix}-{i}"
                    ts = int(time.time() * 1000)
                    ids[event_id] = ts
                    producer.send(t_in, key=str(i + 1).encode(), value=event_value(event_id, i + 1), timestamp_ms=ts)
                producer.flush()
                return ids

            # -- warm-up: the first batches of a fresh process pay one-off costs
            warm = send("warm", 3 * args.batch_size)
            if not reader.wait_for(list(warm), 120):
                raise RuntimeError(f"warm-up did not come through ({len(reader.dead)} dead letters): see {log_path}")
            first_out = min(reader.seen[i][0] for i in warm)
            result["warmup_first_output_ms"] = first_out - min(warm.values())

            # -- the bare model just before and after the saturation burst (the worker idles meanwhile),
            # so the ratio compares the two under the same load from the rest of the machine
            paired = [measure_model()] if measure_model else []
            # -- saturation
            profiler = start_profiler(args, process.pid, workdir, variant.name)
            cpu0 = proc_cpu_s(process.pid)
            scpu0 = server.cpu_s()
            wall0 = time.monotonic()
            burst = send("sat", args.events)
            if not reader.wait_for(list(burst), 600):
                raise RuntimeError(f"saturation did not come through ({len(reader.dead)} dead letters): see {log_path}")
            wall = time.monotonic() - wall0
            cpu = proc_cpu_s(process.pid) - cpu0
            scpu = server.cpu_s() - scpu0
            stop_profiler(profiler)
            outs = sorted(reader.seen[i][0] for i in burst)
            # steady state: from the end of the first batch to the last output
            skip = min(args.batch_size, len(outs) - 1)
            span_s = (outs[-1] - outs[skip - 1]) / 1000
            eps = (len(outs) - skip) / span_s if span_s > 0 else float("nan")
            result.update(
                worker_eps=round(eps, 2),
                worker_eps_wall=round(len(outs) / ((outs[-1] - min(burst.values())) / 1000), 2),
                worker_cpu_cores=round(cpu / wall, 2),
                worker_cpu_ms_per_event=round(1000 * cpu / len(outs), 2),
                server_cpu_cores=round(scpu / wall, 3),
            )
            rss_peak_sampled = max(rss_peak_sampled, proc_status_kb(process.pid, "VmRSS"))
            if measure_model:
                paired.append(measure_model())
                result["paired_model_eps"] = round(statistics.mean(m["eps"] for m in paired), 2)
                result["paired_model_cpu_ms_per_event"] = round(
                    statistics.mean(m["cpu_ms_per_event"] for m in paired), 2
                )
                result["paired_ratio"] = round(eps / result["paired_model_eps"], 3)
            print(
                f"[{variant.name}] saturation: {eps:.1f} events/s (wall {result['worker_eps_wall']}), "
                f"worker {result['worker_cpu_cores']} cores ({result['worker_cpu_ms_per_event']} CPU ms/event), poster server {result['server_cpu_cores']} cores",
                flush=True,
            )

            # -- steady rate at half the saturation throughput
            rate = args.rate or eps / 2
            n = max(1, int(rate * args.latency_s))
            paced = send("lat", n, paced_eps=rate)
            if not reader.wait_for(list(paced), 120):
                raise RuntimeError(f"latency phase did not come through: see {log_path}")
            lat = [reader.seen[i][0] - ts for i, ts in paced.items()]
            lat_classified = [
                datetime.fromisoformat(reader.seen[i][1]).timestamp() * 1000 - ts for i, ts in paced.items()
            ]
            result.update(
                rate_eps=round(rate, 2),
                p50_ms=round(percentile(lat, 50), 1),
                p95_ms=round(percentile(lat, 95), 1),
                p99_ms=round(percentile(lat, 99), 1),
                max_ms=round(max(lat), 1),
                p99_classified_ms=round(percentile(lat_classified, 99), 1),
            )
            print(
                f"[{variant.name}] at {rate:.1f} events/s: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
                f"p99 {result['p99_ms']} ms (max {result['max_ms']} ms)",
                flush=True,
            )
            result["peak_rss_mb"] = round(proc_status_kb(process.pid, "VmHWM") / 1024, 1)
            result["dead_letters"] = len(reader.dead)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            producer.close()
            reader.stop()
    result["batches"] = batch_breakdown(log_path)
    return result


def batch_breakdown(log_path: Path) -> dict[str, Any]:
    """Median seconds per batch from the worker's own batch log lines (all phases)."""
    rows = [tuple(map(float, m.groups())) for m in map(BATCH_LINE.search, log_path.read_text().splitlines()) if m]
    if not rows:
        return {}
    full = [r for r in rows if r[0] >= max(r[0] for r in rows)]
    return {
        "count": len(rows),
        "mean_size": round(statistics.mean(r[0] for r in rows), 1),
        "full_batches": len(full),
        "full_wait_posters_ms": round(statistics.median(r[1] for r in full) * 1000, 1),
        "full_classify_ms": round(statistics.median(r[2] for r in full) * 1000, 1),
        "full_publish_ms": round(statistics.median(r[3] for r in full) * 1000, 1),
    }


def start_profiler(args: argparse.Namespace, pid: int, workdir: Path, name: str) -> subprocess.Popen[bytes] | None:
    if not args.profile:
        return None
    out = Path(args.profile) / f"worker-{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(spy), "record", "-p", str(pid), "-r", "50", "-f", "raw", "-o", str(out), "--threads",
         *(["--native"] if args.native else []), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=30)


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1200, help="events in the saturation burst")
    p.add_argument("--batch-size", type=int, default=32, help="BATCH_SIZE of the worker and the bare model's batch")
    p.add_argument("--latency-s", type=float, default=30.0, help="seconds of the half-rate phase")
    p.add_argument("--rate", type=float, default=None, help="events/s of the latency phase (default: half of saturation)")
    p.add_argument("--model-s", type=float, default=12.0, help="seconds of each bare-model measurement")
    p.add_argument("--paired-model-s", type=float, default=6.0,
                   help="seconds of the bare-model measurements just before and after each saturation burst")
    p.add_argument("--model-threads", default=None, help="INTRA,INTER for the bare model (default: TF's)")
    p.add_argument("--posters", type=int, default=48, help="distinct posters served")
    p.add_argument("--partitions", type=int, default=2, help="partitions of the input topic")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=SRC[,K=V...]",
                   help="a worker to run: its source checkout and extra env (repeatable; default: this checkout)")
    p.add_argument("--model-dir", type=Path, default=None, help="reuse an exported model folder")
    p.add_argument("--profile", default=None, metavar="DIR", help="py-spy record (raw) each worker during saturation")
    p.add_argument("--native", action="store_true", help="py-spy --native")
    p.add_argument("--delay-ms", type=float, default=0.0,
                   help="the poster server holds each answer this long (simulated internet round trip)")
    p.add_argument("--rounds", type=int, default=1, help="run the variants in turn this many times (A B A B ...)")
    p.add_argument("--server-check", action="store_true", help="also measure the poster server's capacity")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    p.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve is not None:
        serve_posters(args.serve, args.port, args.delay_ms / 1000)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    variants = [Variant.parse(v) for v in args.variant] or [Variant("main", ROOT)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    print(f"work folder {workdir}; {os.cpu_count()} cores", flush=True)

    posters = make_posters(args.posters)
    poster_dir = workdir / "posters"
    poster_dir.mkdir()
    for i, content in enumerate(posters):
        (poster_dir / f"{i:03d}.jpg").write_bytes(content)
    sizes = [len(p) for p in posters]
    print(f"{len(posters)} posters {POSTER_SIZE[0]}x{POSTER_SIZE[1]}, "
          f"{min(sizes) // 1024}-{max(sizes) // 1024} KB (median {statistics.median(sizes) / 1024:.0f} KB)", flush=True)

    import tensorflow as tf

    if args.model_threads:
        intra, inter = (int(v) for v in args.model_threads.split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from demo.broker import EmbeddedBroker

    begun = time.monotonic()
    if args.model_dir:
        from schemas.model import complete_versions

        model_root = args.model_dir
        version_dir = model_root / str(complete_versions(model_root)[-1])
    else:
        model_root = workdir / "models"
        version_dir = build_model(model_root)
    print(f"model {version_dir} ready in {time.monotonic() - begun:.1f} s", flush=True)

    server = PosterServer(poster_dir, args.delay_ms)
    results: dict[str, Any] = {"cores": os.cpu_count(), "batch_size": args.batch_size, "events": args.events}
    try:
        if args.server_check:
            cap = server_capacity(server.base_url)
            results["server_capacity_eps"] = round(cap, 1)
            print(f"poster server: {cap:.0f} page+poster fetches/s for one httpx client (client-bound)", flush=True)
        model_a = bare_model(version_dir, posters, args.batch_size, args.model_s)
        print(f"bare model A: {model_a['eps']:.1f} events/s, one batch of {args.batch_size}: "
              f"{model_a['batch_ms']:.0f} ms, {model_a['cpu_ms_per_event']:.1f} CPU ms/event", flush=True)
        runs = []
        with EmbeddedBroker() as broker:
            for round_ in range(args.rounds):
                for variant in variants:
                    run = run_variant(
                        variant, args, broker, server, model_root, workdir,
                        lambda: bare_model(version_dir, posters, args.batch_size, args.paired_model_s),
                    )
                    run["round"] = round_
                    runs.append(run)
        model_b = bare_model(version_dir, posters, args.batch_size, args.model_s)
        print(f"bare model B: {model_b['eps']:.1f} events/s, one batch of {args.batch_size}: "
              f"{model_b['batch_ms']:.0f} ms, {model_b['cpu_ms_per_event']:.1f} CPU ms/event", flush=True)
    finally:
        server.stop()
    model_eps = (model_a["eps"] + model_b["eps"]) / 2
    batch_ms = (model_a["batch_ms"] + model_b["batch_ms"]) / 2
    model_cpu = (model_a["cpu_ms_per_event"] + model_b["cpu_ms_per_event"]) / 2
    results.update(
        model_eps=round(model_eps, 2),
        model_cpu_ms_per_event=round(model_cpu, 2),
        model_eps_a=round(model_a["eps"], 2),
        model_eps_b=round(model_b["eps"], 2),
        model_batch_ms=round(batch_ms, 1),
        p99_target_ms=round(3 * batch_ms, 1),
    )
    for run in runs:
        # the paired bare-model figure (measured minutes apart from nothing) is the fairer one
        run["throughput_ratio_ab"] = round(run["worker_eps"] / model_eps, 3)
        run["throughput_ratio"] = run.get("paired_ratio", run["throughput_ratio_ab"])
        run["p99_over_batch"] = round(run["p99_ms"] / batch_ms, 2)
        # less sensitive to other processes on the machine than events/s: CPU cost per event
        run["cpu_ratio"] = round(
            run.get("paired_model_cpu_ms_per_event", model_cpu) / run["worker_cpu_ms_per_event"], 3
        )
        print(
            f"[{run['variant']}] worker {run['worker_eps']} / model {run.get('paired_model_eps', model_eps):.1f} events/s = "
            f"{run['throughput_ratio']:.3f} (CPU per event: model/worker = {run['cpu_ratio']}); p99 {run['p99_ms']} ms = {run['p99_over_batch']} x one batch; "
            f"peak RSS {run['peak_rss_mb']} MB; ready {run['ready_s']} s; batches {run['batches']}",
            flush=True,
        )
    first = runs[0]
    if args.rounds > 1:  # per variant: the mean over rounds
        for variant in variants:
            mine = [r for r in runs if r["variant"] == variant.name]
            keys = ("worker_eps", "paired_model_eps", "throughput_ratio", "cpu_ratio", "p50_ms", "p99_ms", "peak_rss_mb", "ready_s")
            mean = {k: round(statistics.mean(r[k] for r in mine), 3) for k in keys if all(k in r for r in mine)}
            print(f"[{variant.name}] mean of {len(mine)} rounds: {mean}", flush=True)
            results.setdefault("means", {})[variant.name] = mean
        first = {**runs[0], **results["means"][variants[0].name]}
    summary = {
        "worker_eps": first["worker_eps"],
        "model_eps": first.get("paired_model_eps", round(model_eps, 2)),
        "throughput_ratio": first["throughput_ratio"],
        "p50_ms": first["p50_ms"],
        "p99_ms": first["p99_ms"],
        "peak_rss_mb": first["peak_rss_mb"],
        "ready_s": first["ready_s"],
        **{k: v for k, v in results.items() if k != "model_eps"},
        "model_eps_ab": results["model_eps"],
        "variants": runs,
    }
    if not args.keep:
        import shutil

        shutil.rmtree(workdir / "posters", ignore_errors=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
