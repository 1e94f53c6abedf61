"""Entry point of `genre-trainer` and `python -m trainer`."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tensorflow_hub needs Keras 2 (tf-keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the settings once and run the command."""
    from trainer import cli

    args = cli.parse_args(sys.argv[1:] if argv is None else argv)
    cli.configure_logging(args.log_level)
    settings = cli.settings_from_args(args, os.environ)
    return cli.run(args.command, settings, os.environ)


if __name__ == "__main__":
    raise SystemExit(main())
