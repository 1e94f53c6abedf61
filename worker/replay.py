"""`genre-worker replay`: put dead letters back on the input topic once their cause is fixed.

A dead letter keeps the input's key, raw value and headers, so the input can be sent
again as it was; one whose value was cut or dropped cannot be, and is counted instead of
half-sent. Progress is the offset of a consumer group of its own, committed only after
the broker acknowledged what was replayed up to it: a second run resumes where the
first stopped and replays nothing twice. A run stops at the end offsets it saw at start,
so the dead letters that the replayed records may cause are not replayed again at once.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from poster_genres.common.kafka import KafkaSettings, security_config
from poster_genres.schemas import DeadLetter
from poster_genres.worker.deadletters import Headers, original_headers

log = logging.getLogger(__name__)

POLL_MS = 1000
MAX_RECORDS = 500
IDLE_LIMIT_S = 30.0  # no record for this long before the end offsets: give up (compacted gaps)
PROGRESS_EVERY_S = 2.0
SEND_TIMEOUT_S = 60.0


class ReplaySettings(KafkaSettings):
    """What `genre-worker replay` reads from the environment (the worker's topic names)."""

    input_topic: str = "movies.new"
    dlq_topic: str = "movies.new.dlq"
    log_level: str = "INFO"
    log_format: Literal["plain", "json"] = "plain"


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay: by error code and by time (None: any)."""

    codes: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    time_of: Literal["failed_at", "record"] = "failed_at"

    def matches(self, letter: DeadLetter, record_timestamp_ms: int | None) -> bool:
        """Whether `letter` (read from a record with that timestamp) is selected."""
        if self.codes and str(letter.error) not in self.codes:
            return False
        when = _aware(letter.failed_at)
        if self.time_of == "record" and record_timestamp_ms is not None:
            when = datetime.fromtimestamp(record_timestamp_ms / 1000, UTC)
        if self.since is not None and when < self.since:
            return False
        return self.until is None or when < self.until


@dataclass
class Summary:
    """What a run came to: dead letters read, selected, replayed, and skipped by reason."""

    read: int = 0
    matched: int = 0
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        """One line for the terminal."""
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.skipped.items())) or "none"
        return (
            f"read={self.read} matched={self.matched} replayed={self.replayed} "
            f"skipped={sum(self.skipped.values())} ({reasons})"
        )


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time; one without a zone is taken as UTC."""
    return _aware(datetime.fromisoformat(text))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def original_record(letter: DeadLetter) -> tuple[bytes | None, bytes] | str:
    """The input's (key, value) to send again, or why it cannot be sent whole."""
    original = letter.original
    if original.value_truncated:
        return "value_truncated"
    value = original.raw_value()
    if value is None:
        return "value_dropped" if original.value_bytes else "no_value"
    if original.value_bytes and len(value) != original.value_bytes:
        return "value_truncated"
    return original.raw_key(), value


@dataclass
class _Pending:
    """Replayed sends of one poll, and the offsets to commit once they are acknowledged."""

    futures: list[Any] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class Replayer:
    """Reads the dead-letter topic up to its end at start, sends the selected inputs again."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        producer: KafkaProducer | None,  # None: a dry run (nothing sent, nothing committed)
        target_topic: str,
        selection: Selection,
        report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    ):
        self.consumer = consumer
        self.producer = producer
        self.target_topic = target_topic
        self.selection = selection
        self.report = report
        self.summary = Summary()
        self._ends: dict[TopicPartition, int] = {}
        self._finished: set[TopicPartition] = set()
        self._started_ms = 0

    def run(self, dlq_topic: str) -> Summary:
        """Replay from the group's committed offsets to the end offsets seen now."""
        partitions = [
            TopicPartition(dlq_topic, p)
            for p in sorted(self.consumer.partitions_for_topic(dlq_topic) or ())
        ]
        if not partitions:
            raise KafkaError(f"topic {dlq_topic} does not exist")
        self.consumer.assign(partitions)
        self._ends = self.consumer.end_offsets(partitions)
        self._started_ms = int(time.time() * 1000)
        last_record = last_report = time.monotonic()
        while self._remaining():
            polled = self.consumer.poll(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
            records = [r for tp, batch in polled.items() for r in self._in_range(tp, batch)]
            now = time.monotonic()
            if records:
                last_record = now
                self._replay(records)
            elif now - last_record > IDLE_LIMIT_S:
                log.warning("no dead letter arrived for %.0f s before the end: stopping", now)
                break
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                self.report(f"replay: {self.summary.line()}")
        return self.summary

    def _in_range(self, tp: TopicPartition, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """The records that were there at start; the partition is done at the first that was not.

        Before the end offset seen at start, or older than the start: some brokers (Tansu)
        report the end of a multi-record batch as its first offset plus one.
        """
        for i, record in enumerate(records):
            if record.offset >= self._ends[tp] and record.timestamp >= self._started_ms:
                self._finished.add(tp)
                return records[:i]
        return records

    def _remaining(self) -> list[TopicPartition]:
        """Partitions not read to their end at start yet; the others are paused."""
        left, done = [], []
        for tp, end in self._ends.items():
            position, highwater = self.consumer.position(tp), self.consumer.highwater(tp)
            at_end = position >= end and (highwater is None or position >= highwater)
            (done if tp in self._finished or at_end else left).append(tp)
        if done:
            self.consumer.pause(*done)
        return left

    def _replay(self, records: list[ConsumerRecord]) -> None:
        """Send the selected records of one poll, await the broker, then commit past them."""
        pending = _Pending()
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            pending.offsets[tp] = max(pending.offsets.get(tp, 0), record.offset + 1)
            self._consider(record, pending)
        if self.producer is None:
            return
        if pending.futures:
            self.producer.flush(timeout=SEND_TIMEOUT_S)
            for future in pending.futures:
                future.get(timeout=0)  # raises if the broker refused: nothing is committed
        self.summary.replayed += len(pending.futures)
        self.consumer.commit(
            {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in pending.offsets.items()}
        )

    def _consider(self, record: ConsumerRecord, pending: _Pending) -> None:
        """Count one dead letter and, if it is selected and whole, send its input again."""
        self.summary.read += 1
        try:
            letter = DeadLetter.model_validate_json(record.value or b"")
        except ValidationError:
            self.summary.skipped["unreadable"] += 1
            return
        if not self.selection.matches(letter, record.timestamp):
            return
        self.summary.matched += 1
        original = original_record(letter)
        if isinstance(original, str):
            self.summary.skipped[original] += 1
            return
        if self.producer is None:
            self.summary.replayed += 1  # a dry run: would be replayed
            return
        key, value = original
        headers: Headers = original_headers(record.headers)
        pending.futures.append(
            self.producer.send(self.target_topic, key=key, value=value, headers=headers)
        )


def build_replay_consumer(settings: KafkaSettings, group_id: str) -> KafkaConsumer:
    """A consumer of the dead-letter topic whose progress is its own group's offsets."""
    return KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **security_config(settings),
    )
