"""`genre-worker`: consume movies.new, publish movies.genres (settings from the environment)."""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from poster_genres.worker.settings import WorkerSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="genre-worker",
        description="Tag movies.new events with genres from their posters. "
        "Settings come from environment variables (see the README). "
        "`genre-worker replay --help`: send dead letters to the input topic again.",
    )
    parser.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit 0 once the input is drained and nothing arrived for SECONDS",
    )
    parser.add_argument(
        "--wait-for-model",
        type=float,
        default=float("inf"),
        metavar="SECONDS",
        help="how long to wait for a model version in MODEL_DIR at start "
        "(default: as long as it takes)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:
        from poster_genres.worker.replay_cli import main as replay

        return replay(argv[1:])
    args = parse_args(argv)
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        print(f"genre-worker: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from poster_genres.worker.memory import limit_malloc_arenas

    limit_malloc_arenas(os.environ)  # before TensorFlow starts its threads

    from poster_genres.common.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    from poster_genres.worker.app import run

    return run(settings, exit_when_idle=args.exit_when_idle, wait_for_model=args.wait_for_model)


if __name__ == "__main__":
    raise SystemExit(main())
