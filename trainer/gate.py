"""The release gate: a new version is served only if it is not worse than the served one.

`train` exports its version as a candidate (`MODEL_DIR/candidates/<N>/`, where workers
never look), scores it and the served version through their signatures on the same
evaluation films, and promotes it only when no gate metric is worse by more than the
tolerance. The first version (nothing served yet) has to beat the all-genres baseline
instead: predicting every label for every film. A version held back keeps its number and
its report, so `genre-trainer promote N` can still serve it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poster_genres.schemas.model import PointerError, is_complete, latest_version, served_version
from poster_genres.trainer.compare import compare, write_comparison
from poster_genres.trainer.export import REPORT_DIR
from poster_genres.trainer.release import promote
from poster_genres.trainer.scoring import Films, Scored, score_version
from poster_genres.trainer.settings import TrainSettings

log = logging.getLogger(__name__)

GATE_REPORT = "gate"  # report/gate.json and report/gate.png in the version folder


@dataclass(frozen=True)
class Decision:
    """Whether the candidate may be served, and why, in one line."""

    passed: bool
    reason: str
    against: int | None  # the served version it was measured against; None: the baseline


@dataclass(frozen=True)
class Released:
    """Where the new version ended up, and the gate's decision."""

    version_dir: Path
    promoted: bool
    decision: Decision
    report: dict[str, Any]


def judge(
    candidate: Mapping[str, Any],
    served: Mapping[str, Any] | None,
    baseline: Mapping[str, Any],
    metrics: Sequence[str],
    tolerance: float,
    served_number: int | None = None,
) -> Decision:
    """Not worse than `served` by more than `tolerance` on `metrics`; else beat `baseline`."""
    if served is not None:
        worse = [m for m in metrics if candidate[m] < served[m] - tolerance]
        name, ref, rule = f"served version {served_number}", served, f"tolerance {tolerance}"
    else:
        worse = [m for m in metrics if candidate[m] <= baseline[m]]
        name, ref, rule = "the all-genres baseline", baseline, "nothing served yet"
    shown = worse or list(metrics)
    figures = ", ".join(f"{m} {candidate[m]:.4f} vs {ref[m]:.4f}" for m in shown)
    if worse:
        return Decision(False, f"worse than {name} ({rule}): {figures}", served_number)
    return Decision(True, f"not worse than {name} ({rule}): {figures}", served_number)


def incumbent(model_dir: Path) -> int | None:
    """The served version to measure against: the pointer's, else the highest present."""
    try:
        wanted = served_version(model_dir)
    except PointerError as exc:
        log.warning("the gate measures against the highest version: %s", exc)
        wanted = None
    if wanted is not None and is_complete(model_dir / str(wanted)):
        return wanted
    highest = latest_version(model_dir)
    if wanted is not None:
        log.warning("served version %d is missing; the gate measures against %s", wanted, highest)
    return highest


def judge_candidate(
    candidate_dir: Path, films: Films, settings: TrainSettings
) -> tuple[Decision, dict[str, Any]]:
    """Score the candidate and the served version on `films`; the decision and the report."""
    if len(films) == 0:
        return Decision(False, "no evaluation films to judge it on", None), {}
    scored = [score_version(candidate_dir, films, settings.embed_batch_size)]
    roles = {scored[0].version: "candidate"}
    served = incumbent(settings.model_dir)
    if served is not None and (old_scores := _score_served(served, films, settings)):
        scored.append(old_scores)
        roles[served] = "served"
    report = compare(scored, films, roles)
    new, *old = report["versions"]
    decision = judge(
        new,
        old[0] if old else None,
        new["all_genres_baseline"],
        settings.gate_metrics,
        settings.gate_tolerance,
        served if old else None,
    )
    report["decision"] = {
        "passed": decision.passed,
        "reason": decision.reason,
        "metrics": list(settings.gate_metrics),
        "tolerance": settings.gate_tolerance,
    }
    return decision, report


def _score_served(version: int, films: Films, settings: TrainSettings) -> Scored | None:
    """The served version's scores, or None (then the baseline judges) if it will not run."""
    try:
        return score_version(settings.model_dir / str(version), films, settings.embed_batch_size)
    except Exception as exc:  # noqa: BLE001 (TensorFlow raises many types for a broken model)
        log.warning("cannot score served version %d (%s); the gate uses the baseline", version, exc)
        return None


def release_candidate(candidate_dir: Path, films: Films, settings: TrainSettings) -> Released:
    """Judge the candidate, write the gate's report into it, and promote it if allowed."""
    decision, report = judge_candidate(candidate_dir, films, settings)
    if report:
        write_comparison(report, candidate_dir / REPORT_DIR, GATE_REPORT)
    number = int(candidate_dir.name)
    if settings.promote and (decision.passed or settings.force):
        moved = promote(settings.model_dir, number)
        forced = "" if decision.passed else " (--force)"
        log.info("version %d promoted%s, %s: %s", number, forced, moved.line(), decision.reason)
        return Released(settings.model_dir / str(number), True, decision, report)
    if settings.promote:
        log.warning(
            "version %d held back in %s: %s; `genre-trainer promote %d` serves it anyway",
            number,
            candidate_dir,
            decision.reason,
            number,
        )
    else:
        log.info("version %d left in %s (--no-promote): %s", number, candidate_dir, decision.reason)
    return Released(candidate_dir, False, decision, report)
