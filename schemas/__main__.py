"""`python -m schemas [TOPIC]`: print the JSON Schema of the events."""

from __future__ import annotations

import argparse
import json

from schemas.events import json_schemas


def main(argv: list[str] | None = None) -> int:
    """Print every event's JSON Schema, or one topic's."""
    schemas = json_schemas()
    parser = argparse.ArgumentParser(prog="python -m schemas", description=__doc__)
    parser.add_argument("topic", nargs="?", choices=sorted(schemas), help="one topic only")
    args = parser.parse_args(argv)
    print(json.dumps(schemas[args.topic] if args.topic else schemas, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
