"""The site's request rate from a consumer group of workers on a backlog, against its budget.

    python bench/group_rate.py [--workers 3] [--partitions 6] [--seconds 60] [--events 3000]
                               [--site-rate 20] [--burst 5] [--leave-at SECONDS]

What it starts, all on 127.0.0.1: the embedded Tansu broker (demo.broker) with fresh
topics; the TMDB stand-in (demo.tmdb, in this process), whose pages, slug redirects and
posters are one host, so every request of a poster counts against SITE_RATE_LIMIT; the
tiny model (bench/models.py); `--workers` processes of `python -m poster_genres.worker` in one group with
the default rate settings but the ones given. Once every worker is ready and holds
partitions, `--events` events go to the input topic at once (a backlog), and the
stand-in's requests are timed for `--seconds`. `--leave-at S` stops one worker S seconds in
(SIGTERM), to see the others take its share over.

Printed: requests per second, second by second; the busiest second (a sliding one-second
window) and the mean rate over the window, each against the budget; the same over the
window after the first five seconds; and last, one JSON line of the figures. Targets:
busiest second <= 1.25 x the budget, mean >= 0.7 x the budget.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import bisect
import io
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

from bench import models
from demo.broker import EmbeddedBroker, create_topics, free_port
from demo.tmdb import StandInMovie, TmdbStandIn

WARM_UP_S = 5.0


class TimedCounter(Counter[str]):
    """The stand-in's request counter, which also notes when each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def __setitem__(self, key: str, value: int) -> None:
        self.times.append(time.monotonic())
        super().__setitem__(key, value)


def busiest_second(times: list[float]) -> int:
    """The most requests in any one-second window (sliding, not calendar seconds)."""
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def rates(times: list[float], start: float, end: float, budget: float) -> dict[str, float]:
    """Busiest second and mean rate of the requests in [start, end), and their ratios."""
    inside = [t for t in times if start <= t < end]
    busiest = busiest_second(inside)
    mean = len(inside) / (end - start)
    return {
        "requests": len(inside),
        "seconds": round(end - start, 1),
        "busiest_second": busiest,
        "mean_per_s": round(mean, 2),
        "busiest_vs_budget": round(busiest / budget, 3),
        "mean_vs_budget": round(mean / budget, 3),
    }


def poster(i: int) -> bytes:
    """A small JPEG poster, one colour per movie."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (60, 90), (i * 37 % 256, i * 91 % 256, i * 53 % 256)).save(buffer, "JPEG")
    return buffer.getvalue()


def worker_env(
    args: argparse.Namespace, broker: EmbeddedBroker, site: TmdbStandIn, model_dir: Path, port: int
) -> dict[str, str]:
    """A worker's environment: the group's topics, the stand-in, the budget under test."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        INPUT_TOPIC=args.topics[0],
        OUTPUT_TOPIC=args.topics[1],
        DLQ_TOPIC=args.topics[2],
        GROUP_ID=args.topics[3],
        MODEL_DIR=str(model_dir),
        TMDB_BASE_URL=site.base_url,
        POSTER_HOSTS=site.host,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        SESSION_TIMEOUT_MS="6000",
        HEARTBEAT_INTERVAL_MS="1000",
        SITE_RATE_LIMIT=str(args.site_rate),
        RATE_LIMIT_BURST=str(args.burst),
        PYTHONPATH=str(ROOT),
    )
    return env


