"""Each command's settings: the fields it reads, declared once for the model and the command line.

`trainer/options.py` makes the options from these fields; `__main__` builds one model per
run and passes it down. What several commands share (logging, MovieLens input, the
poster cache) are small base models, each its own group in `--help`.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from poster_genres.common.kafka import KafkaSettings
from poster_genres.trainer.movielens import DEFAULT_BASE_URL, DEFAULT_RELEASE, NO_GENRES
from poster_genres.trainer.options import Option
from poster_genres.trainer.progress import ProgressMode, progress_mode
from poster_genres.trainer.thresholds import MACRO_WEIGHT, MAX_PREDICTED_RATIO, Objective

DEFAULT_EXTRACTOR = "https://tfhub.dev/google/tf2-preview/mobilenet_v2/feature_vector/4"
DEFAULT_EXTRA_EXTRACTOR = "https://tfhub.dev/google/imagenet/mobilenet_v1_025_224/feature_vector/5"
LossName = Literal["soft-f1", "bce", "soft-f1+bce"]
LOSS_NAMES: tuple[str, ...] = typing.get_args(LossName)
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
GateMetric = Literal["macro_f1", "micro_f1", "samples_f1"]
DEFAULT_EXCLUDED = ("IMAX", NO_GENRES)  # a format, and MovieLens' mark of a film without genres


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _square(value: object) -> object:
    """One side -> (side, side): `--image-size 224` means 224x224."""
    return (value, value) if isinstance(value, int) else value


def _size(text: str) -> int | tuple[int, int]:
    """`224` (square) or `320x224` (height x width) from the command line."""
    height, _, width = text.lower().partition("x")
    return (int(height), int(width)) if width else int(height)


def _handle_or_none(text: str) -> str | None:
    """A handle from the command line, or None for `none` (or nothing)."""
    return None if text.strip().lower() in ("", "none") else text


def _comma_list(value: object) -> object:
    """`a,b` -> ["a", "b"], blanks dropped: `--exclude-genres ""` means none."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Dir = Annotated[Path, Option(metavar="DIR")]
OptionalDir = Annotated[Path | None, Option(metavar="DIR")]
# `224` (square) or `320x224` (height x width) on the command line
ImageSize = Annotated[
    tuple[int, int],
    BeforeValidator(_square),
    Option(parse=_size, metavar="PIXELS", default_text="224"),
]


