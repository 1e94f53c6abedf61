"""The one record each job ends as: a `movies.genres` output or a dead letter.

Building a result never raises: a job that cannot become an output (a bug, a missing
model) becomes an `internal_error` dead letter instead, so one event cannot take its
batch down and every input still ends as exactly one record. A dead letter must always
be sendable, or its batch could never be committed: the original key is cut to 1 KiB,
and a letter whose serialised size (JSON escapes a control byte as six) would pass
`max_dead_letter_bytes` drops the raw value, which stays in the input topic.
"""

from __future__ import annotations

import copy
import logging
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime

from poster_genres.schemas import DeadLetter, MovieGenres, OriginalRecord
from poster_genres.schemas.events import is_utf8
from poster_genres.worker.classifier import Classifier
from poster_genres.worker.deadletters import Headers, dead_letter_headers
from poster_genres.worker.errors import WorkerError
from poster_genres.worker.jobs import Job, output_event_id
from poster_genres.worker.metrics import GenreAgreement

log = logging.getLogger(__name__)


KEY_SHOWN_BYTES = 1024  # of the original key, in a dead letter and as its record key
DETAIL_CHARS = 2000


@dataclass
class Result:
    """The record an input ends as (an output or a dead letter), ready to send."""

    topic: str
    key: bytes | None
    value: bytes
    code: str  # the dead letter's error code; empty for an output
    input_timestamp_ms: int | None
    job: Job | None = field(default=None, repr=False)  # to rebuild it smaller if refused
    smallest: bool = False  # a dead letter without the raw value: nothing left to drop
    headers: Headers = field(default_factory=list)  # Kafka record headers (dead letters)
    model_version: int | None = None  # the model that scored an output
    agreement: GenreAgreement | None = None  # an output's genres against its page's


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
    max_dead_letter_bytes: int = 900_000

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
        page_genres = job.poster.page_genres
        source_event_id = job.event_id or ""
        output = MovieGenres(
            event_id=output_event_id(source_event_id, classifier.version),
            source_event_id=source_event_id,
            tmdb_id=job.event.tmdb_id,
            title=job.event.title,
            genres=genres,
            scores=by_label,
            model_version=classifier.version,
            poster_url=job.poster.url,
            classified_at=_now(),
            page_genres=None if page_genres is None else list(page_genres),
        )
        exclude = {"page_genres"} if page_genres is None else None  # absent, not null
        value = output.model_dump_json(exclude=exclude).encode()
        key = str(job.event.tmdb_id).encode()
        return Result(
            self.output_topic,
            key,
            value,
            "",
            job.record.timestamp,
            job,
            model_version=classifier.version,
            agreement=_agreement(classifier, genres, page_genres),
        )

    def dead_letter(self, job: Job, error: WorkerError, drop_value: bool = False) -> Result:
        """The dead letter of a job: the error, and the original record to replay."""
        record = job.record
        key = str(job.event.tmdb_id).encode() if job.event else _shown_key(record.key)
        value = self._letter(job, error, drop_value).model_dump_json().encode()
        if not drop_value and len(key or b"") + len(value) > self.max_dead_letter_bytes:
            note = (
                f" (raw value dropped: the dead letter would be {len(value)} bytes, "
                f"over MAX_DEAD_LETTER_BYTES={self.max_dead_letter_bytes})"
            )
            return self.dead_letter(job, _amended(error, note), drop_value=True)
        log.info(
            "dead letter %s for %s[%d]@%d: %s",
            error.code,
            record.topic,
            record.partition,
            record.offset,
            error.detail,
        )
        headers = dead_letter_headers(
            record.headers,
            str(error.code),
            record.topic,
            record.partition,
            record.offset,
            error.attempts,
        )
        return Result(
            self.dlq_topic,
            key,
            value,
            str(error.code),
            record.timestamp,
            job,
            drop_value,
            headers,
        )

    def refused(self, result: Result, exc: Exception) -> Result | None:
        """A smaller dead letter for a result the broker refused; None if none is smaller."""
        if result.smallest or result.job is None:
            return None
        job = result.job
        if result.code and job.error is not None:
            note = f"; the broker refused its dead letter ({exc!r}), sent again without the value"
            error = _amended(job.error, note)
        else:
            error = WorkerError(f"the broker refused the output: {exc!r}")
        return self.dead_letter(job, error, drop_value=True)

    def _letter(self, job: Job, error: WorkerError, drop_value: bool) -> DeadLetter:
        record = job.record
        original = OriginalRecord.from_raw(
            record.topic,
            record.partition,
            record.offset,
            _shown_key(record.key),
            None if drop_value else record.value,
            record.timestamp,
        ).model_copy(
            update={
                "key_bytes": None if record.key is None else len(record.key),
                "key_truncated": record.key is not None and len(record.key) > KEY_SHOWN_BYTES,
            }
        )
        if drop_value and record.value is not None:
            original = original.model_copy(
                update={"value_bytes": len(record.value), "value_dropped": True}
            )
        return DeadLetter(
            error=error.code,
            detail=error.detail[:DETAIL_CHARS],
            attempts=error.attempts,
            failed_at=_now(),
            tmdb_id=job.event.tmdb_id if job.event else None,
            source_event_id=job.event_id,
            original=original,
        )


def _agreement(
    classifier: Classifier, genres: list[str], page_genres: tuple[str, ...] | None
) -> GenreAgreement | None:
    """The output's genres next to its page's, if the page lists a genre the model has."""
    labels = classifier.labels
    page = frozenset(page_genres or ()).intersection(labels)
    if not page:
        return None
    return GenreAgreement(classifier.version, tuple(labels), frozenset(genres), page)


def _amended(error: WorkerError, note: str) -> WorkerError:
    """A copy of `error` (same class, code and attempts) with `note` added to its detail."""
    amended = copy.copy(error)
    amended.detail = f"{error.detail}{note}"
    return amended


def _shown_key(key: bytes | None) -> bytes | None:
    """The first KiB of a key, cut between UTF-8 characters when the key is text."""
    if key is None or len(key) <= KEY_SHOWN_BYTES:
        return key
    shown = key[:KEY_SHOWN_BYTES]
    if is_utf8(key):
        while not is_utf8(shown):
            shown = shown[:-1]
    return shown
