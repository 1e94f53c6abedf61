"""Logging set-up: plain or JSON lines on stderr, quiet third-party loggers, secrets masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

NOISY_LOGGERS = ("kafka", "httpx", "httpcore", "tensorflow", "absl", "h5py", "PIL", "urllib3")
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MASK = "***"

# `api_key=...` in a query string (or anywhere in text) and `Bearer <token>` headers.
_API_KEY = re.compile(r"(?i)(api_key=)[^&\s'\"]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*")

# Attributes every LogRecord has; whatever else is on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """Mask api_key values and bearer tokens in `text`."""
    return _BEARER.sub(r"\1" + MASK, _API_KEY.sub(r"\1" + MASK, text))


class RedactFilter(logging.Filter):
    """Masks secrets in a record's message, its arguments already merged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets masked; never drops a record."""
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the `extra=` fields and exc."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Plain lines whose exception text is masked too."""

    def formatException(self, ei: Any) -> str:
        """Format a traceback with secrets masked."""
        return redact(super().formatException(ei))


def configure_logging(level: str = "INFO", fmt: str = "plain") -> None:
    """Send the root logger's records to stderr as plain or JSON lines, secrets masked."""
    if fmt not in ("plain", "json"):
        raise ValueError(f"log format must be 'plain' or 'json', not {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")  # noqa: TRY004 (a bad setting)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter(PLAIN_FORMAT))
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    quiet = logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
