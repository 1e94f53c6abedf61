"""The one record each job ends as: a `movies.genres` output or a dead letter.

Building a result never raises: a job that cannot become an output (a bug, a missing
model) becomes an `internal_error` dead letter instead, so one event cannot take its
batch down and every input still ends as exactly one record.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas import DeadLetter, MovieGenres, OriginalRecord
from worker.classifier import Classifier
from worker.deadletters import Headers, dead_letter_headers
from worker.errors import WorkerError
from worker.jobs import Job

log = logging.getLogger(__name__)


@dataclass
class Result:
    """The record an input ends as (an output or a dead letter), ready to send."""

    topic: str
    key: bytes | None
    value: bytes
    code: str  # the dead letter's error code; empty for an output
    input_timestamp_ms: int | None
    headers: Headers = field(default_factory=list)  # Kafka record headers (dead letters)
    model_version: int | None = None  # the model that scored an output


def error_summary(exc: BaseException) -> str:
    """`Type: message` plus the innermost frames, short enough for a dead letter."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(
        f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in reversed(frames)
    )
    return f"{type(exc).__name__}: {str(exc)[:300]}" + (f" at {where}" if where else "")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ResultBuilder:
    """Turns finished jobs into results for the output and dead-letter topics."""

    output_topic: str
    dlq_topic: str

    def build(self, job: Job, classifier: Classifier | None) -> Result:
        """The output of a classified job, or the dead letter of a failed one."""
        try:
            if job.error is not None:
                return self.dead_letter(job, job.error)
            return self.output(job, classifier)
        except Exception as exc:  # never let one event take the batch down
            log.exception("unexpected error building the result of offset %s", job.record.offset)
            return self.dead_letter(job, WorkerError(f"unexpected error: {error_summary(exc)}"))

    def output(self, job: Job, classifier: Classifier | None) -> Result:
        """The `movies.genres` event of a job whose poster was scored."""
        if job.scores is None or job.poster is None or job.event is None or classifier is None:
            raise RuntimeError("the event has neither scores nor an error")
        genres, by_label = classifier.genres(job.scores)
        output = MovieGenres(
            event_id=str(uuid.uuid4()),
            source_event_id=job.event_id or "",
            tmdb_id=job.event.tmdb_id,
            title=job.event.title,
            genres=genres,
            scores=by_label,
            model_version=classifier.version,
            poster_url=job.poster.url,
            classified_at=_now(),
        )
        value = output.model_dump_json().encode()
        key = str(job.event.tmdb_id).encode()
        return Result(
            self.output_topic, key, value, "", job.record.timestamp,
            model_version=classifier.version,
        )

    def dead_letter(self, job: Job, error: WorkerError) -> Result:
        """The dead letter of a job: the error, and the original record to replay."""
        record = job.record
        letter = DeadLetter(
            error=error.code,
            detail=error.detail,
            attempts=error.attempts,
            failed_at=_now(),
            tmdb_id=job.event.tmdb_id if job.event else None,
            source_event_id=job.event_id,
            original=OriginalRecord.from_raw(
                record.topic, record.partition, record.offset,
                record.key, record.value, record.timestamp,
            ),
        )
        key = str(job.event.tmdb_id).encode() if job.event else record.key
        log.info(
            "dead letter %s for %s[%d]@%d: %s",
            error.code, record.topic, record.partition, record.offset, error.detail,
        )
        value = letter.model_dump_json().encode()
        headers = dead_letter_headers(
            record.headers, str(error.code), record.topic, record.partition, record.offset,
            error.attempts,
        )
        return Result(self.dlq_topic, key, value, str(error.code), record.timestamp, headers)
