"""Worker benchmark: the real `genre-worker` process against the bare model, in one run.

    python bench/worker.py [--runs tiny,mobilenet,mobilenet@150] [--events 1200] [--latency-s 30]
                           [--pages tmdb|site|small] [--variant NAME=SRC_DIR[,KEY=VALUE...]]
    python bench/worker.py --model tiny --rtt-ms 50 ...     (shortcut for --runs tiny@50)

A variant's BENCH_WORKERS=N (not passed on) runs N worker processes in one consumer group;
CPU and peak RSS are then summed over them and their fetch processes (the py-spy CPU split
samples the first worker process only).

What it starts, all on 127.0.0.1:
  - the embedded Tansu broker (demo.broker) with fresh topics per run;
  - a poster server (bench/poster_server.py, its own process, everything pre-built):
    TMDB-shaped 150-300 KB movie pages with the slug redirect and the poster in og:image
    (w780), posters in every TMDB rendition at real sizes, keep-alive, and a simulated
    round trip per request (`@RTT` of a run); `--pages small` is a lean ~400-byte page;
  - the models of the runs (bench/models.py): `mobilenet` (MobileNetV2-sized, the CPU
    flavour) and `tiny` (mean colour at 224x224: a GPU stand-in), exported with
    trainer.export.export_version;
  - `python -m poster_genres.worker` (the real process, env-configured like tests/conftest.py).

Per model, in order: bare model A (the same signature on the same poster bytes, batches of
the worker's batch size, in this process); per run of that model and worker variant:
start -> /readyz 200 (time to ready), warm-up burst, bare model, saturation burst of
--events events (events/s from the output record timestamps, the first batch excluded),
bare model again, a steady rate of half that throughput for --latency-s seconds
(end-to-end latency = output record timestamp - input record timestamp), SIGTERM, peak
RSS = VmHWM; then bare model B. `throughput_ratio` uses the bare model measured just
before and after the burst (the worker idle meanwhile), because the machine's other load
changes from minute to minute; A and B are reported too.

Also per run: TCP connections the poster server accepted per 1,000 posters (saturation,
half load), and the worker's CPU ms per event split by stage (bench/cpu_split.py: per-
thread CPU from /proc shared out by py-spy samples; the decode and resize inside the
signature is the tiny model's bare CPU per event).

The last line printed is one JSON object: `targets` (every figure the project sets a
target for), the first mobilenet run's worker_eps, model_eps, throughput_ratio, p50_ms,
p99_ms, peak_rss_mb, ready_s, and every run's figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import logging
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# the project's packages first; this folder's modules (trainer.py, worker.py) must not shadow them
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

from bench import models
from bench.cpu_split import STAGE_ORDER, CpuSplit, py_spy
from bench.outputs import OutputReader, event_value
from bench.poster_server import PosterServer, capacity
from bench.procfs import tree_cpu_s, tree_kb

log = logging.getLogger("bench.worker")

DEFAULT_RUNS = "tiny,mobilenet,mobilenet@150"
POSTER_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "movie-poster-genres"
    / "bench-posters-v1"
)
BATCH_LINE = re.compile(
    r"batch of (\d+): .*wait for posters ([\d.]+) s, classify ([\d.]+) s, publish ([\d.]+) s"
)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Variant:
    """A worker to run: its source checkout and extra environment."""

    name: str
    src: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, rest = text.partition("=")
        src, *pairs = rest.split(",") if rest else (".",)
        env = dict(pair.split("=", 1) for pair in pairs if pair)
        return cls(name, Path(src or ".").resolve(), env)


@dataclass(frozen=True)
class Scenario:
    """A model and a simulated round trip to the poster site."""

    model: str
    rtt_ms: float = 0.0

    @classmethod
    def parse_list(cls, text: str) -> list[Scenario]:
        out = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            model, _, rtt = item.partition("@")
            if model not in models.MODELS:
                raise SystemExit(
                    f"unknown model {model!r} in --runs: one of {', '.join(models.MODELS)}"
                )
            out.append(cls(model, float(rtt or 0)))
        return out

    @property
    def key(self) -> str:
        """As in the JSON keys: `mobilenet_rtt150`."""
        return self.model + (f"_rtt{self.rtt_ms:g}" if self.rtt_ms else "")

    @property
    def label(self) -> str:
        """As printed: `mobilenet@150ms`."""
        return self.model + (f"@{self.rtt_ms:g}ms" if self.rtt_ms else "")


# -- one worker run -----------------------------------------------------------------------


def worker_env(
    variant: Variant,
    args: argparse.Namespace,
    broker: Any,
    server: PosterServer,
    model_dir: Path,
    topics: tuple[str, str, str, str],
    http_port: int,
) -> dict[str, str]:
    t_in, t_out, t_dlq, group = topics
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(variant.src), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        INPUT_TOPIC=t_in,
        OUTPUT_TOPIC=t_out,
        DLQ_TOPIC=t_dlq,
        GROUP_ID=group,
        MODEL_DIR=str(model_dir),
        TMDB_BASE_URL=server.base_url,
        TMDB_IMAGE_BASE_URL=f"{server.base_url}/t/p/w500",  # where relative `/t/p/` paths go
        POSTER_HOSTS=f"127.0.0.1:{server.port}",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        SESSION_TIMEOUT_MS="6000",
        HEARTBEAT_INTERVAL_MS="1000",
        BATCH_SIZE=str(args.batch_size),
        SITE_RATE_LIMIT="0",  # a loopback server: measure the worker, not the politeness limit
        IMAGE_RATE_LIMIT="0",
    )
    env.update({k: v for k, v in variant.env.items() if k not in ("PYTHONPATH", "BENCH_WORKERS")})
    if "PYTHONPATH" in variant.env:  # extra paths go after the variant's checkout
        env["PYTHONPATH"] = os.pathsep.join([str(variant.src), variant.env["PYTHONPATH"]])
    return env


def wait_ready(
    process: subprocess.Popen[bytes], http_port: int, log_path: Path, timeout: float = 120
) -> float:
    """Seconds from start to /readyz 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}: see {log_path}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{http_port}/readyz", timeout=1
            ) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the worker was not ready in {timeout:.0f} s: see {log_path}")


