"""End to end: `genre-trainer train` on synthetic posters, the export contract, the worker's view."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from demo.synthetic import SyntheticDataset, draw_poster, write_dataset
from poster_genres.schemas.model import INPUT_NAME, OUTPUT_NAME, SIGNATURE, ModelMetadata
from poster_genres.trainer.data import DataError
from poster_genres.trainer.embeddings import embed_images
from poster_genres.trainer.model import load_extractor
from poster_genres.trainer.settings import HeadSettings, TrainerSettings
from poster_genres.trainer.train import TrainResult, train

from .conftest import FEATURES, IMAGE_SIZE, OTHER_FEATURES, OTHER_SIZE

HEAD = HeadSettings(epochs=40, patience=10, batch_size=32)


def settings_for(
    data: SyntheticDataset, extractor: Path, root: Path, **extra: object
) -> TrainerSettings:
    values = {
        "movielens": data.root,
        "posters": data.posters_dir,
        "offline": True,
        "feature_extractor": str(extractor),
        "extra_extractor": None,  # the second extractor has its own test (test_embeddings.py)
        "image_size": IMAGE_SIZE,
        "model_dir": root / "models",
        "cache_dir": root / "cache",
        "min_genre_count": 3,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "folds": 3,
        "head": HEAD,
        "progress": False,
        "mirror": False,  # the mirror mean has its own test (test_backbone.py)
        "repeats": 1,  # repeated cross-fitting has its own test (test_fit.py); this keeps the suite quick
        # the quality bars below were set on the balanced, stratified split; the default split
        # by TMDB id has a test of its own (test_the_fixed_yardstick_learns_and_names_its_films)
        "split": "stratified",
    }
    values.update(extra)
    return TrainerSettings(**values)


@pytest.fixture(scope="module")
def trained(
    synthetic: SyntheticDataset, tiny_extractor: Path, tmp_path_factory: pytest.TempPathFactory
) -> TrainResult:
    return train(settings_for(synthetic, tiny_extractor, tmp_path_factory.mktemp("run")))


@pytest.mark.slow
def test_training_learns_the_genres(trained: TrainResult) -> None:
    test = trained.report["test"]
    assert test["n"] >= 40
    # six genres, one to three per poster: guessing every genre scores macro F1 ~0.5
    assert test["macro_f1"] >= 0.8, test
    assert sum(g["f1"] >= 0.7 for g in test["per_genre"]) >= 5, test["per_genre"]
    assert trained.metadata.metrics["macro_f1"] == test["macro_f1"]


@pytest.mark.slow
def test_shuffled_labels_do_not_learn(
    synthetic: SyntheticDataset, tiny_extractor: Path, tmp_path: Path
) -> None:
    """The control: the same pipeline on labels shuffled across posters stays near chance."""
    import csv
    import random

    rows = list(csv.reader(synthetic.movies_csv.open(encoding="utf-8")))
    genres = [r[2] for r in rows[1:]]
    random.Random(0).shuffle(genres)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    with (shuffled / "movies.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [rows[0], *([*r[:2], g] for r, g in zip(rows[1:], genres, strict=True))]
        )
    (shuffled / "links.csv").write_bytes(synthetic.links_csv.read_bytes())
    data = SyntheticDataset(
        shuffled, shuffled / "movies.csv", shuffled / "links.csv", synthetic.posters_dir
    )
    result = train(settings_for(data, tiny_extractor, tmp_path, folds=1))
    assert result.report["test"]["macro_f1"] < 0.65


def test_export_honours_the_contract(
    trained: TrainResult, synthetic: SyntheticDataset, tiny_extractor: Path
) -> None:
    version = trained.version_dir
    assert version.name == "1" and version.parent.is_dir()
    assert not [p for p in version.parent.iterdir() if p.name.startswith(".")]
    metadata = ModelMetadata.read(version)
    assert metadata.labels == trained.metadata.labels
    assert sorted(metadata.labels) == ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
    assert len(metadata.thresholds) == 6 and metadata.thresholds != [0.5] * 6
    assert tuple(metadata.image_size) == IMAGE_SIZE
    assert metadata.feature_extractor == str(tiny_extractor)
    assert metadata.training_data["labelled_movies"] == len(synthetic.labelled)
    for name in ("metrics.json", "per_genre.png", "curves.png"):
        assert (version / "report" / name).stat().st_size > 0

    serve = tf.saved_model.load(str(version)).signatures[SIGNATURE]
    ids = sorted(synthetic.labelled)[:5]
    images = [(synthetic.posters_dir / f"{i}.jpg").read_bytes() for i in ids]
    scores = serve(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()
    assert scores.shape == (5, 6) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    # the signature does its own decoding: its scores equal the head's on the training embeddings
    extractor = load_extractor(str(tiny_extractor))
    embedded = embed_images(
        [synthetic.posters_dir / f"{i}.jpg" for i in ids], extractor, IMAGE_SIZE, progress=False
    )
    np.testing.assert_allclose(scores, trained.head.predict(embedded.vectors, verbose=0), atol=1e-4)


def test_a_second_extractor_is_trained_on_exported_and_recorded(
    synthetic: SyntheticDataset, tiny_extractor: Path, other_extractor: Path, tmp_path: Path
) -> None:
    head = HeadSettings(epochs=2, patience=0, batch_size=32, hidden=16)
    extra = str(other_extractor)
    settings = settings_for(
        synthetic,
        tiny_extractor,
        tmp_path,
        extra_extractor=extra,
        extra_image_size=OTHER_SIZE,
        folds=2,
        head=head,
    )
    result = train(settings)
    metadata = ModelMetadata.read(result.version_dir)
    assert metadata.feature_extractor == str(tiny_extractor)
    assert metadata.model_extra["extra_feature_extractor"] == extra
    assert tuple(metadata.model_extra["extra_image_size"]) == OTHER_SIZE
    assert result.head.input_shape[-1] == FEATURES + OTHER_FEATURES
    # the exported signature runs both extractors: its scores are the head's on both features
    paths = [synthetic.posters_dir / f"{i}.jpg" for i in sorted(synthetic.labelled)[:4]]
    serve = tf.saved_model.load(str(result.version_dir)).signatures[SIGNATURE]
    images = tf.constant([path.read_bytes() for path in paths])
    scores = serve(**{INPUT_NAME: images})[OUTPUT_NAME].numpy()
    both = load_extractor(str(tiny_extractor), IMAGE_SIZE, extra=extra, extra_size=OTHER_SIZE)
    embedded = embed_images(paths, both, IMAGE_SIZE, progress=False)
    np.testing.assert_allclose(scores, result.head.predict(embedded.vectors, verbose=0), atol=1e-4)


def test_the_worker_serves_it_with_the_same_scores(
    trained: TrainResult, synthetic: SyntheticDataset
) -> None:
    classifier_module = pytest.importorskip("poster_genres.worker.classifier")
    classifier = classifier_module.load_version(trained.version_dir)
    assert classifier.labels == trained.metadata.labels
    posters = [draw_poster(["Horror"], (64, 96), seed=s) for s in range(4)]
    posters += [
        (synthetic.posters_dir / f"{i}.jpg").read_bytes() for i in sorted(synthetic.labelled)[:4]
    ]
    serve = tf.saved_model.load(str(trained.version_dir)).signatures[SIGNATURE]
    expected = serve(**{INPUT_NAME: tf.constant(posters)})[OUTPUT_NAME].numpy()
    np.testing.assert_allclose(classifier.scores(posters), expected, atol=1e-6)
    horror = [classifier.genres(row)[0] for row in classifier.scores(posters[:4])]
    assert sum("Horror" in g for g in horror) >= 3, horror


@pytest.mark.slow
def test_versions_increase_and_old_ones_are_pruned(
    synthetic: SyntheticDataset, tiny_extractor: Path, tmp_path: Path
) -> None:
    quick = HeadSettings(epochs=2, patience=0, batch_size=64)
    settings = settings_for(
        synthetic, tiny_extractor, tmp_path, folds=1, head=quick, keep_versions=2
    )
    made = [train(settings).version_dir.name for _ in range(3)]
    assert made == ["1", "2", "3"]
    assert sorted(p.name for p in settings.model_dir.iterdir() if p.name.isdigit()) == ["2", "3"]
    assert sorted(p.name for p in (settings.model_dir / "reports").iterdir()) == ["1"]
    shutil.rmtree(settings.model_dir / "3")
    assert train(settings).version_dir.name == "4"  # a deleted version's number is not reused


def test_empty_training_set_is_a_clear_error(tiny_extractor: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "ml", n_labelled=0, n_unlabelled=4, n_without_tmdb=2)
    with pytest.raises(DataError, match="nothing to train on"):
        train(settings_for(data, tiny_extractor, tmp_path))
    no_posters = write_dataset(tmp_path / "ml2", n_labelled=5, write_posters=False)
    with pytest.raises(DataError, match="no poster"):
        train(settings_for(no_posters, tiny_extractor, tmp_path))


@pytest.mark.slow
def test_command_line_train_and_predict(
    trained: TrainResult, synthetic: SyntheticDataset, tiny_extractor: Path, tmp_path: Path
) -> None:
    """`genre-trainer predict` prints genres and draws them (on the version trained above)."""
    model_dir = trained.version_dir.parent
    tmdb_id = min(synthetic.labelled)
    out = tmp_path / "show.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "poster_genres.trainer",
            "predict",
            "--model-dir",
            str(model_dir),
            "--offline",
            "--posters",
            str(synthetic.posters_dir),
            "--movielens",
            str(synthetic.root),
            "--json",
            "--show",
            str(out),
            str(tmdb_id),
            str(synthetic.posters_dir / f"{tmdb_id}.jpg"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and lines[0]["scores"] == lines[1]["scores"]
    assert lines[0]["title"] and set(lines[0]["scores"]) == set(trained.metadata.labels)
    assert out.read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "poster_genres.trainer",
            "predict",
            "--model-dir",
            str(model_dir),
            "--offline",
            "--posters",
            str(tmp_path),
            "424242",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "no poster for TMDB id 424242" in bad.stderr


@pytest.mark.slow
def test_the_fixed_yardstick_learns_and_names_its_films(
    synthetic: SyntheticDataset, tiny_extractor: Path, tmp_path: Path
) -> None:
    """The default split, by TMDB id: the report says which films its metrics are on."""
    import hashlib

    from poster_genres.trainer.split import bucket

    result = train(settings_for(synthetic, tiny_extractor, tmp_path, split="tmdb-id"))
    assert result.report["test"]["macro_f1"] >= 0.8, result.report["test"]
    films = result.report["evaluation_films"]
    held_out = sorted(i for i in synthetic.labelled if bucket(i) < 0.2)  # test_fraction=0.2
    assert films == {
        "split": "test",
        "count": len(held_out),
        "sha256": hashlib.sha256("".join(f"{i}\n" for i in held_out).encode()).hexdigest(),
    }
    assert films["count"] == result.report["test"]["n"]
    assert result.metadata.metrics["films"] == films
    saved = json.loads((result.version_dir / "report" / "metrics.json").read_text())
    assert saved["evaluation_films"] == films


@pytest.mark.slow
def test_cross_validate_reports_the_yardstick_over_every_film(
    synthetic: SyntheticDataset, tiny_extractor: Path, tmp_path: Path
) -> None:
    quick = HeadSettings(epochs=15, patience=0, batch_size=32)
    result = train(
        settings_for(synthetic, tiny_extractor, tmp_path, cross_validate=3, folds=2, head=quick)
    )
    yardstick = result.metadata.metrics["yardstick"]
    assert yardstick["folds"] == 3 and yardstick["films"] == len(synthetic.labelled)
    assert sum(f["n"] for f in yardstick["per_fold"]) == len(synthetic.labelled)
    assert yardstick["macro_f1"] >= 0.6, yardstick  # the synthetic genres are learnable
    assert yardstick["macro_f1_min"] <= yardstick["macro_f1"] <= yardstick["macro_f1_max"]
    saved = json.loads((result.version_dir / "report" / "metrics.json").read_text())
    assert saved["yardstick"]["per_fold"] == yardstick["per_fold"]
