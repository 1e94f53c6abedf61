"""The model folder's contract: what the trainer writes and the worker reads.

`metadata.json` of a version, which versions exist, and which one is served: the
`serving.json` pointer that `genre-trainer promote` and `rollback` move, resolved here
once so that the worker and the trainer cannot disagree about it.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

METADATA_FILE = "metadata.json"
SERVING_FILE = "serving.json"  # MODEL_DIR/serving.json: the served version, if set
CANDIDATES_DIR = "candidates"  # MODEL_DIR/candidates/<version>/: held back, never served
SIGNATURE = "serving_default"
INPUT_NAME = "image_bytes"
OUTPUT_NAME = "scores"


class ModelMetadata(BaseModel):
    """Labels, thresholds and provenance of one exported model version."""

    model_config = ConfigDict(extra="allow")

    labels: list[str] = Field(
        min_length=1, description="Genre labels, in the model's output order."
    )
    thresholds: list[float] = Field(description="One decision threshold per label, in [0, 1].")
    image_size: tuple[int, int] = Field(description="Height and width the signature resizes to.")
    feature_extractor: str = Field(description="Handle or path of the feature extractor.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Validation-split metrics.")
    training_data: dict[str, Any] = Field(
        default_factory=dict, description="What it was trained on."
    )
    created_at: datetime

    @model_validator(mode="after")
    def _check(self) -> ModelMetadata:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if len(self.thresholds) != len(self.labels):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.labels)} labels")
        if any(not 0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError("thresholds must lie in [0, 1]")
        return self

    @classmethod
    def read(cls, version_dir: Path) -> ModelMetadata:
        """Load and validate `metadata.json` from a version folder."""
        return cls.model_validate_json((version_dir / METADATA_FILE).read_text("utf-8"))


def is_complete(version_dir: Path) -> bool:
    """Whether a version folder holds both a SavedModel and its metadata."""
    return (version_dir / "saved_model.pb").is_file() and (version_dir / METADATA_FILE).is_file()


def version_numbers(model_dir: Path) -> list[int]:
    """Integer-named version folders under `model_dir`, complete or not, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())


def complete_versions(model_dir: Path) -> list[int]:
    """Integer version folders holding both a SavedModel and metadata, ascending."""
    return [v for v in version_numbers(model_dir) if is_complete(model_dir / str(v))]


def latest_version(model_dir: Path) -> int | None:
    """The highest complete version under `model_dir`, or None if there is none."""
    versions = complete_versions(model_dir)
    return versions[-1] if versions else None


class ServingPointer(BaseModel):
    """`MODEL_DIR/serving.json`: the version workers serve, and the ones served before it."""

    model_config = ConfigDict(extra="allow")

    version: int = Field(ge=1, description="The version workers serve (unless pinned).")
    previous: list[int] = Field(
        default_factory=list,
        description="Versions served before, the most recent first: where rollback goes.",
    )
    updated_at: datetime = Field(description="When the pointer was last moved.")

    @classmethod
    def read(cls, model_dir: Path) -> ServingPointer | None:
        """The pointer in `model_dir`, None when there is none; PointerError if unreadable."""
        path = model_dir / SERVING_FILE
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PointerError(f"{path} cannot be read: {exc}") from exc
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise PointerError(f"{path} is not a serving pointer: {exc}") from exc


class PointerError(ValueError):
    """`serving.json` exists but cannot be read as a serving pointer."""


def served_version(
    model_dir: Path, pinned: int | None = None, skip: Collection[int] = ()
) -> int | None:
    """The version to serve: `pinned`, else the pointer's, else the highest complete one.

    `skip` lists versions known not to load (a worker's refused ones), passed over when the
    highest is chosen; a pinned or pointed version is returned as it is, present or not.
    Raises PointerError when `serving.json` is unreadable.
    """
    if pinned is not None:
        return pinned
    pointer = ServingPointer.read(model_dir)
    if pointer is not None:
        return pointer.version
    versions = [v for v in complete_versions(model_dir) if v not in skip]
    return versions[-1] if versions else None


def _float32(value: float) -> float:
    """`value` rounded to the nearest float32, the signature's output type."""
    return struct.unpack("f", struct.pack("f", value))[0]


def apply_thresholds(
    row: Sequence[float], labels: Sequence[str], thresholds: Sequence[float]
) -> list[str]:
    """Labels whose score reached their threshold, highest score first (ties by label).

    Scores and thresholds are compared as float32, the signature's output type (a numpy
    row works as a sequence; the schemas package itself needs no numpy).
    """
    scores = [_float32(float(score)) for score in row]
    chosen = [i for i, t in enumerate(thresholds) if scores[i] >= _float32(float(t))]
    return [labels[i] for i in sorted(chosen, key=lambda i: (-scores[i], labels[i]))]


def genres_from_scores(
    row: Sequence[float], labels: Sequence[str], thresholds: Sequence[float]
) -> tuple[list[str], dict[str, float]]:
    """One image's genres (`apply_thresholds`) and every label's score to 6 places."""
    scores = {label: round(float(score), 6) for label, score in zip(labels, row, strict=True)}
    return apply_thresholds(row, labels, thresholds), scores
