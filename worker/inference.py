"""Score the downloaded posters of a batch in one call of the model.

One call per batch is what makes a GPU (or the CPU's vector units) pay off; a poster
the model cannot decode is isolated by the classifier and fails alone.
"""

from __future__ import annotations

import logging
import time

from worker.classifier import Classifier
from worker.errors import WorkerError
from worker.jobs import Batch
from worker.metrics import WorkerMetrics
from worker.results import error_summary

log = logging.getLogger(__name__)


def classify_batch(batch: Batch, classifier: Classifier | None, metrics: WorkerMetrics) -> None:
    """Set `scores` (or `error`) on every job of the batch that has a poster."""
    jobs = [job for job in batch.jobs if job.classifiable]
    if not jobs:
        return
    if classifier is None:
        raise RuntimeError("no model is loaded")
    images = [job.poster.content for job in jobs if job.poster is not None]
    begun = time.monotonic()
    try:
        results = classifier.classify(images)
    except Exception as exc:
        log.exception("the model failed on a batch of %d posters", len(jobs))
        detail = f"the model failed on the batch: {error_summary(exc)}"
        results = [WorkerError(detail) for _ in jobs]
    metrics.inference_seconds.observe(time.monotonic() - begun)
    for job, result in zip(jobs, results):
        if isinstance(result, WorkerError):
            job.error = result
            job.error.attempts = job.poster.attempts if job.poster is not None else 0
        else:
            job.scores = result
