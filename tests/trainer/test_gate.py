"""The release gate of `train`, and `evaluate`, on synthetic posters with a tiny extractor."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from demo.synthetic import SyntheticDataset
from poster_genres.schemas.model import (
    CANDIDATES_DIR,
    ModelMetadata,
    ServingPointer,
    served_version,
)
from poster_genres.trainer.cli import HELD_BACK, run
from poster_genres.trainer.settings import EvaluateSettings, HeadSettings, TrainSettings

from .conftest import IMAGE_SIZE

GOOD = HeadSettings(epochs=30, patience=10, batch_size=32)
WORSE = HeadSettings(epochs=1, patience=0, learning_rate=1e-7)  # barely moves from its start


def with_imax(data: SyntheticDataset, root: Path) -> SyntheticDataset:
    """A copy of the data set in which every third film is also tagged IMAX."""
    rows = list(csv.reader(data.movies_csv.open(encoding="utf-8")))
    for i, row in enumerate(rows[1:]):
        if i % 3 == 0 and row[2] != "(no genres listed)":
            row[2] += "|IMAX"
    root.mkdir(parents=True)
    with (root / "movies.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    (root / "links.csv").write_bytes(data.links_csv.read_bytes())
    return SyntheticDataset(root, root / "movies.csv", root / "links.csv", data.posters_dir)


@pytest.fixture(scope="module")
def data(synthetic: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    return with_imax(synthetic, tmp_path_factory.mktemp("imax") / "ml")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # embeddings shared by every run here


def settings_for(
    data: SyntheticDataset, extractor: Path, cache: Path, model_dir: Path, **extra: object
) -> TrainSettings:
    values: dict[str, object] = {
        "movielens": data.root,
        "posters": data.posters_dir,
        "offline": True,
        "feature_extractor": str(extractor),
        "extra_extractor": None,  # the second extractor has its own test (test_embeddings.py)
        "image_size": IMAGE_SIZE,
        "model_dir": model_dir,
        "cache_dir": cache,
        "min_genre_count": 3,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "folds": 1,
        "repeats": 1,
        "head": GOOD,
        "progress": False,
    }
    values.update(extra)
    return TrainSettings(**values)


@pytest.fixture(scope="module")
def first(
    data: SyntheticDataset,
    tiny_extractor: Path,
    cache_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A model folder whose first version was trained and served."""
    model_dir = tmp_path_factory.mktemp("first") / "models"
    assert run("train", settings_for(data, tiny_extractor, cache_dir, model_dir)) == 0
    return model_dir


@pytest.fixture
def model_dir(first: Path, tmp_path: Path) -> Path:
    """A copy of `first` for one test to change."""
    return Path(shutil.copytree(first, tmp_path / "models"))


def gate_report(version_dir: Path) -> dict:
    return json.loads((version_dir / "report" / "gate.json").read_text())


@pytest.mark.slow
def test_the_first_version_is_served_when_it_beats_the_all_genres_baseline(first: Path) -> None:
    assert ServingPointer.read(first).version == 1  # type: ignore[union-attr]
    report = gate_report(first / "1")
    assert report["decision"]["passed"] and "all-genres baseline" in report["decision"]["reason"]
    (version,) = report["versions"]
    assert version["macro_f1"] > version["all_genres_baseline"]["macro_f1"]
    metadata = ModelMetadata.read(first / "1")
    assert "IMAX" not in metadata.labels  # a format, not a genre: left out by default
    assert metadata.training_data["excluded_genres"] == ["IMAX", "(no genres listed)"]
    assert {g["genre"] for g in metadata.metrics["per_genre"]} == set(metadata.labels)


