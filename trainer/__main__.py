"""Entry point of `genre-trainer` and `python -m poster_genres.trainer`."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the command's settings once, set up logging and run it."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tensorflow_hub needs Keras 2 (tf-keras)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from poster_genres.common.logs import configure_logging
    from poster_genres.trainer import cli

    command, settings = cli.parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    configure_logging(settings.log_level, settings.log_format)
    return cli.run(command, settings)


if __name__ == "__main__":
    raise SystemExit(main())
