"""The command line of `genre-worker replay`: options, clients, progress and the summary.

Kept apart from `worker.replay` so that the replaying itself can be tested with plain
records and fake clients, and so that `genre-worker` alone keeps running the worker.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from poster_genres.worker.replay import ReplaySettings, Selection, parse_time

DEFAULT_GROUP = "genre-worker-replay"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options of `genre-worker replay`."""
    parser = argparse.ArgumentParser(
        prog="genre-worker replay",
        description="Send dead letters' original records to the input topic again. Kafka "
        "settings, INPUT_TOPIC and DLQ_TOPIC come from the environment, as for the worker.",
    )
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="CODE",
        help="replay dead letters with this error code (repeatable; default: any)",
    )
    for name, when in (("--since", "from this time on"), ("--until", "before this time")):
        parser.add_argument(
            name,
            type=parse_time,
            metavar="TIME",
            help=f"only dead letters {when} (ISO 8601; UTC if no zone)",
        )
    parser.add_argument(
        "--time-of",
        choices=["failed_at", "record"],
        default="failed_at",
        help="the time --since/--until compare: the letter's failed_at "
        "(default) or its record timestamp",
    )
    parser.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        help=f"consumer group whose offsets hold the progress (default {DEFAULT_GROUP})",
    )
    parser.add_argument(
        "--from-topic",
        metavar="TOPIC",
        help="the dead-letter topic (default: DLQ_TOPIC, movies.new.dlq)",
    )
    parser.add_argument(
        "--to-topic",
        metavar="TOPIC",
        help="where to send the records (default: INPUT_TOPIC, movies.new)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="read and count, send and commit nothing"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run one replay; 0 when done, 1 when the broker refused a send (run it again), 2: usage."""
    args = parse_args(argv)
    try:
        settings = ReplaySettings()
    except ValidationError as exc:
        print(f"genre-worker replay: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    from poster_genres.common.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    selection = Selection(frozenset(args.code), args.since, args.until, args.time_of)
    return _run(settings, args, selection)


def _run(settings: ReplaySettings, args: argparse.Namespace, selection: Selection) -> int:
    """Connect, replay, print the summary, close."""
    from kafka.errors import KafkaError

    from poster_genres.common.kafka import build_producer
    from poster_genres.worker.replay import Replayer, build_replay_consumer

    source = args.from_topic or settings.dlq_topic
    target = args.to_topic or settings.input_topic
    consumer = build_replay_consumer(settings, args.group)
    producer = None if args.dry_run else build_producer(settings, args.group)
    replayer = Replayer(consumer, producer, target, selection)
    what = "dry run, nothing sent" if args.dry_run else f"to {target}"
    print(f"replaying {source} ({what}), group {args.group}", file=sys.stderr)
    try:
        summary = replayer.run(source)
    except KafkaError as exc:
        print(
            f"genre-worker replay: stopped: {exc}; progress up to the last acknowledged "
            f"batch is kept, run it again: {replayer.summary.line()}",
            file=sys.stderr,
        )
        return 1
    finally:
        consumer.close(autocommit=False)
        if producer is not None:
            producer.close(timeout=10)
    print(("would replay: " if args.dry_run else "replayed: ") + summary.line())
    return 0
