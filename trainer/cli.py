"""The command line: `genre-trainer COMMAND`, one settings model and one function per command.

The commands: train, evaluate, promote, rollback, fetch-posters, predict, backfill. Each
is a settings model, whose fields are its options (`trainer/options.py`), and a function
that takes it. The functions import what they need when they run, so
`fetch-posters`, `backfill`, `promote` and `rollback` never load TensorFlow.

Exit status: 0 done; 1 `fetch-posters` had failures; 2 input the command cannot use;
3 `train` made a version that the release gate held back (a failed job, on purpose).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from poster_genres.trainer.errors import TrainerError
from poster_genres.trainer.options import add_options, settings_from_args
from poster_genres.trainer.settings import (
    BackfillSettings,
    EvaluateSettings,
    FetchPostersSettings,
    PosterInput,
    PredictSettings,
    PromoteSettings,
    RollbackSettings,
    TrainSettings,
)

if TYPE_CHECKING:
    from poster_genres.posters import FetchSettings

log = logging.getLogger(__name__)

BAD_INPUT = 2
HELD_BACK = 3  # train: the release gate kept the new version from being served


@dataclass(frozen=True)
class Command:
    """A command: its settings model, the function that runs it, and a line of help."""

    settings: type[BaseModel]
    run: Callable[[Any], int]
    help: str


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all commands, with options made from their settings."""
    parser = argparse.ArgumentParser(prog="genre-trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        add_options(
            sub.add_parser(name, help=command.help, description=command.help), command.settings
        )
    return parser


def parse_args(argv: list[str], environ: Mapping[str, str]) -> tuple[str, BaseModel]:
    """The command named in `argv` and its settings (options, else environment, else default)."""
    args = build_parser().parse_args(argv)
    try:
        return args.command, settings_from_args(COMMANDS[args.command].settings, args, environ)
    except ValidationError as exc:
        raise SystemExit(f"genre-trainer: invalid options: {exc}") from None


def run(command: str, settings: BaseModel) -> int:
    """Run one command; returns the exit status (2 for input it cannot use)."""
    try:
        return COMMANDS[command].run(settings)
    except TrainerError as exc:
        log.error("%s", exc)
        return BAD_INPUT


def fetch_settings(settings: PosterInput) -> FetchSettings:
    """The worker's fetch settings (TMDB_BASE_URL, POSTER_HOSTS, ... from the environment)."""
    from poster_genres.posters import FetchSettings

    overrides = {"fetch_concurrency": settings.concurrency} if settings.concurrency else {}
    return FetchSettings(**overrides)


def cmd_train(settings: TrainSettings) -> int:
    """Train, evaluate and export; serve the version if the gate allows; print the outcome."""
    from poster_genres.trainer.train import train

    result = train(settings, None if settings.offline else fetch_settings(settings))
    m = result.metadata.metrics
    print(
        json.dumps(
            {
                "version": int(result.version_dir.name),
                "version_dir": str(result.version_dir),
                "promoted": result.promoted,
                "gate": result.decision.reason,
                "split": m["split"],
                "macro_f1": m["macro_f1"],
                "micro_f1": m["micro_f1"],
                "samples_f1": m["samples_f1"],
                "labels": result.metadata.labels,
            }
        )
    )
    return HELD_BACK if settings.promote and not result.promoted else 0


def cmd_evaluate(settings: EvaluateSettings) -> int:
    """Score versions on the evaluation films; print a table, write JSON and a PNG."""
    from poster_genres.trainer.compare import evaluate_versions, table, write_comparison

    report = evaluate_versions(settings)
    print(table(report))
    for path in write_comparison(report, settings.out, "evaluation"):
        print(f"wrote {path}")
    return 0


def cmd_promote(settings: PromoteSettings) -> int:
    """Serve one version (a candidate is moved in first)."""
    from poster_genres.trainer.release import promote

    print(promote(settings.model_dir, settings.version).line())
    return 0


def cmd_rollback(settings: RollbackSettings) -> int:
    """Serve the version that was served before the current one."""
    from poster_genres.trainer.release import rollback

    print(rollback(settings.model_dir).line())
    return 0


def cmd_fetch_posters(settings: FetchPostersSettings) -> int:
    """Fill the poster cache for the labelled movies (and the unlabelled with --all)."""
    from poster_genres.trainer.movielens import load_movies
    from poster_genres.trainer.posters import PosterCache, fetch_posters

    movies = load_movies(settings)
    wanted = movies.labelled
    if settings.include_unlabelled:
        wanted = movies.table[movies.table["tmdbId"].notna()]
    report = fetch_posters(
        [int(i) for i in wanted["tmdbId"]],
        PosterCache(settings.posters),
        fetch_settings(settings),
        settings.retry_failed,
        settings.progress,
    )
    print(report.summary())
    return 0 if not report.failed else 1


def cmd_predict(settings: PredictSettings) -> int:
    """Print the genres of each input; render them with --show."""
    from poster_genres.trainer.movielens import read_movielens
    from poster_genres.trainer.posters import PosterCache
    from poster_genres.trainer.predict import load_images, predict, render, served_version_dir

    version = served_version_dir(settings.model_dir)
    titles = read_movielens(settings.movielens).titles() if settings.movielens else {}
    images = load_images(
        settings.inputs,
        PosterCache(settings.posters),
        None if settings.offline else fetch_settings(settings),
        titles,
    )
    predictions = predict(version, images)
    for p in predictions:
        if settings.as_json:
            print(
                json.dumps(
                    {
                        "input": p.source,
                        "title": p.title,
                        "genres": p.genres,
                        "scores": p.scores,
                        "model_version": int(version.name),
                    }
                )
            )
        else:
            shown = ", ".join(f"{g} ({p.scores[g]:.2f})" for g in p.genres) or "-"
            label = f"{p.source} {p.title}" if p.title else p.source
            print(f"{label}\t{shown}")
    if settings.show:
        drawn = render(predictions, settings.show, f"{settings.model_dir}/{version.name}")
        log.info("rendered %s", drawn)
    return 0


def cmd_backfill(settings: BackfillSettings) -> int:
    """Produce (or with --dry-run print) movies.new for every movie without genres."""
    from poster_genres.trainer.backfill import backfill_events, publish_events, write_events
    from poster_genres.trainer.movielens import load_movies

    events = backfill_events(load_movies(settings))
    if settings.dry_run:
        write_events(events, sys.stdout)
        return 0
    n = publish_events(events, settings.kafka, settings.topic)
    print(f"published {n} event(s) to {settings.topic}")
    return 0


COMMANDS: dict[str, Command] = {
    "train": Command(
        TrainSettings, cmd_train, "train a new model version; serve it if the release gate allows"
    ),
    "evaluate": Command(
        EvaluateSettings,
        cmd_evaluate,
        "compare versions on the evaluation films of the poster cache",
    ),
    "promote": Command(
        PromoteSettings, cmd_promote, "serve a version (a candidate is moved in first)"
    ),
    "rollback": Command(
        RollbackSettings, cmd_rollback, "serve the version that was served before the current one"
    ),
    "fetch-posters": Command(
        FetchPostersSettings, cmd_fetch_posters, "fill the poster cache for the labelled movies"
    ),
    "predict": Command(PredictSettings, cmd_predict, "print the genres of posters"),
    "backfill": Command(
        BackfillSettings, cmd_backfill, "produce movies.new for every movie without genres"
    ),
}