class Settings(BaseModel):
    """Frozen; an unknown field is an error rather than a setting silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CommandSettings(Settings):
    """Options of every command."""

    cli_group: ClassVar[str] = "logging"

    log_level: Annotated[
        LogLevel, BeforeValidator(_upper), Option(env="LOG_LEVEL", parse=str.upper)
    ] = Field("INFO", description="Least severe log records written to stderr.")
    log_format: Annotated[Literal["plain", "json"], Option(env="LOG_FORMAT")] = Field(
        "plain", description="Log lines as plain text or as one JSON object each."
    )
    progress: Annotated[
        ProgressMode, BeforeValidator(progress_mode), Option(env="TRAINER_PROGRESS")
    ] = Field(
        "auto",
        description="Progress bars on stderr: auto draws them on a terminal only and logs"
        " progress every 30 s elsewhere; always; never.",
    )
    no_progress: Annotated[bool, Option(hidden=True)] = Field(
        False, description="The same as --progress never."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_progress(cls, data: Any) -> Any:
        """`--no-progress` (or `no_progress=True`) means `progress="never"`."""
        if isinstance(data, dict) and data.get("no_progress"):
            return {**data, "progress": "never"}
        return data


class MovieLensInput(Settings):
    """Where the MovieLens files come from."""

    cli_group: ClassVar[str] = "MovieLens"

    movielens: OptionalDir = Field(None, description="Folder with movies.csv and links.csv.")
    download: bool = Field(False, description="Download the MovieLens release (cached) instead.")
    release: str = Field(DEFAULT_RELEASE, description="MovieLens release that --download fetches.")
    movielens_url: Annotated[str, Option(hidden=True)] = Field(
        DEFAULT_BASE_URL, description="Where MovieLens releases are downloaded from."
    )
    cache_dir: Dir = Field(Path("data"), description="Downloads and the embedding cache.")


class CachedPosters(Settings):
    """The poster cache."""

    cli_group: ClassVar[str] = "posters"

    posters: Dir = Field(Path("data/posters"), description="Poster cache: <tmdbId>.jpg files.")


class PosterInput(CachedPosters):
    """The poster cache, and how fast it is filled."""

    cli_group: ClassVar[str] = "posters"

    concurrency: Annotated[int | None, Option(default_text="FETCH_CONCURRENCY, else 16")] = Field(
        None, ge=1, description="Posters fetched at once."
    )


class ModelFolder(Settings):
    """The model folder that the trainer writes and the workers read."""

    cli_group: ClassVar[str] = "model folder"

    model_dir: Annotated[Path, Option(metavar="DIR", env="MODEL_DIR")] = Field(
        Path("models"),
        description="The model folder: numbered versions, candidates/, serving.json.",
    )


class EvaluationFilms(Settings):
    """Which films versions are measured on, and which genres are labels."""

    cli_group: ClassVar[str] = "evaluation films"

    test_fraction: float = Field(
        0.15,
        ge=0,
        lt=1,
        description=(
            "Share of films held out from training and threshold tuning, on which versions are "
            "measured (report, release gate, evaluate); 0 = none."
        ),
    )
    exclude_genres: Annotated[
        list[str],
        BeforeValidator(_comma_list),
        Option(metavar="GENRES", default_text=",".join(DEFAULT_EXCLUDED)),
    ] = Field(
        list(DEFAULT_EXCLUDED),
        description=(
            'Genres that are not labels, comma-separated ("" for none); films left with no '
            "genre are not used. (no genres listed) marks an unlabelled film and never is one."
        ),
    )


class ReleaseGate(Settings):
    """When `train` serves the version it made."""

    cli_group: ClassVar[str] = "release gate"

    gate_metrics: Annotated[
        list[GateMetric],
        BeforeValidator(_comma_list),
        Option(metavar="METRICS", default_text="macro_f1,micro_f1"),
    ] = Field(
        ["macro_f1", "micro_f1"],
        min_length=1,
        description=(
            "Metrics (comma-separated: macro_f1, micro_f1, samples_f1) on which the new version "
            "may not be worse than the served one, on the same evaluation films."
        ),
    )
    gate_tolerance: float = Field(
        0.005,
        ge=0,
        le=1,
        description=("How much worse than the served version a gate metric may be."),
    )
    force: bool = Field(False, description="Serve the new version whatever the gate says.")
    promote: bool = Field(
        True,
        description=(
            "Serve the new version when it passes the gate; --no-promote leaves it in "
            "candidates/ with its report."
        ),
    )


class HeadSettings(Settings):
    """How the head is trained on the cached embeddings."""

    cli_group: ClassVar[str] = "head training"

    loss: LossName = Field(
        "soft-f1+bce", description="soft-f1 (the recipe's macro soft-F1), bce, or their sum."
    )
    epochs: int = Field(60, ge=1, description="Most epochs per head; its best one is kept.")
    patience: int = Field(
        12, ge=0, description="Stop a head after this many epochs without progress; 0 never."
    )
    batch_size: int = Field(64, ge=1, description="Embeddings per training step.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam's learning rate.")
    standardize: bool = Field(
        True, description="Standardise embeddings by the training mean and variance (in the model)."
    )
    hidden: int = Field(1024, ge=1, description="Units of the hidden Dense relu layer.")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout before and after that layer.")
    l2: float = Field(1e-4, ge=0, description="L2 penalty on the Dense layers' weights.")
    seed: Annotated[int, Option(skip=True)] = Field(42, description="Training seed (--seed).")


class FinetuneSettings(Settings):
    """How the backbone's tail is fine-tuned on cached activations (`trainer/finetune.py`)."""

    cli_group: ClassVar[str] = "fine-tuning"

    enabled: Annotated[bool, Option(flags=("--finetune",))] = Field(
        False,
        description=(
            "Fine-tune MobileNetV2's last block on the training films (mirrored posters as "
            "augmentation) before the heads; needs a .h5 weights file as --feature-extractor."
        ),
    )
    epochs: Annotated[int, Option(flags=("--finetune-epochs",))] = Field(
        8, ge=1, description="Most epochs of tail fine-tuning; its best one is kept."
    )
    patience: Annotated[int, Option(flags=("--finetune-patience",))] = Field(
        3, ge=0, description="Stop fine-tuning after this many epochs without progress; 0 never."
    )
    learning_rate: Annotated[float, Option(flags=("--finetune-learning-rate",))] = Field(
        2e-4, gt=0, description="Adam's learning rate for the tail and its sigmoid layer."
    )
    batch_size: Annotated[int, Option(flags=("--finetune-batch-size",))] = Field(
        64, ge=1, description="Posters per fine-tuning step."
    )
    dropout: Annotated[float, Option(flags=("--finetune-dropout",))] = Field(
        0.3, ge=0, lt=1, description="Dropout before the fine-tuning sigmoid layer."
    )
    loss: Annotated[LossName, Option(flags=("--finetune-loss",))] = Field(
        "soft-f1+bce", description="Loss of fine-tuning: soft-f1, bce, or their sum."
    )
    seed: Annotated[int, Option(skip=True)] = Field(42, description="Seed (--seed).")