@pytest.mark.slow
def test_a_worse_version_is_held_back(
    data: SyntheticDataset,
    tiny_extractor: Path,
    cache_dir: Path,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(data, tiny_extractor, cache_dir, model_dir, head=WORSE)
    assert run("train", settings) == HELD_BACK
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert printed["promoted"] is False
    assert printed["gate"].startswith("worse than served version 1")
    candidate = model_dir / CANDIDATES_DIR / "2"
    assert (candidate / "saved_model.pb").is_file() and not (model_dir / "2").exists()
    assert served_version(model_dir) == 1 and ServingPointer.read(model_dir).version == 1
    report = gate_report(candidate)
    assert not report["decision"]["passed"]
    roles = [(v["version"], v["role"]) for v in report["versions"]]
    assert roles == [(2, "candidate"), (1, "served")]
    assert (candidate / "report" / "gate.png").read_bytes()[:4] == b"\x89PNG"
    # its number stays taken: the next version is 3
    assert run("train", settings_for(data, tiny_extractor, cache_dir, model_dir)) == 0
    assert served_version(model_dir) == 3 and ServingPointer.read(model_dir).previous == [1]


@pytest.mark.slow
def test_a_version_not_worse_is_promoted_and_force_and_no_promote_override(
    data: SyntheticDataset,
    tiny_extractor: Path,
    cache_dir: Path,
    model_dir: Path,
) -> None:
    assert run("train", settings_for(data, tiny_extractor, cache_dir, model_dir)) == 0
    assert (model_dir / "2" / "saved_model.pb").is_file()
    assert not (model_dir / CANDIDATES_DIR / "2").exists()
    served = ServingPointer.read(model_dir)
    assert served is not None and (served.version, served.previous) == (2, [1])
    assert gate_report(model_dir / "2")["decision"]["passed"]
    only = settings_for(data, tiny_extractor, cache_dir, model_dir, promote=False)
    assert run("train", only) == 0  # trains and reports only
    assert (model_dir / CANDIDATES_DIR / "3").is_dir() and served_version(model_dir) == 2
    forced = settings_for(data, tiny_extractor, cache_dir, model_dir, head=WORSE, force=True)
    assert run("train", forced) == 0
    assert served_version(model_dir) == 4 and not gate_report(model_dir / "4")["decision"]["passed"]


@pytest.mark.slow
def test_evaluate_compares_the_served_and_the_newest_version(
    data: SyntheticDataset,
    tiny_extractor: Path,
    cache_dir: Path,
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_imax_label = settings_for(
        data, tiny_extractor, cache_dir, model_dir, exclude_genres=[], promote=False
    )
    assert run("train", with_imax_label) == 0
    assert "IMAX" in ModelMetadata.read(model_dir / CANDIDATES_DIR / "2").labels
    capsys.readouterr()
    settings = EvaluateSettings(
        movielens=data.root,
        posters=data.posters_dir,
        model_dir=model_dir,
        test_fraction=0.2,
        out=tmp_path / "out",
        progress=False,
    )
    assert run("evaluate", settings) == 0
    table = capsys.readouterr().out
    assert "v1 (served)" in table and "v2 (candidate)" in table and "IMAX" in table
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    roles = [(v["version"], v["role"]) for v in report["versions"]]
    assert roles == [(1, "served"), (2, "candidate")]
    v1, v2 = report["versions"]
    assert "IMAX" not in v1["labels"] and {g["genre"] for g in v2["per_genre"]} == set(v2["labels"])
    (overlap,) = report["labels"]
    assert overlap["only_2"] == ["IMAX"] and overlap["only_1"] == []
    assert set(overlap["shared"]) == set(v1["labels"])
    # the same films as the training run's test split: one yardstick
    films = ModelMetadata.read(model_dir / "1").metrics["films"]
    assert report["films"]["count"] == films["count"]
    assert report["films"]["sha256"] == films["sha256"]
    assert v1["macro_f1"] == pytest.approx(
        ModelMetadata.read(model_dir / "1").metrics["macro_f1"], abs=0.02
    )  # the signature scores what training did
    assert (tmp_path / "out" / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    assert run("evaluate", settings.model_copy(update={"versions": [7]})) == 2
