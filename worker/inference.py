"""Score the downloaded posters of a batch in one call of the model.

One call per batch is what makes a GPU (or the CPU's vector units) pay off; a poster
the model cannot decode is isolated by the classifier and fails alone. A failure of the
device (out of memory, an internal or unavailable device) says nothing about the
posters: the batch is tried again, then in halves, down to single posters; a poster
the device still cannot score stops the worker with its batch uncommitted rather than
being dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from poster_genres.schemas import ErrorCode
from poster_genres.worker.classifier import Classifier
from poster_genres.worker.errors import WorkerError
from poster_genres.worker.jobs import Batch
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.results import error_summary

log = logging.getLogger(__name__)

# Errors of the device, not of the input: retried, never dead-lettered.
DEVICE_ERRORS: tuple[type[Exception], ...] = (
    tf.errors.ResourceExhaustedError,
    tf.errors.InternalError,
    tf.errors.UnavailableError,
)
RETRY_PAUSE_S = 0.5  # before the same posters go to the device again
SINGLE_POSTER_TRIES = 3

Scored = list[np.ndarray | WorkerError]


class DeviceFailed(RuntimeError):
    """The device kept failing on a single poster: stop without dead-lettering it."""


class InvalidScores(WorkerError):
    """The model gave a poster scores that are not finite numbers (NaN or infinity)."""

    code = ErrorCode.INVALID_SCORES


def classify_batch(
    batch: Batch,
    classifier: Classifier | None,
    metrics: WorkerMetrics,
    pause_s: float | None = None,
) -> None:
    """Set `scores` (or `error`) on every job of the batch that has a poster.

    Raises `DeviceFailed` when the device cannot score a poster even alone.
    """
    jobs = [job for job in batch.jobs if job.classifiable]
    if not jobs:
        return
    if classifier is None:
        raise RuntimeError("no model is loaded")
    images = [job.poster.content for job in jobs if job.poster is not None]
    begun = time.monotonic()
    try:
        pause = RETRY_PAUSE_S if pause_s is None else pause_s
        results = classify_resilient(classifier, images, pause)
    except DeviceFailed:
        raise
    except Exception as exc:
        log.exception("the model failed on a batch of %d posters", len(jobs))
        detail = f"the model failed on the batch: {error_summary(exc)}"
        results = [WorkerError(detail) for _ in jobs]
    metrics.inference_seconds.observe(time.monotonic() - begun)
    for job, result in zip(jobs, _checked(results, classifier.labels)):
        if isinstance(result, WorkerError):
            job.error = result
            job.error.attempts = job.poster.attempts if job.poster is not None else 0
        else:
            job.scores = result


def classify_resilient(classifier: Classifier, images: Sequence[bytes], pause_s: float) -> Scored:
    """`classifier.classify`, through device failures: try again, then in halves."""
    tries = SINGLE_POSTER_TRIES if len(images) == 1 else 2
    last: Exception | None = None
    for attempt in range(1, tries + 1):
        try:
            return classifier.classify(list(images))
        except DEVICE_ERRORS as exc:
            log.warning(
                "the device failed on %d posters (try %d of %d): %s",
                len(images),
                attempt,
                tries,
                _first_line(exc),
            )
            last = exc
        if attempt < tries or len(images) > 1:
            time.sleep(pause_s * attempt)
    if len(images) == 1:
        reason = _first_line(last) if last else "?"
        raise DeviceFailed(f"the device failed on one poster {tries} times: {reason}")
    half = len(images) // 2
    return classify_resilient(classifier, images[:half], pause_s) + classify_resilient(
        classifier, images[half:], pause_s
    )


def _checked(results: Scored, labels: list[str]) -> Scored:
    """The results, with rows that hold NaN or infinity replaced by `InvalidScores`."""
    checked: Scored = []
    for result in results:
        if isinstance(result, np.ndarray) and not np.all(np.isfinite(result)):
            bad = [label for label, score in zip(labels, result) if not np.isfinite(score)]
            shown = ", ".join(bad[:10]) + (", ..." if len(bad) > 10 else "")
            result = InvalidScores(f"the model gave non-finite scores (NaN or inf) for: {shown}")
        checked.append(result)
    return checked


def _first_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message.strip().splitlines()[0][:200] if message.strip() else type(exc).__name__
