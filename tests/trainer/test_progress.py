"""Progress: a bar on a terminal only, log lines (JSON with LOG_FORMAT=json) without one."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.synthetic import SyntheticDataset
from demo.tmdb import TmdbStandIn
from poster_genres.trainer.cli import parse_args
from poster_genres.trainer.progress import LOG_EVERY_S, Progress, draws_bar

from .conftest import small_movielens


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_draws_a_bar_on_a_terminal_only() -> None:
    assert draws_bar("auto", Terminal()) is True
    assert draws_bar("auto", io.StringIO()) is False
    assert draws_bar("always", io.StringIO()) is True
    assert draws_bar("never", Terminal()) is False
    assert draws_bar(True, io.StringIO()) is True and draws_bar(False, Terminal()) is False


def test_the_option_and_its_older_spellings() -> None:
    assert parse_args(["fetch-posters"], {})[1].progress == "auto"
    assert parse_args(["fetch-posters", "--progress", "always"], {})[1].progress == "always"
    assert parse_args(["fetch-posters", "--no-progress"], {})[1].progress == "never"
    env = {"TRAINER_PROGRESS": "never"}
    assert parse_args(["fetch-posters"], env)[1].progress == "never"
    assert parse_args(["fetch-posters", "--progress", "always"], env)[1].progress == "always"
    settings = parse_args(["fetch-posters"], {})[1]
    assert type(settings)(progress=False).progress == "never"  # the Python API of before
    with pytest.raises(SystemExit):
        parse_args(["fetch-posters", "--progress", "sometimes"], {})


def test_without_a_terminal_progress_is_logged_every_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    now = [0.0]
    caplog.set_level(logging.INFO, logger="poster_genres.trainer.progress")
    with Progress(100, "embedding posters", "img", "auto", clock=lambda: now[0]) as bar:
        for _ in range(100):
            now[0] += LOG_EVERY_S / 40  # 100 items over 2.5 intervals
            bar.update()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages  # two on the way, one at the end
    assert messages[0].startswith("embedding posters: 40/100 img (40%)")
    assert messages[-1].startswith("embedding posters: 100/100 img (100%)")
    assert sys.stderr.getvalue() == ""  # no bar frames


def test_never_logs_only_the_end(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    now = [0.0]
    caplog.set_level(logging.INFO, logger="poster_genres.trainer.progress")
    with Progress(10, "fetching posters", "poster", "never", clock=lambda: now[0]) as bar:
        for _ in range(10):
            now[0] += LOG_EVERY_S
            bar.update()
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "fetching posters: 10/10 poster"
    ]
    assert sys.stderr.getvalue() == ""


def test_a_piped_command_writes_json_lines_and_no_bar(
    synthetic: SyntheticDataset, tmp_path: Path
) -> None:
    """`fetch-posters` with stderr piped (as under cron or in a pod's log) and no option given."""
    ids = small_movielens(synthetic, tmp_path / "ml", 4)
    served = {i: (synthetic.posters_dir / f"{i}.jpg").read_bytes() for i in ids}
    with TmdbStandIn(posters=served) as server:
        env = dict(
            os.environ, TMDB_BASE_URL=server.base_url, POSTER_HOSTS=server.host, LOG_FORMAT="json"
        )
        env.pop("TRAINER_PROGRESS", None)
        result = subprocess.run(
            [sys.executable, "-m", "poster_genres.trainer", "fetch-posters", "--movielens", str(tmp_path / "ml"),
             "--posters", str(tmp_path / "posters")],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\r" not in result.stderr and "it/s" not in result.stderr  # no tqdm frames
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    progress = [r for r in records if r.get("logger") == "poster_genres.trainer.progress"]
    assert progress and progress[-1]["msg"].startswith("fetching posters: 4/4 poster")