def connection_figures(
    before: dict[str, Any], after: dict[str, Any], posters: int
) -> dict[str, Any]:
    """Connections accepted and requests answered by the poster server in one phase."""
    accepted = after["accepted"] - before["accepted"]
    requests = sum(after["requests"].values()) - sum(before["requests"].values())
    return {
        "posters": posters,
        "connections": accepted,
        "per_1000_posters": round(1000 * accepted / posters, 1),
        "requests_per_poster": round(requests / posters, 2),
        "peak_open": after["peak_open"],
    }


class WorkerRun:
    """The worker process(es) under load: topics, the producer and output reader, and the phases."""

    def __init__(
        self,
        variant: Variant,
        scenario: Scenario,
        args: argparse.Namespace,
        broker: Any,
        server: PosterServer,
        model_dir: Path,
        workdir: Path,
    ):
        from kafka import KafkaProducer

        from demo.broker import create_topics, free_port

        self.name = f"{variant.name}/{scenario.label}"
        self.args = args
        self.server = server
        suffix = uuid.uuid4().hex[:8]
        topics = (
            f"bench.new.{suffix}",
            f"bench.genres.{suffix}",
            f"bench.dlq.{suffix}",
            f"g-{suffix}",
        )
        self.input_topic = topics[0]
        create_topics(
            broker.bootstrap_servers, {topics[0]: args.partitions, topics[1]: 1, topics[2]: 1}
        )
        self.reader = OutputReader(broker.bootstrap_servers, [topics[1], topics[2]])
        self.reader.start()
        self.producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap_servers, acks=1, linger_ms=0
        )
        # BENCH_WORKERS=N in a variant: N worker processes in one group (each its own HTTP port)
        self.http_ports = [free_port() for _ in range(int(variant.env.get("BENCH_WORKERS", "1")))]
        self.http_port = self.http_ports[0]
        self.envs = [
            worker_env(variant, args, broker, server, model_dir, topics, port)
            for port in self.http_ports
        ]
        self.env = self.envs[0]
        self.src = variant.src
        self.log_path = workdir / f"worker-{variant.name}-{scenario.key}-{suffix}.log"
        self.profile_path = workdir / "profiles" / f"{variant.name}-{scenario.key}-{suffix}.raw"
        self.counter = iter(range(10**9))
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> float:
        """Start `python -m poster_genres.worker` (BENCH_WORKERS of them, logging to one file); seconds to ready."""
        with open(self.log_path, "w") as log_file:
            self.processes = [
                subprocess.Popen(
                    [sys.executable, "-m", "poster_genres.worker"],
                    env=env,
                    cwd=self.src,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
                for env in self.envs
            ]
        return max(
            wait_ready(p, port, self.log_path) for p, port in zip(self.processes, self.http_ports)
        )

    def stop(self) -> None:
        """SIGTERM the workers (kill after 30 s), close the Kafka clients."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.producer.close()
        self.reader.stop()

    @property
    def pid(self) -> int:
        assert self.processes
        return self.processes[0].pid

    @property
    def pids(self) -> list[int]:
        """Every worker process (their fetch processes are found under them)."""
        return [process.pid for process in self.processes]

    def send(self, prefix: str, n: int, paced_eps: float | None = None) -> dict[str, int]:
        """Produce `n` events (at `paced_eps` if given); event id -> timestamp ms."""
        ids: dict[str, int] = {}
        begun = time.monotonic()
        for k in range(n):
            if paced_eps and (pause := begun + k / paced_eps - time.monotonic()) > 0:
                time.sleep(pause)
            i = next(self.counter)
            event_id = f"{prefix}-{i}"
            ts = int(time.time() * 1000)
            ids[event_id] = ts
            self.producer.send(
                self.input_topic,
                key=str(i + 1).encode(),
                value=event_value(event_id, i + 1),
                timestamp_ms=ts,
            )
        self.producer.flush()
        return ids

    def through(self, ids: dict[str, int], phase: str, timeout: float = 600) -> None:
        """Wait for the output of every event of `ids`."""
        if not self.reader.wait_for(list(ids), timeout):
            raise RuntimeError(
                f"{phase} did not come through ({len(self.reader.dead)} dead letters): "
                f"see {self.log_path}"
            )

    def warm_up(self) -> dict[str, Any]:
        """Three batches: the first batches of a fresh process pay one-off costs."""
        warm = self.send("warm", 3 * self.args.batch_size)
        self.through(warm, "warm-up", 300)
        return {
            "events": len(warm),
            "first_output_ms": min(self.reader.seen[i][0] for i in warm) - min(warm.values()),
        }

    def saturation(self, measure_model: Callable[[], dict[str, float]]) -> dict[str, Any]:
        """A burst of --events events, between two bare-model measurements (the worker idle meanwhile)."""
        args = self.args
        paired = [measure_model()]
        split = (
            CpuSplit(self.pid, self.profile_path, native=args.native) if args.cpu_split else None
        )
        cpu0, server_cpu0, wall0 = tree_cpu_s(self.pids), self.server.cpu_s(), time.monotonic()
        burst = self.send("sat", args.events)
        self.through(burst, "saturation")
        wall = time.monotonic() - wall0
        cpu, server_cpu = tree_cpu_s(self.pids) - cpu0, self.server.cpu_s() - server_cpu0
        split_raw = split.stop() if split is not None else None
        paired.append(measure_model())
        outs = sorted(self.reader.seen[i][0] for i in burst)
        skip = min(args.batch_size, len(outs) - 1)  # steady state: from the end of the first batch
        span_s = (outs[-1] - outs[skip - 1]) / 1000
        eps = (len(outs) - skip) / span_s if span_s > 0 else float("nan")
        model_eps = statistics.mean(m["eps"] for m in paired)
        result = {
            "events": len(burst),
            "worker_eps": round(eps, 2),
            "worker_eps_wall": round(len(outs) / ((outs[-1] - min(burst.values())) / 1000), 2),
            "worker_cpu_cores": round(cpu / wall, 2),
            "worker_cpu_ms_per_event": round(1000 * cpu / len(outs), 2),
            "server_cpu_cores": round(server_cpu / wall, 3),
            "paired_model_eps": round(model_eps, 2),
            "paired_model_cpu_ms_per_event": round(
                statistics.mean(m["cpu_ms_per_event"] for m in paired), 2
            ),
            "paired_model_batch_ms": round(statistics.mean(m["batch_ms"] for m in paired), 1),
            "throughput_ratio": round(eps / model_eps, 3),
        }
        if split_raw is not None:
            result["cpu_split_raw"] = split_raw
        print(
            f"[{self.name}] saturation: {eps:.1f} events/s (wall {result['worker_eps_wall']}) vs bare model "
            f"{model_eps:.1f} = {result['throughput_ratio']}; worker {result['worker_cpu_cores']} cores "
            f"({result['worker_cpu_ms_per_event']} CPU ms/event), poster server {result['server_cpu_cores']} cores",
            flush=True,
        )
        return result

    def half_load(self, rate: float, batch_ms: float) -> dict[str, Any]:
        """A steady `rate` for --latency-s seconds: end-to-end latency percentiles."""
        paced = self.send("lat", max(1, int(rate * self.args.latency_s)), paced_eps=rate)
        self.through(paced, "latency phase", 120)
        seen = self.reader.seen
        lat = [seen[i][0] - ts for i, ts in paced.items()]
        lat_classified = [
            datetime.fromisoformat(seen[i][1]).timestamp() * 1000 - ts for i, ts in paced.items()
        ]
        result = {
            "events": len(paced),
            "rate_eps": round(rate, 2),
            "p50_ms": round(percentile(lat, 50), 1),
            "p95_ms": round(percentile(lat, 95), 1),
            "p99_ms": round(percentile(lat, 99), 1),
            "max_ms": round(max(lat), 1),
            "p99_classified_ms": round(percentile(lat_classified, 99), 1),
            "p99_over_batch": round(percentile(lat, 99) / batch_ms, 2),
        }
        print(
            f"[{self.name}] at {rate:.1f} events/s: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
            f"p99 {result['p99_ms']} ms = {result['p99_over_batch']} x one batch (max {result['max_ms']} ms)",
            flush=True,
        )
        return result


def run_worker(
    variant: Variant,
    scenario: Scenario,
    args: argparse.Namespace,
    broker: Any,
    server: PosterServer,
    model_dir: Path,
    workdir: Path,
    measure_model: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    """Start the worker, push the warm-up, saturation and half-load phases through it, stop it."""
    run = WorkerRun(variant, scenario, args, broker, server, model_dir, workdir)
    result: dict[str, Any] = {
        "variant": variant.name,
        "model": scenario.model,
        "rtt_ms": scenario.rtt_ms,
        "src": str(variant.src),
        "env": variant.env,
    }
    try:
        at_start = server.stats()
        result["ready_s"] = round(run.start(), 2)
        print(f"[{run.name}] ready in {result['ready_s']} s", flush=True)
        warm = run.warm_up()
        result["warmup_first_output_ms"] = warm["first_output_ms"]
        after_warm = server.reset_peak()
        saturation = run.saturation(measure_model)
        after_saturation = server.reset_peak()
        result.update({k: v for k, v in saturation.items() if k != "events"})
        half = run.half_load(
            args.rate or saturation["worker_eps"] / 2, saturation["paired_model_batch_ms"]
        )
        after_half = server.stats()
        result.update({k: v for k, v in half.items() if k != "events"})
        result["connections"] = {
            "warmup": connection_figures(at_start, after_warm, warm["events"]),
            "saturation": connection_figures(after_warm, after_saturation, saturation["events"]),
            "half_load": connection_figures(after_saturation, after_half, half["events"]),
        }
        steady = after_half["accepted"] - after_warm["accepted"]
        result["connections_per_1000_posters"] = round(
            1000 * steady / (saturation["events"] + half["events"]), 1
        )
        c = result["connections"]
        print(
            f"[{run.name}] poster server: {c['warmup']['connections']} connections in the warm-up, then "
            f"{c['saturation']['per_1000_posters']} per 1,000 posters at saturation (peak "
            f"{c['saturation']['peak_open']} open), {c['half_load']['per_1000_posters']} at half load; "
            f"{c['saturation']['requests_per_poster']} requests per poster",
            flush=True,
        )
        result["peak_rss_mb"] = round(tree_kb(run.pids, "VmHWM") / 1024, 1)  # all processes, summed
        result["dead_letters"] = len(run.reader.dead)
        result["poster_renditions"] = dict(run.reader.renditions)
        print(
            f"[{run.name}] posters the worker found on the pages (rendition: outputs): "
            f"{result['poster_renditions']}; dead letters: {len(run.reader.dead)}",
            flush=True,
        )
    finally:
        run.stop()
    result["batches"] = batch_breakdown(run.log_path)
    return result


def batch_breakdown(log_path: Path) -> dict[str, Any]:
    """Median seconds per batch from the worker's own batch log lines (all phases)."""
    rows = [
        tuple(map(float, m.groups()))
        for m in map(BATCH_LINE.search, log_path.read_text().splitlines())
        if m
    ]
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


def cpu_by_stage(
    raw: dict[str, Any], events: int, decode_in_signature_ms: float | None
) -> dict[str, Any]:
    """CPU ms per event by stage; the signature's decode and resize moved from `model` to `decode`."""
    ms = {stage: 1000 * seconds / events for stage, seconds in raw["stages_s"].items()}
    moved = min(ms["model"], decode_in_signature_ms) if decode_in_signature_ms is not None else 0.0
    ms["model"] -= moved
    ms["decode"] += moved
    return {
        "total_ms": round(1000 * raw["cpu_s"] / events, 2),
        "stages_ms": {stage: round(ms[stage], 2) for stage in STAGE_ORDER},
        "page_parse_ms": round(1000 * raw["page_parse_s"] / events, 2),
        "decode_in_signature_ms": round(moved, 2),
        "outside_model_ms": round(sum(ms.values()) - ms["model"] - moved, 2),
        "samples": raw["samples"],
        "native_threads_s": {k: round(v, 2) for k, v in raw["native_threads_s"].items()},
        "py_spy_cpu_s": round(raw["py_spy_cpu_s"], 2),
    }


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--runs",
        default=None,
        metavar="MODEL[@RTT_MS],...",
        help=f"models and simulated round trips to run, grouped by model, tiny first (default {DEFAULT_RUNS})",
    )
    p.add_argument(
        "--model",
        choices=(*models.MODELS, "both"),
        default=None,
        help="shortcut: run this model (both: tiny and mobilenet) at --rtt-ms",
    )
    p.add_argument(
        "--rtt-ms",
        type=float,
        default=None,
        help="shortcut: the simulated round trip of --model's runs",
    )
    p.add_argument("--events", type=int, default=1200, help="events in the saturation burst")
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="BATCH_SIZE of the worker and the bare model's batch",
    )
    p.add_argument("--latency-s", type=float, default=30.0, help="seconds of the half-rate phase")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="events/s of the latency phase (default: half of saturation)",
    )
    p.add_argument(
        "--model-s", type=float, default=12.0, help="seconds of each bare-model measurement A and B"
    )
    p.add_argument(
        "--paired-model-s",
        type=float,
        default=6.0,
        help="seconds of the bare-model measurements just before and after each saturation burst",
    )
    p.add_argument(
        "--model-threads", default=None, help="INTRA,INTER for the bare model (default: TF's)"
    )
    p.add_argument(
        "--pages",
        choices=("tmdb", "site", "small"),
        default="tmdb",
        help="tmdb: 150-300 KB TMDB-shaped pages, w780 posters; site: the same in the site's own "
        "layout (relative paths, a backdrop, a lazy poster); small: a lean ~400-byte page, w500",
    )
    p.add_argument(
        "--no-redirect", action="store_true", help="no /movie/<id> -> /movie/<id>-<slug> redirect"
    )
    p.add_argument(
        "--handshake-rtts",
        type=int,
        default=2,
        help="extra round trips on a new connection when a run has an RTT (TCP + TLS 1.3)",
    )
    p.add_argument("--posters", type=int, default=48, help="distinct posters served")
    p.add_argument(
        "--poster-cache", type=Path, default=POSTER_CACHE, help="where the built posters are kept"
    )
    p.add_argument("--partitions", type=int, default=2, help="partitions of the input topic")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=SRC[,K=V...]",
        help="a worker to run: its source checkout and extra env (repeatable; default: this checkout)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="keep the exported models under DIR/<model> and reuse them in later runs",
    )
    p.add_argument(
        "--no-cpu-split",
        dest="cpu_split",
        action="store_false",
        help="do not sample the worker with py-spy during saturation",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the py-spy raw stacks of each saturation burst in DIR",
    )
    p.add_argument("--native", action="store_true", help="py-spy --native")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the variants in turn this many times (A B A B ...)",
    )
    p.add_argument(
        "--server-check", action="store_true", help="also measure the poster server's capacity"
    )
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = p.parse_args(argv)
    if args.runs and (args.model or args.rtt_ms is not None):
        p.error("--runs or --model/--rtt-ms, not both")
    if args.model or args.rtt_ms is not None:
        kinds = models.MODELS if args.model in (None, "both") else (args.model,)
        args.scenarios = [Scenario(kind, args.rtt_ms or 0.0) for kind in kinds]
    else:
        args.scenarios = Scenario.parse_list(args.runs or DEFAULT_RUNS)
    if args.events < 10 * args.batch_size:
        print(
            f"note: {args.events} events are under 10 batches: saturation events/s will not be a steady state",
            flush=True,
        )
    if args.cpu_split and py_spy() is None:
        print("py-spy not found (pip install py-spy): no CPU split", flush=True)
        args.cpu_split = False
    return args


