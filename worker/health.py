"""Liveness, readiness, Prometheus metrics and the served model on one small HTTP port.

`GET /model` says what a `model_version` in the outputs means: the served version's
labels, thresholds, per-genre evaluation figures and provenance, from its metadata.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from poster_genres.common.lifecycle import StartStop
from poster_genres.worker.metrics import CONTENT_TYPE, WorkerMetrics

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], tuple[bool, str]]
ModelInfo = Callable[[], dict[str, Any] | None]  # None while no model is loaded
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class _Server(ThreadingHTTPServer):
    """The HTTP server, holding what the handler needs to answer."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], metrics: WorkerMetrics, ready: ReadyCheck, model: ModelInfo
    ):
        super().__init__(address, _Handler)
        self.metrics = metrics
        self.ready = ready
        self.model = model
        self.live = True


class _Handler(BaseHTTPRequestHandler):
    """Answers GET on /healthz, /readyz, /metrics and /model; 404 elsewhere."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Route one GET request."""
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            if self.server.live:
                self._send(HTTPStatus.OK, b"ok\n")
            else:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"stopping\n")
        elif path == "/readyz":
            self._readyz()
        elif path == "/metrics":
            self._send(HTTPStatus.OK, self.server.metrics.render(), CONTENT_TYPE)
        elif path == "/model":
            self._model()
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")

    def _readyz(self) -> None:
        try:
            ok, reason = self.server.ready()
        except Exception as exc:  # a broken check means "not ready", not a dead server
            log.exception("readiness check failed")
            ok, reason = False, f"readiness check failed: {exc}"
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        self._send(status, (reason + "\n").encode())

    def _model(self) -> None:
        """The served version's labels, thresholds and figures; 503 while none is loaded."""
        info = self.server.model()
        if info is None:
            body = {"error": "no model loaded"}
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, json.dumps(body).encode(), JSON)
        else:
            self._send(HTTPStatus.OK, json.dumps(info).encode(), JSON)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str = TEXT) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Send access lines to logging at debug instead of stderr."""
        log.debug("%s " + format, self.address_string(), *args)


class HealthServer(StartStop):
    """A threaded HTTP server for /healthz, /readyz, /metrics and /model, in a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: WorkerMetrics,
        ready: ReadyCheck,
        model: ModelInfo = lambda: None,
    ) -> None:
        self.host = host
        self._port = port
        self.metrics = metrics
        self.ready = ready
        self.model = model
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the real one when 0 was asked for), else the asked one."""
        return self._port

    def start(self) -> Self:
        """Bind the port and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("health server already started")
        self._server = _Server((self.host, self._port), self.metrics, self.ready, self.model)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="health-http",
            daemon=True,
        )
        self._thread.start()
        log.debug("health and metrics on http://%s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.live = False
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
