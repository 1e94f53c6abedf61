"""Versions side by side on the same films: a report (JSON), a table and one chart (PNG).

A version is scored only on its own labels, so two versions with other label sets are
compared on what each claims to do; the report says which labels they share, and gives
each version's all-genres baseline (every label predicted for every film) for scale.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poster_genres.schemas.model import is_complete, latest_version
from poster_genres.trainer.errors import DataError, ReleaseError
from poster_genres.trainer.movielens import load_movies
from poster_genres.trainer.posters import PosterCache
from poster_genres.trainer.release import candidate_versions, serving, version_dir
from poster_genres.trainer.scoring import (
    Films,
    Scored,
    all_genres_baseline,
    evaluation_films,
    figures,
    score_version,
)
from poster_genres.trainer.settings import EvaluateSettings

log = logging.getLogger(__name__)

HEADLINE = (("macro_f1", "macro F1"), ("micro_f1", "micro F1"), ("samples_f1", "samples F1"))


def evaluate_versions(settings: EvaluateSettings) -> dict[str, Any]:
    """The `evaluate` command's report: the versions asked for (or the default two)."""
    model_dir = settings.model_dir
    versions = list(dict.fromkeys(settings.versions)) or default_versions(model_dir)
    if not versions:
        raise ReleaseError(f"no model version in {model_dir} to evaluate")
    folders = [version_dir(model_dir, v) for v in versions]
    films = evaluation_films(
        load_movies(settings).labelled,
        settings.exclude_genres,
        PosterCache(settings.posters),
        settings.test_fraction,
    )
    if len(films) == 0:
        raise DataError(f"no evaluation film has a poster in {settings.posters}")
    scored = [score_version(folder, films, settings.batch_size) for folder in folders]
    served = serving(model_dir)
    roles = {
        v: "served" if v == served else "candidate" if f.parent != model_dir else ""
        for v, f in zip(versions, folders, strict=True)
    }
    return compare(scored, films, roles)


def default_versions(model_dir: Path) -> list[int]:
    """The served version (if it is there) and the newest one (a candidate, maybe)."""
    newest = max([*candidate_versions(model_dir), latest_version(model_dir) or 0])
    served = serving(model_dir)
    if served is not None and not is_complete(model_dir / str(served)):
        log.warning(
            "served version %d is missing from %s; evaluating the newest", served, model_dir
        )
        served = None
    return list(dict.fromkeys(v for v in (served, newest or None) if v is not None))


def compare(scored: Sequence[Scored], films: Films, roles: Mapping[int, str]) -> dict[str, Any]:
    """The report: each version's figures on the films that every version could score."""
    usable = np.ones(len(films), bool)
    for s in scored:
        usable &= ~np.isnan(s.scores).any(axis=1)
    rows = np.flatnonzero(usable)
    skipped = {tmdb_id: why for s in scored for tmdb_id, why in s.failed.items()}
    versions = []
    for s in scored:
        baseline = all_genres_baseline(films, s.metadata.labels, rows)
        versions.append(
            {
                "version": s.version,
                "role": roles.get(s.version, ""),
                "labels": s.metadata.labels,
                "created_at": s.metadata.created_at.isoformat(),
                **figures(s, films, rows),
                "all_genres_baseline": {key: baseline[key] for key, _ in HEADLINE},
            }
        )
    return {
        "films": {**films.subset(rows).digest(), "skipped_posters": skipped},
        "versions": versions,
        "labels": [label_overlap(a, b) for a, b in itertools.combinations(versions, 2)],
    }


def label_overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Which labels two versions share, and which only one of them has."""
    la, lb = a["labels"], b["labels"]
    return {
        "versions": [a["version"], b["version"]],
        "shared": [x for x in la if x in lb],
        f"only_{a['version']}": [x for x in la if x not in lb],
        f"only_{b['version']}": [x for x in lb if x not in la],
    }


def table(report: Mapping[str, Any]) -> str:
    """The report as text: headline metrics, then per genre P, R, F1 and support per version."""
    versions = report["versions"]
    films = report["films"]
    lines = [
        (
            f"{films['count']} evaluation films (sha256 {str(films['sha256'])[:12]}), "
            f"{len(films['skipped_posters'])} posters skipped"
        ),
        "",
    ]
    names = [f"v{v['version']}" + (f" ({v['role']})" if v["role"] else "") for v in versions]
    lines.append(f"{'':<22}" + "".join(f"{n:>26}" for n in names))
    for key, title in HEADLINE:
        cells = [f"{v[key]:.3f} (all: {v['all_genres_baseline'][key]:.3f})" for v in versions]
        lines.append(f"{title:<22}" + "".join(f"{c:>26}" for c in cells))
    header = f"{'P':>4}  {'R':>4}  {'F1':>4} {'n':>4}"
    lines += ["", f"{'genre':<22}" + "".join(f"{header:>26}" for _ in versions)]
    for genre in _all_labels(versions):
        cells = [_genre_cell(v, genre) for v in versions]
        lines.append(f"{genre[:21]:<22}" + "".join(f"{c:>26}" for c in cells))
    for overlap in report["labels"]:
        a, b = overlap["versions"]
        lines.append(
            f"v{a} and v{b} share {len(overlap['shared'])} labels; only v{a}: "
            f"{', '.join(overlap[f'only_{a}']) or '-'}; only v{b}: "
            f"{', '.join(overlap[f'only_{b}']) or '-'}"
        )
    return "\n".join(lines)


def _genre_cell(version: Mapping[str, Any], genre: str) -> str:
    """`P R F1 n` of one genre, or a dash when the version lacks the label."""
    row = next((r for r in version["per_genre"] if r["genre"] == genre), None)
    if row is None:
        return "-"
    return f"{row['precision']:.2f}  {row['recall']:.2f}  {row['f1']:.2f} {row['support']:>4}"


def _all_labels(versions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every version's labels, in first-seen order."""
    return list(dict.fromkeys(label for v in versions for label in v["labels"]))


def write_comparison(report: Mapping[str, Any], out_dir: Path, name: str) -> list[Path]:
    """Write `<name>.json` and `<name>.png` (per-genre F1 of each version, grouped) to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(report, indent=2), "utf-8")
    return [json_path, plot_comparison(report, out_dir / f"{name}.png")]


def plot_comparison(report: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars: F1 per genre, one bar per version (none where it lacks the label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = report["versions"]
    genres = _all_labels(versions)
    x = np.arange(len(genres))
    width = 0.8 / max(len(versions), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(genres) + 2), 4.5))
    for k, v in enumerate(versions):
        f1 = {r["genre"]: r["f1"] for r in v["per_genre"]}
        at = [i for i, g in enumerate(genres) if g in f1]
        label = (
            f"v{v['version']} {v['role']}: macro F1 {v['macro_f1']:.3f}, "
            f"micro F1 {v['micro_f1']:.3f}"
        )
        ax.bar(
            x[at] + (k - (len(versions) - 1) / 2) * width,
            [f1[genres[i]] for i in at],
            width,
            label=label,
        )
    ax.set_xticks(x, genres, rotation=45, ha="right")
    ax.set_ylim(0, 1 + 0.1 * len(versions))  # room for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("F1")
    ax.set_title(f"F1 per genre on {report['films']['count']} evaluation films")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
