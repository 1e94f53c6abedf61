"""Fixtures of the trainer's tests: a synthetic MovieLens set and a tiny feature extractor."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tensorflow_hub needs Keras 2 (tf-keras)

from pathlib import Path

import pytest

from demo.extractor import build_local_extractor
from demo.synthetic import SyntheticDataset, write_dataset

IMAGE_SIZE = (32, 32)
FEATURES = 48
OTHER_FEATURES = 16
OTHER_SIZE = (16, 16)


@pytest.fixture(scope="session")
def tiny_extractor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that `hub.KerasLayer` loads: float32 [N, 32, 32, 3] in [0, 1] -> [N, 48]."""
    return build_local_extractor(
        tmp_path_factory.mktemp("extractor") / "tiny", IMAGE_SIZE, FEATURES
    )


@pytest.fixture(scope="session")
def other_extractor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another such folder, with other random filters, at another size: [N, 16, 16, 3] -> [N, 16]."""
    return build_local_extractor(
        tmp_path_factory.mktemp("extractor") / "other", OTHER_SIZE, OTHER_FEATURES, seed=2
    )


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """240 labelled synthetic movies with posters, 6 unlabelled, 3 without a TMDB id."""
    return write_dataset(
        tmp_path_factory.mktemp("movielens"),
        n_labelled=240,
        n_unlabelled=6,
        n_without_tmdb=3,
        genres=["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"],
        seed=3,
    )


def small_movielens(synthetic: SyntheticDataset, root: Path, n: int) -> list[int]:
    """A MovieLens copy under `root` with the first `n` labelled movies; their TMDB ids."""
    labelled = sorted(synthetic.labelled)[:n]
    movies = synthetic.movies_csv.read_text().splitlines()
    links = synthetic.links_csv.read_text().splitlines()
    kept_links = [links[0]] + [
        line for line in links[1:] if int(line.split(",")[2] or 0) in labelled
    ]
    kept_ids = {line.split(",")[0] for line in kept_links[1:]}
    root.mkdir(parents=True)
    (root / "links.csv").write_text("\n".join(kept_links) + "\n")
    (root / "movies.csv").write_text(
        "\n".join([movies[0]] + [m for m in movies[1:] if m.split(",")[0] in kept_ids]) + "\n"
    )
    return labelled
