"""Where a worker's CPU goes during one phase, by stage: per-thread CPU time, split by stack samples.

Two measurements of the worker process over the same interval:
  - the CPU seconds of every thread (/proc/<pid>/task/<tid>/stat, before and after);
  - `py-spy record --threads --nonblocking` stack samples of its Python threads (only
    samples of a thread on the CPU are recorded; the worker is not paused).
Each Python thread's CPU seconds are shared out over stages in proportion to that
thread's samples (a thread with CPU but no samples counts as `other`). Threads without
Python (TensorFlow's op threads and oneDNN's pool) are `model`, librdkafka's (`rdk:`)
`kafka`; CPU of threads that ended during the phase is `other`. A sample's stage is the
first rule that matches one of its frames, innermost frame first (STAGES below); a stack
that only shows the event loop or the HTTP client (no request of the worker's on it) is
`fetch_loop`, as is any other sample of the fetch thread (uvloop's loop has no Python frames).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.procfs import cpu_s, threads_cpu_s

# a frame is "function (path:line)"; paths are as py-spy prints them (site-packages stripped)
_LIB = r"\((?:[^()]*/)?(?:{})/"
_PROJECT = r"\((?:[^()]*/)?(?:worker|posters|common)/"
_METHOD = (
    r"^(?:[\w<>]+\.)*\w*(?:{})\w* "  # the function's own name (after Class. or outer.<locals>.)
)
STAGES: list[tuple[str, re.Pattern[str]]] = [
    (
        "kafka",
        re.compile(_LIB.format("kafka|confluent_kafka|aiokafka|schemas|pydantic|pydantic_core")),
    ),
    ("model", re.compile(_LIB.format("tensorflow|tf_keras|keras|tensorflow_hub|numpy"))),
    ("decode", re.compile(_LIB.format("PIL|cv2|simplejpeg|turbojpeg"))),
    ("page", re.compile(_LIB.format("parsel|lxml|cssselect|w3lib|selectolax|bs4|html5lib"))),
    ("page", re.compile(_METHOD.format("page|html|candidates|_from_api") + _PROJECT)),
    ("image", re.compile(_METHOD.format("image|poster|fetch|download") + _PROJECT)),
    ("model", re.compile(r"^[\w.<>]* \((?:[^()]*/)?worker/(?:classifier|models)\.py")),
    (
        "kafka",
        re.compile(_METHOD.format("publish|produce|commit|poll|flush|consume|deliver") + _PROJECT),
    ),
]
# only when no frame of the stack matched a stage: the event loop and HTTP client between requests
FALLBACK = [
    (
        "fetch_loop",
        re.compile(_LIB.format("asyncio|httpx|httpcore|h11|anyio|sniffio|uvloop|selectors")),
    )
]
STAGE_ORDER = ("page", "image", "fetch_loop", "decode", "model", "kafka", "other")
PARSE = re.compile(
    _LIB.format("parsel|lxml|cssselect|selectolax|bs4|html5lib")
)  # part of `page`: parsing
THREAD_LINE = re.compile(r"^thread \((0x[0-9a-fA-F]+|\d+)\)")


FETCH_THREAD = "fetch-loop"  # the worker's fetch thread (`worker.fetching.AsyncRunner`)


def stage_of(frames: list[str], thread: str = "") -> str:
    """The stage of one stack sample (frames outermost first, as py-spy writes them).

    On the fetch thread, what matches no stage is the event loop's own work, also when
    the loop is uvloop's (C, no Python frame of its own: the stack ends in `Thread.run`).
    """
    for rules in (STAGES, FALLBACK):
        for frame in reversed(frames):
            for stage, rule in rules:
                if rule.search(frame):
                    return stage
    return "fetch_loop" if thread == FETCH_THREAD else "other"


def read_samples(path: Path) -> dict[int, Counter[str]]:
    """Thread id -> samples per stage (and `page_parse`, within `page`), from `py-spy record -f raw --threads`."""
    per_thread: dict[int, Counter[str]] = defaultdict(Counter)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        m = THREAD_LINE.match(thread)
        if not m:
            continue
        tid = int(m.group(1), 0)
        frames = [f.strip() for f in frames]
        stage = stage_of(frames, thread[m.end() :].lstrip(": ").strip())
        per_thread[tid][stage] += int(count)
        if stage == "page" and any(PARSE.search(f) for f in frames):
            per_thread[tid]["page_parse"] += int(count)
    return per_thread


def py_spy() -> str | None:
    """The py-spy next to this Python, or on PATH."""
    near = Path(sys.executable).with_name("py-spy")
    return str(near) if near.exists() else shutil.which("py-spy")


class CpuSplit:
    """Start before a phase, `stop()` after it: CPU seconds of the worker per stage."""

    def __init__(self, pid: int, raw_path: Path, rate: int = 50, native: bool = False):
        spy = py_spy()
        if spy is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.pid = pid
        self.raw_path = raw_path
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        self.process_cpu0 = cpu_s(pid)
        self.threads0 = threads_cpu_s(pid)
        self.spy = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(pid),
                "-r",
                str(rate),
                "-f",
                "raw",
                "-o",
                str(raw_path),
                "--threads",
                "--nonblocking",
                *(["--native"] if native else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.python_tids = self._python_threads(spy)

    def _python_threads(self, spy: str) -> set[int]:
        """Thread ids of the Python threads (idle ones too), from `py-spy dump`."""
        try:
            dump = subprocess.run(
                [spy, "dump", "-p", str(self.pid), "--nonblocking"],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
        except subprocess.TimeoutExpired:
            return set()
        return {
            int(m.group(1), 0)
            for m in re.finditer(r"^Thread (0x[0-9a-fA-F]+|\d+) ", dump, re.MULTILINE)
        }

    def stop(self) -> dict[str, Any]:
        """Stop sampling; CPU seconds per stage over the interval, and how they were found."""
        threads1 = threads_cpu_s(self.pid)
        process_cpu = cpu_s(self.pid) - self.process_cpu0
        spy_cpu = cpu_s(self.spy.pid)
        self.spy.send_signal(signal.SIGINT)
        self.spy.wait(timeout=60)
        samples = read_samples(self.raw_path) if self.raw_path.exists() else {}
        python_tids = self.python_tids | set(samples)
        stages: Counter[str] = Counter()
        native: Counter[str] = Counter()
        for tid, (name, cpu1) in threads1.items():
            cpu = cpu1 - self.threads0.get(tid, (name, 0.0))[1]
            if cpu <= 0:
                continue
            if tid in python_tids:
                counts = samples.get(tid)
                total = sum(counts[s] for s in STAGE_ORDER) if counts else 0
                if not total:
                    stages["other"] += cpu
                    continue
                for stage, n in counts.items():
                    stages[stage] += cpu * n / total
            else:
                stage = "kafka" if name.startswith("rdk:") else "model"
                stages[stage] += cpu
                native[name] += cpu
        stages["other"] += max(0.0, process_cpu - sum(stages.values()))  # threads that ended
        all_samples: Counter[str] = Counter()
        for counts in samples.values():
            all_samples.update(counts)
        return {
            "cpu_s": process_cpu,
            "stages_s": {s: stages.get(s, 0.0) for s in STAGE_ORDER},
            "page_parse_s": stages.get("page_parse", 0.0),
            "native_threads_s": dict(native.most_common(6)),
            "samples": {s: all_samples.get(s, 0) for s in (*STAGE_ORDER, "page_parse")},
            "py_spy_cpu_s": spy_cpu,
        }
