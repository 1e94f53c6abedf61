"""`python -m poster_genres.schemas`: print the events' JSON Schema, or write and check the
contract files.

python -m poster_genres.schemas [TOPIC]      the JSON Schema of every topic (or of one)
python -m poster_genres.schemas write [DIR]  write the JSON Schemas and asyncapi.yaml
                                             (default schemas/json/)
python -m poster_genres.schemas check [DIR]  exit 1 if the files in DIR differ from the models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from poster_genres.schemas import contract


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in contract.TOPICS:
        argv = ["print", *argv]
    parser = argparse.ArgumentParser(
        prog="python -m poster_genres.schemas",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("print", help="print the JSON Schema of every topic, or of one")
    show.add_argument("topic", nargs="?", choices=list(contract.TOPICS))
    for name, text in (
        ("write", "write the contract files"),
        ("check", "check the contract files"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("directory", nargs="?", type=Path, default=contract.DEFAULT_DIR)
    args = parser.parse_args(argv)

    if args.command == "print":
        schemas = {
            topic: contract.standalone_schema(model) for topic, model in contract.TOPICS.items()
        }
        print(
            json.dumps(schemas[args.topic] if args.topic else schemas, indent=2, ensure_ascii=False)
        )
    elif args.command == "write":
        for path in contract.write(args.directory):
            print(path)
    else:
        if wrong := contract.stale(args.directory):
            print(
                f"stale contract files in {args.directory}: {', '.join(wrong)}; "
                "run `python -m poster_genres.schemas write` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{args.directory}: up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
