"""Polled records as jobs: the first stage, which needs no broker to test.

A record whose value is not a valid event becomes a job that already carries its
error, so it travels the same path to the dead-letter topic as a poster that failed;
a batch knows the offsets to commit once every job in it has a stored result. An event
without an `event_id` gets one derived from where it is stored (topic, partition,
offset), so a record delivered twice carries the same id twice and consumers can
deduplicate on it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from poster_genres.posters import Poster
from poster_genres.schemas import EventDecodeError, NewMovie, decode_new_movie
from poster_genres.worker.errors import InvalidEvent, WorkerError

log = logging.getLogger(__name__)

# Namespace of the worker's uuid5 ids; fixed forever, or redelivered records get new ids.
ID_NAMESPACE = uuid.UUID("4562356b-9b43-4504-a822-748d923f8fa7")


def record_event_id(topic: str, partition: int, offset: int) -> str:
    """The id of an event that came without one: the same on every delivery of the record."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{topic}/{partition}/{offset}"))


def output_event_id(source_event_id: str, model_version: int) -> str:
    """The id of the output of `source_event_id` scored by `model_version` (deterministic)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"genres/{source_event_id}/{model_version}"))


@dataclass
class Job:
    """One input record on its way to an output (`scores`) or a dead letter (`error`)."""

    record: ConsumerRecord
    event: NewMovie | None = None
    event_id: str | None = None
    fetch: concurrent.futures.Future[Poster] | None = None
    poster: Poster | None = None
    scores: np.ndarray | None = None
    error: WorkerError | None = None

    @property
    def classifiable(self) -> bool:
        """A poster is in hand and nothing failed yet."""
        return self.poster is not None and self.error is None


@dataclass
class Batch:
    """Records from one poll, in order, and the offsets to commit once they are done."""

    jobs: list[Job]
    offsets: dict[TopicPartition, int]
    generations: dict[TopicPartition, int] = field(default_factory=dict)  # when polled

    def error_codes(self) -> Counter[str]:
        """How many jobs of the batch failed, by dead-letter code."""
        return Counter(str(job.error.code) for job in self.jobs if job.error is not None)


def decode_job(record: ConsumerRecord, max_event_bytes: int) -> Job:
    """Validate one record's value; an invalid one becomes a job carrying `InvalidEvent`."""
    job = Job(record)
    try:
        job.event = decode_new_movie(record.value, max_event_bytes)
    except EventDecodeError as exc:
        job.error = InvalidEvent(str(exc))
        return job
    job.event_id = job.event.event_id or record_event_id(
        record.topic, record.partition, record.offset
    )
    return job


def next_offsets(records: list[ConsumerRecord]) -> dict[TopicPartition, int]:
    """The offset to commit per partition once `records` are done: the highest one plus one."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, -1), record.offset + 1)
    return offsets


def decode_batch(records: list[ConsumerRecord], max_event_bytes: int) -> Batch:
    """Turn one poll's records into jobs, in order, with the offsets that finish them."""
    return Batch([decode_job(record, max_event_bytes) for record in records], next_offsets(records))
