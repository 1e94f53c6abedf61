"""The trainer's settings: one object, built from the command line and environment in `__main__`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainer.movielens import DEFAULT_BASE_URL, DEFAULT_RELEASE

DEFAULT_EXTRACTOR = "https://tfhub.dev/google/tf2-preview/mobilenet_v2/feature_vector/4"
LOSS_NAMES = ("soft-f1", "bce", "soft-f1+bce")


class HeadSettings(BaseModel):
    """How the head is trained on the cached embeddings."""

    model_config = ConfigDict(frozen=True)

    loss: str = Field("soft-f1+bce", description="soft-f1 (the recipe), bce, or soft-f1+bce.")
    epochs: int = Field(60, ge=1, description="Upper bound; the best epoch on validation is kept.")
    patience: int = Field(12, ge=0, description="Stop after this many epochs without progress; 0 never.")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    standardize: bool = Field(True, description="Standardise embeddings (training mean/variance).")
    hidden: int = Field(1024, ge=1, description="Units of the hidden Dense relu layer.")
    dropout: float = Field(0.5, ge=0, lt=1)
    l2: float = Field(1e-4, ge=0)
    seed: int = 42


class TrainerSettings(BaseModel):
    """Everything `genre-trainer` needs; each command reads the fields it uses."""

    model_config = ConfigDict(frozen=True)

    movielens: Path | None = Field(None, description="Folder with movies.csv and links.csv.")
    download: bool = Field(False, description="Fetch the MovieLens release instead (cached).")
    release: str = DEFAULT_RELEASE
    movielens_url: str = DEFAULT_BASE_URL
    cache_dir: Path = Field(Path("data"), description="Downloads and the embedding cache.")
    posters: Path = Field(Path("data/posters"), description="Poster cache, <tmdbId>.jpg.")
    offline: bool = Field(False, description="Use cached posters only; fetch nothing.")
    feature_extractor: str = DEFAULT_EXTRACTOR
    image_size: tuple[int, int] = (224, 224)
    model_dir: Path = Path("models")
    keep_versions: int = Field(5, ge=0, description="Versions kept after export; 0 keeps all.")
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    split_seed: int = 42
    folds: int = Field(5, ge=1, description="Cross-fitted heads on train+validation; 1 = one split.")
    min_genre_count: int = Field(10, ge=1, description="Rarer genres are left out of the model.")
    embed_batch_size: int = Field(64, ge=1)
    tensorboard_dir: Path | None = None
    head: HeadSettings = HeadSettings()
    progress: bool = True
    fetch_concurrency: int | None = Field(None, ge=1, description="Posters fetched at once.")
    include_unlabelled: bool = Field(False, description="fetch-posters: movies without genres too.")
    retry_failed: bool = Field(False, description="fetch-posters: retry permanent failures too.")
    inputs: list[str] = Field(default_factory=list, description="predict: image files or TMDB ids.")
    show: Path | None = Field(None, description="predict: render the posters and genres to this PNG.")
    as_json: bool = Field(False, description="predict: print JSON lines.")
    bootstrap_servers: str = "localhost:9092"
    topic: str = "movies.new"
    dry_run: bool = Field(False, description="backfill: print the events instead of producing them.")

    @model_validator(mode="after")
    def _check(self) -> TrainerSettings:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("validation and test fractions leave too little to train on")
        return self

    @property
    def embedding_dir(self) -> Path:
        """Where embeddings are cached."""
        return self.cache_dir / "embeddings"
