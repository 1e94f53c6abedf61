"""The fixed yardstick: a film's part follows from its TMDB id, whatever else is in the data."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from poster_genres.trainer.errors import DataError
from poster_genres.trainer.settings import TrainSettings
from poster_genres.trainer.split import Split, bucket, films_digest, split_by_id, split_examples


def parts_by_id(ids: list[int], split: Split) -> dict[int, str]:
    """TMDB id -> the name of its part."""
    return {
        ids[row]: name for name in ("train", "validation", "test") for row in getattr(split, name)
    }


def test_adding_films_moves_no_film_between_parts() -> None:
    rng = random.Random(7)
    old = rng.sample(range(1, 500_000), 1500)
    new = rng.sample(sorted(set(range(500_000, 900_000))), 900)
    before = parts_by_id(old, split_by_id(old, 0.15, 0.15))
    grown = old + new
    rng.shuffle(grown)  # MovieLens order means nothing
    after = parts_by_id(grown, split_by_id(grown, 0.15, 0.15))
    assert {i: after[i] for i in old} == before
    shares = {
        name: sum(p == name for p in after.values()) / len(after)
        for name in ("train", "validation", "test")
    }
    assert shares["test"] == pytest.approx(0.15, abs=0.03)
    assert shares["validation"] == pytest.approx(0.15, abs=0.03)
    # a larger validation share takes films from train only: the evaluation films stay put
    wider = parts_by_id(grown, split_by_id(grown, 0.25, 0.15))
    assert {i for i, p in wider.items() if p == "test"} == {
        i for i, p in after.items() if p == "test"
    }
    assert all(after[i] == "train" for i, p in wider.items() if p != after[i])


def test_bucket_is_sha256_of_the_decimal_id() -> None:
    digest = hashlib.sha256(b"603").digest()
    assert bucket(603) == int.from_bytes(digest[:8], "big") / 2**64
    assert bucket(np.int64(603)) == bucket(603)
    assert 0 <= min(bucket(i) for i in range(1000)) and max(bucket(i) for i in range(1000)) < 1


def test_films_digest_names_the_films_whatever_their_order() -> None:
    assert films_digest([604, 603]) == {
        "count": 2,
        "sha256": hashlib.sha256(b"603\n604\n").hexdigest(),
    }
    assert films_digest(np.array([603, 604])) == films_digest([604, 603])
    assert films_digest([603, 605])["sha256"] != films_digest([603, 604])["sha256"]


def test_too_few_films_to_split_is_a_clear_error() -> None:
    for method in ("tmdb-id", "stratified"):
        with pytest.raises(DataError, match="too few"):
            split_examples(np.array([603]), np.ones((1, 1)), TrainSettings(split=method))
