"""Logging set-up: JSON lines parse, secrets are masked, noisy loggers are quiet."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from poster_genres.common.logs import NOISY_LOGGERS, configure_logging, redact


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger and the noisy loggers back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in noisy.items():
        logging.getLogger(name).setLevel(lvl)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Lines written to stderr since the last call."""
    return capsys.readouterr().err.splitlines()


def test_json_lines_parse_with_extra_and_exception(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    log = logging.getLogger("worker.test")
    log.info("classified %d posters", 4, extra={"tmdb_id": 603, "model_version": 2})
    try:
        raise ValueError("bad poster")
    except ValueError:
        log.exception("batch failed")
    first, second = (json.loads(line) for line in lines(capsys))
    assert first["level"] == "INFO"
    assert first["logger"] == "worker.test"
    assert first["msg"] == "classified 4 posters"
    assert first["tmdb_id"] == 603 and first["model_version"] == 2
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "ValueError: bad poster" in second["exc"]


def test_plain_line_has_time_level_logger_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("worker.test").warning("slow poster %s", "x")
    (line,) = lines(capsys)
    assert line.endswith("WARNING worker.test: slow poster x")
    assert line[:4].isdigit()


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_secrets_are_masked(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", fmt)
    log = logging.getLogger("worker.test")
    log.info("GET %s", "https://api.themoviedb.org/3/movie/603?api_key=s3cr3tKEY&language=en")
    log.info("sent Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig")
    log.info("request", extra={"url": "https://x.test/?api_key=s3cr3tKEY"})
    out = "\n".join(lines(capsys))
    assert "s3cr3tKEY" not in out
    assert "eyJhbGciOiJIUzI1NiJ9" not in out
    assert "api_key=***&language=en" in out
    assert "Bearer ***" in out


def test_redact_leaves_other_text_alone() -> None:
    assert redact("tmdb_id=603 poster=/abc.jpg") == "tmdb_id=603 poster=/abc.jpg"
    assert redact("?API_KEY=k1&b=2") == "?API_KEY=***&b=2"


def test_noisy_loggers_quiet_unless_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("kafka.conn").info("connecting")
    logging.getLogger("httpx").info("HTTP Request")
    logging.getLogger("kafka.conn").warning("broker down")
    assert [line.split(" ", 3)[-1] for line in lines(capsys)] == ["kafka.conn: broker down"]
    configure_logging("DEBUG")
    logging.getLogger("kafka.conn").info("connecting")
    assert len(lines(capsys)) == 1


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError):
        configure_logging("INFO", "xml")
    with pytest.raises(ValueError):
        configure_logging("LOUD")
