"""The command line: options made from each command's settings, the environment, light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.synthetic import SyntheticDataset
from demo.tmdb import TmdbStandIn
from poster_genres.trainer.cli import COMMANDS, build_parser, parse_args
from poster_genres.trainer.settings import (
    DEFAULT_EXTRA_EXTRACTOR,
    BackfillSettings,
    FetchPostersSettings,
    PredictSettings,
    TrainSettings,
)

from .conftest import small_movielens

# Runs a command in this interpreter, then reports which TensorFlow modules it loaded.
LOADED = (
    "import sys\n"
    "from trainer.__main__ import main\n"
    "status = main(sys.argv[1:])\n"
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tf_keras'})\n"
    "print('loaded:', ' '.join(heavy), file=sys.stderr)\n"
    "sys.exit(status)\n"
)


def run_loaded(
    args: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `genre-trainer args` in a subprocess; its result and the TensorFlow modules it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", LOADED, *args], env=env, capture_output=True, text=True, timeout=120
    )
    marker = [line for line in result.stderr.splitlines() if line.startswith("loaded:")]
    assert marker, result.stderr[-2000:]
    return result, marker[-1].removeprefix("loaded:").strip()


def test_backfill_dry_run_loads_no_tensorflow_and_logs_json(synthetic: SyntheticDataset) -> None:
    env = dict(os.environ, LOG_FORMAT="json")
    result, loaded = run_loaded(["backfill", "--movielens", str(synthetic.root), "--dry-run"], env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert loaded == ""
    assert len(result.stdout.splitlines()) == len(synthetic.unlabelled)
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(
        r["logger"] == "poster_genres.trainer.movielens" and r["level"] == "INFO" for r in logs
    ), logs


def test_fetch_posters_loads_no_tensorflow(synthetic: SyntheticDataset, tmp_path: Path) -> None:
    labelled = small_movielens(synthetic, tmp_path / "ml", 3)
    served = {i: (synthetic.posters_dir / f"{i}.jpg").read_bytes() for i in labelled}
    with TmdbStandIn(posters=served) as server:
        env = dict(os.environ, TMDB_BASE_URL=server.base_url, POSTER_HOSTS=server.host)
        result, loaded = run_loaded(
            [
                "fetch-posters",
                "--movielens",
                str(tmp_path / "ml"),
                "--posters",
                str(tmp_path / "posters"),
                "--no-progress",
            ],
            env,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 fetched" in result.stdout
    assert loaded == ""


def test_every_field_is_an_option_with_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in COMMANDS.items():
        actions = sub.choices[name]._actions  # type: ignore[attr-defined]
        helped = {a.dest: a.help for a in actions if a.dest != "help"}
        assert all(helped.values()), (name, helped)
        # every field of the command's model is reachable, nested groups by their path
        top = set(command.settings.model_fields) - {"head", "kafka"}
        assert top <= {d.split(".")[0] for d in helped}, (name, top - set(helped))
    train = {a.dest: a for a in sub.choices["train"]._actions}  # type: ignore[attr-defined]
    assert (
        train["seed"].help
        == "Seed of head training, the folds and a stratified split. (default: 42)"
    )
    assert train["head.standardize"].option_strings == ["--standardize", "--no-standardize"]
    assert "--no-standardize" in sub.choices["train"].format_help()  # type: ignore[attr-defined]


def test_existing_option_names_keep_working() -> None:
    command, train = parse_args(
        [
            "train",
            "--movielens",
            "ml",
            "--posters",
            "p",
            "--concurrency",
            "3",
            "--offline",
            "--feature-extractor",
            "x",
            "--image-size",
            "96",
            "--model-dir",
            "m",
            "--keep-versions",
            "2",
            "--seed",
            "7",
            "--folds",
            "1",
            "--loss",
            "bce",
            "--epochs",
            "3",
            "--no-progress",
            "--log-level",
            "debug",
            "--no-standardize",
            "--patience",
            "0",
            "--batch-size",
            "8",
            "--learning-rate",
            "0.01",
            "--hidden",
            "16",
            "--dropout",
            "0",
            "--l2",
            "0",
        ],
        {},
    )
    assert command == "train" and isinstance(train, TrainSettings)
    assert train.image_size == (96, 96) and train.concurrency == 3 and train.offline
    assert train.seed == 7 and train.head.seed == 7  # one --seed seeds the split and the head
    assert train.head.loss == "bce" and train.head.standardize is False and train.head.epochs == 3
    assert train.progress == "never" and train.log_level == "DEBUG" and train.keep_versions == 2
    _, fetch = parse_args(["fetch-posters", "--all", "--retry-failed"], {})
    assert (
        isinstance(fetch, FetchPostersSettings) and fetch.include_unlabelled and fetch.retry_failed
    )
    _, predict = parse_args(["predict", "603", "a.jpg", "--show", "o.png", "--json"], {})
    assert isinstance(predict, PredictSettings)
    assert predict.inputs == ["603", "a.jpg"] and predict.as_json and predict.show == Path("o.png")
    _, backfill = parse_args(
        ["backfill", "--topic", "t", "--dry-run", "--bootstrap-servers", "h1:9092,h2:9092"], {}
    )
    assert isinstance(backfill, BackfillSettings) and backfill.dry_run and backfill.topic == "t"
    assert backfill.kafka.bootstrap_servers == ["h1:9092", "h2:9092"]


def test_environment_fills_what_the_command_line_leaves_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env-broker:9092")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    _, from_env = parse_args(["backfill"], {"LOG_FORMAT": "json"})
    assert from_env.log_format == "json"
    assert from_env.kafka.bootstrap_servers == ["env-broker:9092"]
    assert from_env.kafka.kafka_security_protocol == "SASL_SSL"
    _, from_args = parse_args(
        ["backfill", "--log-format", "plain", "--bootstrap-servers", "b:1"], {"LOG_FORMAT": "json"}
    )
    assert from_args.log_format == "plain" and from_args.kafka.bootstrap_servers == ["b:1"]
    assert from_args.kafka.kafka_security_protocol == "SASL_SSL"  # TLS/SASL still from KAFKA_*


def test_bad_values_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["train", "--loss", "mse"], {})
    with pytest.raises(SystemExit, match="invalid options"):
        parse_args(["train", "--val-fraction", "0.5", "--test-fraction", "0.45"], {})
    with pytest.raises(SystemExit, match="invalid options"):
        parse_args(["backfill"], {"LOG_FORMAT": "xml"})
    with pytest.raises(SystemExit, match="invalid options"):
        parse_args(["train", "--max-predicted-ratio", "-1"], {})


def test_threshold_objective_options() -> None:
    _, default = parse_args(["train"], {})
    assert default.objective == "balanced"
    assert (default.macro_weight, default.max_predicted_ratio) == (0.85, 1.5)
    _, given = parse_args(
        [
            "train",
            "--objective",
            "balanced",
            "--macro-weight",
            "0.75",
            "--max-predicted-ratio",
            "0",
        ],
        {},
    )
    assert (given.macro_weight, given.max_predicted_ratio) == (0.75, 0)


def test_the_extra_extractor_option() -> None:
    _, default = parse_args(["train"], {})
    assert default.extra_extractor == DEFAULT_EXTRA_EXTRACTOR
    _, alone = parse_args(["train", "--extra-extractor", "none"], {})
    assert alone.extra_extractor is None
    assert default.extra_image_size == (224, 224)
    _, other = parse_args(
        ["train", "--extra-extractor", "weights/v1", "--extra-image-size", "160"], {}
    )
    assert other.extra_extractor == "weights/v1" and other.extra_image_size == (160, 160)
    with pytest.raises(SystemExit, match="invalid options"):  # fine-tuning tunes MobileNetV2 alone
        parse_args(["train", "--finetune"], {})
    assert parse_args(["train", "--finetune", "--extra-extractor", "none"], {})[1].finetune.enabled


def test_promote_and_rollback_load_no_tensorflow(tmp_path: Path) -> None:
    for version in ("1", "2"):
        (tmp_path / version).mkdir()
        for name in ("saved_model.pb", "metadata.json"):
            (tmp_path / version / name).write_text("{}")
    env = dict(os.environ, MODEL_DIR=str(tmp_path))
    result, loaded = run_loaded(["promote", "1"], env)
    assert result.returncode == 0 and result.stdout == "serving version 1 (was version 2)\n"
    assert loaded == ""
    result, loaded = run_loaded(["rollback"], env)
    assert result.returncode == 0 and result.stdout == "serving version 2 (was version 1)\n"
    assert loaded == ""


def test_poster_shape_mirror_yardstick_and_finetuning_options() -> None:
    _, tall = parse_args(
        [
            "train",
            "--image-size",
            "320x224",
            "--mirror",
            "--cross-validate",
            "5",
            "--finetune-epochs",
            "3",
            "--seed",
            "7",
        ],
        {},
    )
    assert isinstance(tall, TrainSettings)
    assert tall.image_size == (320, 224) and tall.mirror and tall.cross_validate == 5
    assert tall.finetune.epochs == 3 and tall.finetune.seed == 7 and tall.head.epochs == 60
    _, square = parse_args(["train", "--image-size", "256", "--no-mirror"], {})
    assert isinstance(square, TrainSettings) and square.image_size == (256, 256)
    assert not square.mirror and TrainSettings().mirror  # the mirror mean is the default
    with pytest.raises(SystemExit, match="invalid options"):
        parse_args(["train", "--cross-validate", "1"], {})
