"""Per-genre thresholds and the evaluation report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from poster_genres.trainer.evaluation import evaluate, plot_curves, tune_thresholds, write_report


def test_thresholds_are_tuned_per_label() -> None:
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 1]], np.float32)
    # label 0 separates at ~0.3, label 1 at ~0.8; one global 0.5 gets label 0 wrong
    scores = np.array([[0.35, 0.1], [0.4, 0.2], [0.2, 0.9], [0.1, 0.6], [0.25, 0.85]])
    thresholds = tune_thresholds(y, scores)
    assert 0.25 <= thresholds[0] < 0.35
    assert 0.6 <= thresholds[1] < 0.85
    tuned = evaluate(y, scores, thresholds, ["a", "b"])
    assert tuned["macro_f1"] == 1.0
    assert evaluate(y, scores, [0.5, 0.5], ["a", "b"])["macro_f1"] < 0.6
    assert tune_thresholds(np.zeros((3, 1)), np.random.rand(3, 1), default=0.6)[0] == 0.6


def test_evaluate_reports_per_genre_figures() -> None:
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.9], [0.1, 0.2]])
    report = evaluate(y, scores, [0.5, 0.5], ["a", "b"])
    a, b = report["per_genre"]
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == (0.5, 0.5, 0.5, 2)
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == (1.0, 1.0, 1.0, 2)
    assert report["macro_f1"] == 0.75
    assert report["micro_f1"] == 0.75


def test_report_files(tmp_path: Path) -> None:
    y = np.array([[1, 0], [0, 1]])
    report = {"validation": evaluate(y, np.array([[0.9, 0.1], [0.2, 0.8]]), [0.5, 0.5], ["a", "b"])}
    json_path, png_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["validation"]["macro_f1"] == 1.0
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = plot_curves({"loss": [0.9, 0.5], "val_loss": [0.95, 0.7]}, tmp_path / "c.png")
    assert curves.stat().st_size > 1000