def prepare_model(kind: str, args: argparse.Namespace, workdir: Path) -> Path:
    """The version folder of model `kind`: built, or reused from --model-dir."""
    return models.prepared(kind, (args.model_dir or workdir / "models") / kind)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    variants = [Variant.parse(v) for v in args.variant] or [Variant("main", ROOT)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    print(
        f"work folder {workdir}; {os.cpu_count()} cores; runs "
        + ", ".join(s.label for s in args.scenarios),
        flush=True,
    )
    server = PosterServer(
        args.poster_cache,
        args.posters,
        args.pages,
        handshake_rtts=args.handshake_rtts,
        redirect=not args.no_redirect,
    )  # builds its pages (and posters, once) meanwhile

    import tensorflow as tf

    if args.model_threads:
        intra, inter = (int(v) for v in args.model_threads.split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from demo.broker import EmbeddedBroker

    kinds = [k for k in models.MODELS if any(s.model == k for s in args.scenarios)]
    if args.cpu_split and "tiny" not in kinds:
        kinds.insert(0, "tiny")  # its bare CPU per event is the signature's decode and resize
    model_dirs = {kind: prepare_model(kind, args, workdir) for kind in kinds}
    try:
        server.wait_ready()
        site = server.command("site")
        posters = server.posters()
        sizes = sorted(len(p) for p in posters)
        pages = (
            f"{site['page_variants']} pages of {site['page_kb'][0]:.0f}-{site['page_kb'][2]:.0f} KB "
            f"(gzip {site['page_gzip_kb'][0]:.0f}-{site['page_gzip_kb'][2]:.0f} KB), slug redirect "
            f"{'on' if site['redirect'] else 'off'}"
            if site["page_variants"]
            else "lean pages (~0.4 KB)"
        )
        print(
            f"poster server: {pages}; "
            f"{len(posters)} {site['rendition']} posters {sizes[0] // 1024}-{sizes[-1] // 1024} KB "
            f"(median {statistics.median(sizes) / 1024:.0f} KB)",
            flush=True,
        )
        results: dict[str, Any] = {
            "cores": os.cpu_count(),
            "batch_size": args.batch_size,
            "events": args.events,
            "pages": args.pages,
            "site": site,
            "bare": {},
        }
        if args.server_check:
            results["server_capacity_eps"] = round(capacity(server.base_url), 1)
            print(
                f"poster server: {results['server_capacity_eps']:.0f} page+poster fetches/s for one httpx "
                "client (client-bound)",
                flush=True,
            )
        runs = []
        with EmbeddedBroker() as broker:
            for kind in kinds:

                def measure(seconds: float, kind: str = kind) -> dict[str, float]:
                    return models.bare(model_dirs[kind], posters, args.batch_size, seconds)

                bare = results["bare"][kind] = {"a": measure(args.model_s)}
                print(
                    f"bare {kind} A: {bare['a']['eps']:.1f} events/s, one batch of {args.batch_size}: "
                    f"{bare['a']['batch_ms']:.0f} ms, {bare['a']['cpu_ms_per_event']:.2f} CPU ms/event",
                    flush=True,
                )
                for scenario in (s for s in args.scenarios if s.model == kind):
                    server.set_rtt(scenario.rtt_ms)
                    for round_ in range(args.rounds):
                        for variant in variants:
                            run = run_worker(
                                variant,
                                scenario,
                                args,
                                broker,
                                server,
                                model_dirs[kind].parent,
                                workdir,
                                lambda measure=measure: measure(args.paired_model_s),
                            )
                            run["round"] = round_
                            runs.append(run)
                    server.set_rtt(0)
                if any(s.model == kind for s in args.scenarios):
                    bare["b"] = measure(args.model_s)
                    print(
                        f"bare {kind} B: {bare['b']['eps']:.1f} events/s, one batch: {bare['b']['batch_ms']:.0f} ms, "
                        f"{bare['b']['cpu_ms_per_event']:.2f} CPU ms/event",
                        flush=True,
                    )
                for key in ("eps", "cpu_ms_per_event", "batch_ms"):
                    bare[key] = round(
                        statistics.mean(m[key] for k, m in bare.items() if k in ("a", "b")), 2
                    )
    finally:
        server.stop()
    summary = summarise(args, variants, runs, results)
    if args.profile:
        import shutil

        shutil.copytree(workdir / "profiles", args.profile, dirs_exist_ok=True)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(summary))
    return 0


def summarise(
    args: argparse.Namespace,
    variants: list[Variant],
    runs: list[dict[str, Any]],
    results: dict[str, Any],
) -> dict[str, Any]:
    """Per-run derived figures, printed; the final JSON object with the target figures first."""
    decode_ms = results["bare"].get("tiny", {}).get("cpu_ms_per_event")
    for run in runs:
        bare = results["bare"][run["model"]]
        run["throughput_ratio_ab"] = round(run["worker_eps"] / bare["eps"], 3)
        run["cpu_ratio"] = round(
            run["paired_model_cpu_ms_per_event"] / run["worker_cpu_ms_per_event"], 3
        )
        run["cpu_outside_model_diff_ms"] = round(
            run["worker_cpu_ms_per_event"] - run["paired_model_cpu_ms_per_event"], 2
        )
        name = f"{run['variant']}/{Scenario(run['model'], run['rtt_ms']).label}"
        if "cpu_split_raw" in run:
            run["cpu_split"] = cpu_by_stage(run.pop("cpu_split_raw"), args.events, decode_ms)
            split = run["cpu_split"]
            stages = ", ".join(
                f"{s} {v}" + (f" (parsing {split['page_parse_ms']})" if s == "page" else "")
                for s, v in split["stages_ms"].items()
            )
            print(
                f"[{name}] CPU ms per event: {split['total_ms']} = {stages}; outside the model "
                f"{split['outside_model_ms']} (worker - bare model: {run['cpu_outside_model_diff_ms']})",
                flush=True,
            )
        print(
            f"[{name}] worker {run['worker_eps']} / model {run['paired_model_eps']} events/s = "
            f"{run['throughput_ratio']} (vs A/B {run['throughput_ratio_ab']}; CPU per event model/worker "
            f"{run['cpu_ratio']}); p99 {run['p99_ms']} ms = {run['p99_over_batch']} x one batch; peak RSS "
            f"{run['peak_rss_mb']} MB; ready {run['ready_s']} s; {run['connections_per_1000_posters']} connections "
            f"per 1,000 posters; batches {run['batches']}",
            flush=True,
        )
    if args.rounds > 1:  # per variant and scenario: the mean over rounds
        keys = (
            "worker_eps",
            "paired_model_eps",
            "throughput_ratio",
            "cpu_ratio",
            "p50_ms",
            "p99_ms",
            "p99_over_batch",
            "peak_rss_mb",
            "ready_s",
            "connections_per_1000_posters",
        )
        for variant in variants:
            for scenario in args.scenarios:
                mine = [
                    r
                    for r in runs
                    if r["variant"] == variant.name
                    and r["model"] == scenario.model
                    and r["rtt_ms"] == scenario.rtt_ms
                ]
                mean = {
                    k: round(statistics.mean(r[k] for r in mine), 3)
                    for k in keys
                    if all(k in r for r in mine)
                }
                print(
                    f"[{variant.name}/{scenario.label}] mean of {len(mine)} rounds: {mean}",
                    flush=True,
                )
                results.setdefault("means", {})[f"{variant.name}/{scenario.key}"] = mean
    targets = target_figures(args, variants[0].name, runs, results)
    print(f"target figures ({variants[0].name}):", flush=True)
    for key, value in targets.items():
        print(f"  {key:<48} {value}", flush=True)
    first = next((r for r in runs if r["model"] == "mobilenet" and not r["rtt_ms"]), runs[0])
    return {
        "targets": targets,
        **{
            k: first[k]
            for k in (
                "worker_eps",
                "throughput_ratio",
                "p50_ms",
                "p99_ms",
                "peak_rss_mb",
                "ready_s",
            )
        },
        "model_eps": first["paired_model_eps"],
        **results,
        "runs": runs,
    }


def target_figures(
    args: argparse.Namespace, variant: str, runs: list[dict[str, Any]], results: dict[str, Any]
) -> dict[str, Any]:
    """Every figure with a target, for the first variant (the mean over rounds when there are several)."""
    out: dict[str, Any] = {}
    for scenario in args.scenarios:
        mine = [
            r
            for r in runs
            if r["variant"] == variant
            and r["model"] == scenario.model
            and r["rtt_ms"] == scenario.rtt_ms
        ]
        if not mine:
            continue

        def mean(key: str, mine: list[dict[str, Any]] = mine) -> float:
            return round(statistics.mean(r[key] for r in mine), 3)

        out[f"throughput_ratio_{scenario.key}"] = mean("throughput_ratio")
        if "cpu_split" in mine[0]:
            out[f"cpu_ms_per_event_outside_model_{scenario.key}"] = round(
                statistics.mean(r["cpu_split"]["outside_model_ms"] for r in mine), 2
            )
            out[f"cpu_ms_per_event_by_stage_{scenario.key}"] = {
                s: round(statistics.mean(r["cpu_split"]["stages_ms"][s] for r in mine), 2)
                for s in STAGE_ORDER
            }
        out[f"p99_over_batch_{scenario.key}"] = mean("p99_over_batch")
        out[f"peak_rss_mb_{scenario.key}"] = max(r["peak_rss_mb"] for r in mine)
        out[f"connections_per_1000_posters_{scenario.key}"] = max(
            r["connections_per_1000_posters"] for r in mine
        )
        out[f"ready_s_{scenario.key}"] = mean("ready_s")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