def readiness(port: int) -> tuple[int, str]:
    """The worker's /readyz status and reason (0 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return answer.status, answer.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()
    except OSError:
        return 0, ""


def wait_for_group(ports: list[int], timeout_s: float = 180) -> list[str]:
    """Wait until every worker is ready and none is a standby; their readiness lines."""
    deadline = time.monotonic() + timeout_s
    answers: list[tuple[int, str]] = []
    while time.monotonic() < deadline:
        answers = [readiness(port) for port in ports]
        if all(status == 200 and "standby" not in why for status, why in answers):
            return [why for _, why in answers]
        time.sleep(0.5)
    raise RuntimeError(f"the group did not form: {answers}")


def produce_backlog(bootstrap: str, topic: str, ids: list[int]) -> None:
    """Every event at once, acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for tmdb_id in ids:
        body = {"tmdb_id": tmdb_id, "event_id": f"bench-{tmdb_id}"}
        producer.send(topic, key=str(tmdb_id).encode(), value=json.dumps(body).encode())
    producer.flush()
    producer.close()


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every worker, kill after 30 s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(args: argparse.Namespace, site: TmdbStandIn, processes: list) -> tuple[float, float]:
    """Watch the stand-in for `--seconds` from its first request; (start, end) of the window."""
    counter: TimedCounter = site.requests  # type: ignore[assignment]
    deadline = time.monotonic() + 60
    while not counter.times and time.monotonic() < deadline:
        time.sleep(0.01)
    start = counter.times[0] if counter.times else time.monotonic()
    if args.leave_at is not None:
        leave = threading.Timer(args.leave_at, processes[-1].send_signal, [signal.SIGTERM])
        leave.start()
    shown = 0
    while time.monotonic() < start + args.seconds:
        time.sleep(1.0)
        now_s = int(time.monotonic() - start)
        while shown < now_s:
            count = sum(1 for t in counter.times if start + shown <= t < start + shown + 1)
            print(f"  second {shown:3d}: {count:3d} requests", flush=True)
            shown += 1
    return start, start + args.seconds


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start everything, measure, stop: the figures."""
    model_dir = workdir / "models"
    models.prepared("tiny", model_dir)
    ids = list(range(1, args.events + 1))
    suffix = uuid.uuid4().hex[:8]
    args.topics = (
        f"rate.new.{suffix}",
        f"rate.genres.{suffix}",
        f"rate.dlq.{suffix}",
        f"g-{suffix}",
    )
    movies = {i: StandInMovie(poster=poster(i), title=f"Movie {i}") for i in ids}
    with EmbeddedBroker() as broker, TmdbStandIn(movies) as site:
        site.requests = TimedCounter()
        create_topics(
            broker.bootstrap_servers,
            {args.topics[0]: args.partitions, args.topics[1]: 1, args.topics[2]: 1},
        )
        ports = [free_port() for _ in range(args.workers)]
        log_path = workdir / "workers.log"
        with open(log_path, "wb") as log_file:
            processes = [
                subprocess.Popen(
                    [sys.executable, "-m", "poster_genres.worker"],
                    env=worker_env(args, broker, site, model_dir, port),
                    cwd=ROOT,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
                for port in ports
            ]
        try:
            for line in wait_for_group(ports):
                print(f"ready: {line}", flush=True)
            produce_backlog(broker.bootstrap_servers, args.topics[0], ids)
            start, end = measure(args, site, processes)
        finally:
            stop_workers(processes)
        times = sorted(site.requests.times)  # type: ignore[attr-defined]
    figures = {
        "budget_per_s": args.site_rate,
        "workers": args.workers,
        "partitions": args.partitions,
        "whole": rates(times, start, end, args.site_rate),
        "after_warm_up": rates(times, start + WARM_UP_S, end, args.site_rate),
        "log": str(log_path),
    }
    whole = figures["whole"]
    figures["targets_met"] = whole["busiest_vs_budget"] <= 1.25 and whole["mean_vs_budget"] >= 0.7
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--events", type=int, default=3000, help="the backlog")
    parser.add_argument("--site-rate", type=float, default=20.0, help="SITE_RATE_LIMIT")
    parser.add_argument("--burst", type=int, default=5, help="RATE_LIMIT_BURST")
    parser.add_argument("--leave-at", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--workdir", type=Path, default=None, help="keeps the model and the log")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="group-rate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    figures = run(args, workdir)
    budget = args.site_rate
    for name in ("whole", "after_warm_up"):
        part = figures[name]
        print(
            f"{name}: {part['requests']} requests in {part['seconds']} s; busiest second "
            f"{part['busiest_second']} ({part['busiest_vs_budget']:.2f} x {budget:g}/s), "
            f"mean {part['mean_per_s']:.1f}/s ({part['mean_vs_budget']:.2f} x {budget:g}/s)"
        )
    print(json.dumps(figures))
    return 0 if figures["targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
