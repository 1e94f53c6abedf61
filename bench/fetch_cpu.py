"""CPU per poster of the real fetcher against TMDB-shaped pages (prints figures; not a test).

    python bench/fetch_cpu.py [--posters 640] [--concurrency 16] [--rounds 3]
                              [--rate R [--burst N]] [--profile OUT] [--pages tmdb|site]
                              [--beside-model tiny|mobilenet [--model-dir DIR]]

Starts `bench/poster_server.py` (TMDB-shaped pages: the slug 301 redirect, 150-300 KB
pages sent gzipped, og:image in <head>, posters at TMDB's rendition sizes) and runs
`posters.PosterFetcher` with the worker's settings (its defaults, the bench's loopback
site, rate limits off as in `bench/worker.py`) over `--posters` posters, `--concurrency`
in flight (FETCH_CONCURRENCY), on one event loop as the worker's fetch thread does.
`--rate` starts the posters at that many a second (`--burst` at a time) instead of all at
once: what a poster costs a fetcher that waits between arrivals, as the worker's does
when the model, not the fetching, sets the pace. `--beside-model` runs each round twice,
alone and then beside another process that runs that model's signature on full batches
without pause (`python -m bench.models busy`, stopped with SIGSTOP between the rounds
beside it): what the same fetching costs while TensorFlow works on the same cores, as it
does in the worker when the model runs on the CPU.

Per round: CPU ms per poster of this process (`time.process_time`: every thread; the
server is another process and not counted), of the fetch thread alone
(`time.thread_time`), the part of it in the kernel (system time: on loopback, sending
also runs much of the receiving side's TCP), requests per poster and TCP connections opened (the server's
counters), and the wall time (meaningless on a shared machine). A warm-up round (pool,
imports, caches) comes first and is not reported. `--profile OUT` runs one more round
under cProfile and writes its stats to OUT (read them with `python -m pstats OUT`).

CPU time, not wall time: on a shared machine the wall-clock figures swing, the CPU per
poster much less.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# the project's packages first; this folder's modules (trainer.py, worker.py) must not shadow them
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

from bench import models
from bench.poster_server import PosterServer
from poster_genres.posters import PosterFetcher
from poster_genres.posters.loops import new_event_loop
from poster_genres.posters.settings import FetchSettings

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "movie-poster-genres"


def worker_settings(base_url: str, port: int, concurrency: int) -> FetchSettings:
    """What `bench/worker.py` gives the worker, through the same settings class."""
    return FetchSettings(
        tmdb_base_url=base_url,
        tmdb_image_base_url=f"{base_url}/t/p/w500",  # where relative `/t/p/` paths go
        poster_hosts=[f"127.0.0.1:{port}"],
        fetch_concurrency=concurrency,
        site_rate_limit=0,
        image_rate_limit=0,
    )


async def fetch_all(
    fetcher: PosterFetcher,
    ids: list[int],
    in_flight: int,
    rate: float | None = None,
    burst: int = 1,
) -> list[Any]:
    """Fetch every id, at most `in_flight` posters at a time (the worker starts a batch at once).

    With `rate`, posters are started `burst` at a time (one by one by default) at that many
    per second on average instead, as events reach a worker that runs below the fetcher's
    own speed.
    """
    gate = asyncio.Semaphore(in_flight)

    async def one(tmdb_id: int) -> Any:
        async with gate:
            return await fetcher.fetch(tmdb_id)

    if rate is None:
        return await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
    loop, tasks = asyncio.get_running_loop(), []
    start = loop.time()
    for n, tmdb_id in enumerate(ids):
        if n % burst == 0:
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        tasks.append(asyncio.ensure_future(one(tmdb_id)))
    return await asyncio.gather(*tasks, return_exceptions=True)


def one_round(
    loop: asyncio.AbstractEventLoop,
    fetcher: PosterFetcher,
    server: PosterServer,
    ids: list[int],
    in_flight: int,
    profile: cProfile.Profile | None = None,
    rate: float | None = None,
    burst: int = 1,
) -> dict[str, Any]:
    before = server.stats()
    cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    sys0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    if profile is not None:
        profile.enable()
    results = loop.run_until_complete(fetch_all(fetcher, ids, in_flight, rate, burst))
    if profile is not None:
        profile.disable()
    cpu, thread = time.process_time() - cpu0, time.thread_time() - thread0
    system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0
    wall = time.perf_counter() - wall0
    after = server.stats()
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} posters failed, e.g. {failed[0]!r}")
    requests = sum(after["requests"].values()) - sum(before["requests"].values())
    n = len(ids)
    return {
        "cpu_ms_per_poster": round(cpu * 1000 / n, 3),
        "fetch_thread_cpu_ms_per_poster": round(thread * 1000 / n, 3),
        "of_which_system_ms": round(system * 1000 / n, 3),
        "requests_per_poster": round(requests / n, 3),
        "connections_opened": after["accepted"] - before["accepted"],
        "wall_s": round(wall, 2),
        "kb_per_poster": round(sum(len(r.content) for r in results) / n / 1024, 1),
    }


class Neighbour:
    """A process that runs a model's signature without pause; stopped until `resume`."""

    def __init__(self, kind: str, model_root: Path, poster_dir: Path):
        version_dir = models.prepared(kind, model_root / kind)
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.models", "busy", str(version_dir), str(poster_dir)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the {kind} model's process did not start")
        self.pause()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue it, and give TensorFlow's threads a second to be busy again."""
        self.process.send_signal(signal.SIGCONT)
        time.sleep(1.0)

    def close(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(
    loop: asyncio.AbstractEventLoop,
    fetcher: PosterFetcher,
    server: PosterServer,
    ids: list[int],
    args: argparse.Namespace,
    neighbour: Neighbour | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`args.rounds` rounds; with a neighbour, each followed by one while it runs."""

    def one() -> dict[str, Any]:
        return one_round(
            loop, fetcher, server, ids, args.in_flight, rate=args.rate, burst=args.burst
        )

    alone: list[dict[str, Any]] = []
    beside: list[dict[str, Any]] = []
    for i in range(args.rounds):
        alone.append(one())
        print(f"round {i + 1}: {_figures(alone[-1])}")
        if neighbour is not None:
            neighbour.resume()
            try:
                beside.append(one())
            finally:
                neighbour.pause()
            print(f"round {i + 1} beside {neighbour.kind}: {_figures(beside[-1])}")
    return alone, beside


def _figures(figures: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in figures.items())


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds; connections opened, summed."""
    summary: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in rounds), 3)
        for key in (
            "cpu_ms_per_poster",
            "fetch_thread_cpu_ms_per_poster",
            "of_which_system_ms",
            "requests_per_poster",
        )
    }
    summary["connections_opened"] = sum(r["connections_opened"] for r in rounds)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--posters", type=int, default=640, help="posters per round")
    p.add_argument("--concurrency", type=int, default=16, help="FETCH_CONCURRENCY")
    p.add_argument("--in-flight", type=int, default=64, help="posters started at once")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="FETCH_EVENT_LOOP",
    )
    p.add_argument("--rate", type=float, help="posters to start a second, not all at once")
    p.add_argument(
        "--burst", type=int, default=1, help="with --rate: start them this many at a time"
    )
    p.add_argument("--no-redirect", action="store_true", help="pages without the slug redirect")
    p.add_argument(
        "--pages",
        choices=("tmdb", "site"),
        default="tmdb",
        help="TMDB-shaped pages, or the same in the site's own layout (bench/poster_server.py)",
    )
    p.add_argument("--profile", type=Path, help="one more round under cProfile, stats here")
    p.add_argument(
        "--beside-model",
        choices=models.MODELS,
        help="each round alone, then beside a process running this model without pause",
    )
    p.add_argument(
        "--model-dir", type=Path, help="with --beside-model: its models, built there if missing"
    )
    args = p.parse_args(argv)

    poster_cache = CACHE / "bench-posters-v1"
    server = PosterServer(poster_cache, 48, args.pages, redirect=not args.no_redirect)
    neighbour: Neighbour | None = None
    try:
        server.wait_ready()
        if args.beside_model:
            model_root = args.model_dir or Path(tempfile.mkdtemp(prefix="bench-fetch-cpu-"))
            neighbour = Neighbour(args.beside_model, model_root, poster_cache / "w342")
        settings = worker_settings(server.base_url, server.port, args.concurrency)
        loop = new_event_loop(args.event_loop)  # the worker's fetch loop (FETCH_EVENT_LOOP)
        fetcher = PosterFetcher(settings)
        ids = list(range(1000, 1000 + args.posters))
        one_round(loop, fetcher, server, ids[: max(64, args.posters // 4)], args.in_flight)
        rounds, beside = measure(loop, fetcher, server, ids, args, neighbour)
        if args.profile is not None:
            profile = cProfile.Profile()
            one_round(loop, fetcher, server, ids, args.in_flight, profile)
            profile.dump_stats(args.profile)
            print(f"profile: {args.profile}")
        loop.run_until_complete(fetcher.aclose())
        loop.close()
    finally:
        if neighbour is not None:
            neighbour.close()
        server.stop()
    summary = medians(rounds)
    summary["posters"] = args.posters * args.rounds
    summary["concurrency"] = args.concurrency
    if beside:
        summary[f"beside_{args.beside_model}"] = medians(beside)
        summary[f"beside_{args.beside_model}"]["cpu_ratio_per_pair"] = [
            round(b["cpu_ms_per_poster"] / a["cpu_ms_per_poster"], 2)
            for a, b in zip(rounds, beside, strict=True)
        ]
    print(json.dumps({"fetch_cpu": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