class TrainSettings(
    CommandSettings, MovieLensInput, PosterInput, ModelFolder, EvaluationFilms, ReleaseGate
):
    """`train`: MovieLens genres and posters -> a new model version, served if it passes."""

    offline: bool = Field(False, description="Use cached posters only; fetch none.")
    feature_extractor: Annotated[str, Option(metavar="HANDLE")] = Field(
        DEFAULT_EXTRACTOR,
        description="Frozen feature extractor: TF Hub / Kaggle handle or local SavedModel folder.",
    )
    extra_extractor: Annotated[
        str | None,
        Option(parse=_handle_or_none, metavar="HANDLE"),
    ] = Field(
        DEFAULT_EXTRA_EXTRACTOR,
        description=(
            "A second frozen extractor, run on the same input, whose features are put beside "
            "the first's (a handle or folder as above); none for the first alone."
        ),
    )
    image_size: ImageSize = Field(
        (224, 224),
        description="Input of the extractor: one side (square) or HEIGHTxWIDTH, e.g. 320x224.",
    )
    extra_image_size: ImageSize = Field(
        (224, 224),
        description=(
            "Input of the extra extractor: the poster at --image-size, resized to this in the "
            "model when it differs."
        ),
    )
    mirror: bool = Field(
        True,
        description=(
            "Features are the mean of the poster's and its mirror image's (at training and in "
            "the exported model): a second backbone pass per poster."
        ),
    )
    keep_versions: int = Field(
        5,
        ge=0,
        description=(
            "Newest versions (and candidates) kept after export, besides the served one; "
            "0 keeps all."
        ),
    )
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of films for validation.")
    split: Literal["tmdb-id", "stratified"] = Field(
        "tmdb-id",
        description=(
            "How films are assigned to train, validation and test: by a hash of the TMDB id "
            "(the same films as MovieLens grows), or a seeded split stratified by genre."
        ),
    )
    seed: int = Field(42, description="Seed of head training, the folds and a stratified split.")
    folds: int = Field(
        5,
        ge=1,
        description=(
            "Heads trained by K-fold cross-fitting on train+validation and averaged; thresholds "
            "tuned on their out-of-fold scores; 1 = one train/validation split."
        ),
    )
    repeats: int = Field(
        3,
        ge=1,
        description=(
            "Times the K-fold cross-fit runs on other fold splits; all heads are averaged and "
            "out-of-fold scores are averaged over repeats (no effect with --folds 1)."
        ),
    )
    objective: Objective = Field(
        "balanced",
        description=(
            "What the per-genre thresholds maximise on out-of-fold scores: each genre's F1 "
            "(macro), micro F1 with one threshold for all (micro), or a mix of the two weighted "
            "by --macro-weight (balanced)."
        ),
    )
    macro_weight: float = Field(
        MACRO_WEIGHT,
        ge=0,
        le=1,
        description=("Weight of macro F1 against micro F1 in the balanced objective."),
    )
    max_predicted_ratio: float = Field(
        MAX_PREDICTED_RATIO,
        ge=0,
        description=(
            "Balanced objective: no genre's threshold may predict it for more than this many "
            "times as many out-of-fold films as have it; 0 = no cap."
        ),
    )
    min_genre_count: int = Field(
        10,
        ge=1,
        description="Rarer genres are left out of the model (listed in its metadata).",
    )
    cross_validate: Annotated[int, Option(metavar="K")] = Field(
        0,
        ge=0,
        description=(
            "Also measure the recipe on K disjoint hash folds of all labelled films (each "
            "trained on the others): mean and spread in the report; 0 = off (K x the head time)."
        ),
    )
    embed_batch_size: int = Field(64, ge=1, description="Posters per feature-extractor call.")
    tensorboard_dir: OptionalDir = Field(None, description="Write TensorBoard logs of each head.")
    head: HeadSettings = Field(default_factory=HeadSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)

    @model_validator(mode="before")
    @classmethod
    def _seed_the_head(cls, data: Any) -> Any:
        """A `seed` given seeds the head and fine-tuning too, unless they were given their own."""
        if not isinstance(data, dict) or "seed" not in data:
            return data
        seeded = dict(data)
        for name, model in (("head", HeadSettings), ("finetune", FinetuneSettings)):
            group = data.get(name, {})
            if isinstance(group, model) and "seed" not in group.model_fields_set:
                seeded[name] = group.model_copy(update={"seed": data["seed"]})
            elif isinstance(group, dict):
                seeded[name] = {"seed": data["seed"], **group}
        return seeded

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        if self.cross_validate == 1:
            raise ValueError("--cross-validate needs at least 2 folds (or 0 for none)")
        if self.finetune.enabled and self.extra_extractor is not None:
            raise ValueError(
                "--finetune tunes MobileNetV2 alone: give --extra-extractor none with it"
            )
        if self.cross_validate and self.finetune.enabled:
            raise ValueError(
                "--cross-validate measures heads on fixed features; fine-tuning's yardstick is "
                "bench/trainer_levers.py"
            )
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("validation and test fractions leave too little to train on")
        if self.test_fraction == 0 and self.promote and not self.force:
            raise ValueError(
                "the release gate needs evaluation films: give --test-fraction, "
                "--force or --no-promote"
            )
        return self

    @property
    def embedding_dir(self) -> Path:
        """Where embeddings are cached."""
        return self.cache_dir / "embeddings"


