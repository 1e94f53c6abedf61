"""Several workers on one host: a port in use is one clear line, HTTP_PORT=0 picks a free one."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from poster_genres.worker.app import EXIT_NO_PORT, run
from poster_genres.worker.health import HealthServer
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.settings import WorkerSettings
from tests.fixtures import start_worker, worker_env

CHOSEN = re.compile(r"health and metrics on http://[^:]+:(\d+)")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port that another process (this socket) already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """`run` installs SIGTERM and SIGINT handlers: give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_port_in_use_is_one_line_naming_http_port_and_an_exit_code(
    taken_port, signal_handlers, caplog, tmp_path
):
    settings = WorkerSettings(http_host="127.0.0.1", http_port=taken_port, model_dir=tmp_path)
    with caplog.at_level(logging.INFO):
        assert run(settings) == EXIT_NO_PORT != 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    line = errors[0].getMessage()
    assert f"HTTP_PORT {taken_port} is already in use" in line and "HTTP_PORT=0" in line


def test_the_process_exits_without_a_traceback(taken_port, tmp_path):
    env = {"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(taken_port), "MODEL_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "poster_genres.worker"],
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == EXIT_NO_PORT
    assert "Traceback" not in out
    named = [line for line in out.splitlines() if "HTTP_PORT" in line]
    assert len(named) == 1 and f"HTTP_PORT {taken_port} is already in use" in named[0]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HTTP_", "KAFKA_"))}


def test_port_zero_gives_each_server_a_port_of_its_own():
    servers = [
        HealthServer("127.0.0.1", 0, WorkerMetrics(), lambda: (True, "ok")).start()
        for _ in range(2)
    ]
    try:
        ports = [server.port for server in servers]
        assert len(set(ports)) == 2 and 0 not in ports
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                assert answer.status == 200
    finally:
        for server in servers:
            server.stop()


class Lines:
    """A worker's output, read on a thread as it comes."""

    def __init__(self, process: subprocess.Popen[str]):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def port(self, timeout_s: float = 60) -> int:
        """The port the worker logged that it chose."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := CHOSEN.search(line):
                    return int(found.group(1))
            time.sleep(0.1)
        pytest.fail("no port logged:\n" + "".join(self.lines[-40:]))


def ready(port: int, timeout_s: float = 90) -> str:
    """Wait for /readyz 200 on `port`; its reason."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"not ready on port {port}")


def test_two_workers_run_on_one_host_with_http_port_zero(broker, topics, model_dir, tmdb):
    env = worker_env(broker, topics, model_dir, tmdb, HTTP_HOST="127.0.0.1", HTTP_PORT="0")
    workers = [start_worker(env), start_worker(env)]
    outputs = [Lines(process) for process in workers]
    try:
        ports = [lines.port() for lines in outputs]
        assert len(set(ports)) == 2
        reasons = [ready(port) for port in ports]
        assert all("model version" in reason for reason in reasons)
        assert all(process.poll() is None for process in workers)
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=60)
    assert [process.returncode for process in workers] == [0, 0]
