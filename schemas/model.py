"""`metadata.json` of a model version: what the trainer writes and the worker reads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

METADATA_FILE = "metadata.json"
SIGNATURE = "serving_default"
INPUT_NAME = "image_bytes"
OUTPUT_NAME = "scores"


class ModelMetadata(BaseModel):
    """Labels, thresholds and provenance of one exported model version."""

    model_config = ConfigDict(extra="allow")

    labels: list[str] = Field(min_length=1, description="Genre labels, in the model's output order.")
    thresholds: list[float] = Field(description="One decision threshold per label, in [0, 1].")
    image_size: tuple[int, int] = Field(description="Height and width the signature resizes to.")
    feature_extractor: str = Field(description="Handle or path of the feature extractor.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Validation-split metrics.")
    training_data: dict[str, Any] = Field(default_factory=dict, description="What it was trained on.")
    created_at: datetime

    @model_validator(mode="after")
    def _check(self) -> ModelMetadata:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if len(self.thresholds) != len(self.labels):
            raise ValueError(
                f"{len(self.thresholds)} thresholds for {len(self.labels)} labels"
            )
        if any(not 0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError("thresholds must lie in [0, 1]")
        return self

    @classmethod
    def read(cls, version_dir: Path) -> ModelMetadata:
        """Load and validate `metadata.json` from a version folder."""
        return cls.model_validate_json((version_dir / METADATA_FILE).read_text("utf-8"))


def complete_versions(model_dir: Path) -> list[int]:
    """Integer version folders holding both a SavedModel and metadata, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(path.name)
        for path in model_dir.iterdir()
        if path.name.isdigit() and (path / "saved_model.pb").is_file() and (path / METADATA_FILE).is_file()
    )