TrainerSettings = TrainSettings  # the former name, which demo/ and bench/ use


class FetchPostersSettings(CommandSettings, MovieLensInput, PosterInput):
    """`fetch-posters`: fill the poster cache for the labelled movies."""

    retry_failed: bool = Field(
        False, description="Also retry movies whose last failure was permanent."
    )
    include_unlabelled: Annotated[bool, Option(flags=("--include-unlabelled", "--all"))] = Field(
        False, description="Also fetch the posters of movies without genres."
    )


class PredictSettings(CommandSettings, PosterInput, ModelFolder):
    """`predict`: the genres of posters, from the served model version."""

    inputs: Annotated[list[str], Option(positional=True, metavar="IMAGE_OR_TMDB_ID")] = Field(
        min_length=1, description="Image files, or TMDB ids looked up in the poster cache."
    )
    offline: bool = Field(False, description="Do not fetch posters missing from the cache.")
    movielens: OptionalDir = Field(None, description="MovieLens folder, to show titles.")
    show: Annotated[Path | None, Option(metavar="OUT.png")] = Field(
        None, description="Draw the posters with their genres into this PNG."
    )
    as_json: Annotated[bool, Option(flags=("--json",))] = Field(
        False, description="Print JSON lines."
    )


class BackfillKafka(KafkaSettings):
    """The shared Kafka settings (KAFKA_* variables), the brokers also as an option."""

    cli_group: ClassVar[str] = "Kafka"

    kafka_bootstrap_servers: Annotated[
        str, Option(flags=("--bootstrap-servers",), metavar="HOSTS")
    ] = Field(
        KafkaSettings.model_fields["kafka_bootstrap_servers"].default,
        description="Kafka brokers, host:port, comma-separated.",
    )


class BackfillSettings(CommandSettings, MovieLensInput):
    """`backfill`: a movies.new event for every movie without genres."""

    kafka: BackfillKafka = Field(
        default_factory=BackfillKafka, description="Brokers and credentials: KAFKA_* variables."
    )
    topic: str = Field("movies.new", description="Topic the events are produced to.")
    dry_run: bool = Field(
        False, description="Print the events as JSON lines instead of producing them."
    )


class EvaluateSettings(
    CommandSettings, MovieLensInput, CachedPosters, ModelFolder, EvaluationFilms
):
    """`evaluate`: versions side by side on the evaluation films of the poster cache."""

    versions: Annotated[list[int], Option(positional=True, metavar="VERSION")] = Field(
        default_factory=list,
        description="Versions (served or candidates) to compare; default: the served and newest.",
    )
    out: Dir = Field(Path("evaluation"), description="Folder for evaluation.json and .png.")
    batch_size: int = Field(32, ge=1, description="Posters per call of a version's signature.")

    @model_validator(mode="after")
    def _check(self) -> EvaluateSettings:
        if self.test_fraction == 0:
            raise ValueError("evaluate needs evaluation films: --test-fraction above 0")
        return self


class PromoteSettings(CommandSettings, ModelFolder):
    """`promote`: serve one version (a candidate is moved in first)."""

    version: Annotated[int, Option(positional=True, metavar="VERSION")] = Field(
        ge=1, description="The version to serve."
    )


class RollbackSettings(CommandSettings, ModelFolder):
    """`rollback`: serve the version served before the current one."""
