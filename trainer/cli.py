"""The command line: `genre-trainer {train,fetch-posters,predict,backfill}`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import ValidationError

from trainer.settings import LOSS_NAMES, HeadSettings, TrainerSettings

if TYPE_CHECKING:
    from worker.settings import FetchSettings

log = logging.getLogger(__name__)

_HEAD = HeadSettings()
_DEFAULTS = TrainerSettings()


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MovieLens")
    g.add_argument("--movielens", metavar="DIR", help="folder with movies.csv and links.csv")
    g.add_argument("--download", action="store_true", help="download the release (cached) instead")
    g.add_argument("--release", default=_DEFAULTS.release, help="MovieLens release to download (%(default)s)")
    g.add_argument("--movielens-url", default=_DEFAULTS.movielens_url, help=argparse.SUPPRESS)
    g.add_argument("--cache-dir", default=str(_DEFAULTS.cache_dir),
                   help="downloads and the embedding cache (%(default)s)")


def _poster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("posters")
    g.add_argument("--posters", default=str(_DEFAULTS.posters), metavar="DIR",
                   help="poster cache, <tmdbId>.jpg (%(default)s)")
    g.add_argument("--concurrency", dest="fetch_concurrency", type=int, default=None,
                   help="posters fetched at once (default: FETCH_CONCURRENCY or 16)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="INFO", help="%(default)s")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser = argparse.ArgumentParser(prog="genre-trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", parents=[common], help="train and export a new model version")
    _data_options(t)
    _poster_options(t)
    t.add_argument("--offline", action="store_true", help="use cached posters only")
    t.add_argument("--feature-extractor", default=_DEFAULTS.feature_extractor, metavar="HANDLE",
                   help="TF Hub / Kaggle handle or local SavedModel folder (%(default)s)")
    t.add_argument("--image-size", type=int, default=_DEFAULTS.image_size[0], help="%(default)s")
    t.add_argument("--model-dir", default=str(_DEFAULTS.model_dir), help="%(default)s")
    t.add_argument("--keep-versions", type=int, default=_DEFAULTS.keep_versions,
                   help="versions kept after export, 0 = all (%(default)s)")
    t.add_argument("--val-fraction", type=float, default=_DEFAULTS.val_fraction, help="%(default)s")
    t.add_argument("--test-fraction", type=float, default=_DEFAULTS.test_fraction,
                   help="held out from training and threshold tuning; 0 = none (%(default)s)")
    t.add_argument("--seed", type=int, default=_DEFAULTS.split_seed, help="split and training seed (%(default)s)")
    t.add_argument("--folds", type=int, default=_DEFAULTS.folds,
                   help="heads trained by K-fold cross-fitting on train+validation and averaged; "
                        "thresholds tuned on their out-of-fold scores; 1 = one split (%(default)s)")
    t.add_argument("--min-genre-count", type=int, default=_DEFAULTS.min_genre_count, help="%(default)s")
    t.add_argument("--loss", choices=list(LOSS_NAMES), default=_HEAD.loss, help="%(default)s")
    t.add_argument("--epochs", type=int, default=_HEAD.epochs, help="%(default)s")
    t.add_argument("--patience", type=int, default=_HEAD.patience, help="%(default)s")
    t.add_argument("--batch-size", type=int, default=_HEAD.batch_size, help="%(default)s")
    t.add_argument("--learning-rate", type=float, default=_HEAD.learning_rate, help="%(default)s")
    t.add_argument("--hidden", type=int, default=_HEAD.hidden, help="%(default)s")
    t.add_argument("--dropout", type=float, default=_HEAD.dropout, help="%(default)s")
    t.add_argument("--l2", type=float, default=_HEAD.l2, help="%(default)s")
    t.add_argument("--no-standardize", action="store_true", help="feed raw embeddings to the head")
    t.add_argument("--tensorboard-dir", default=None, help="write TensorBoard logs here")

    f = sub.add_parser("fetch-posters", parents=[common], help="fill the poster cache for the labelled movies")
    _data_options(f)
    _poster_options(f)
    f.add_argument("--retry-failed", action="store_true", help="also retry permanent failures")
    f.add_argument("--all", dest="include_unlabelled", action="store_true",
                   help="also fetch the posters of movies without genres")

    p = sub.add_parser("predict", parents=[common], help="print the genres of posters")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_TMDB_ID")
    p.add_argument("--model-dir", default=str(_DEFAULTS.model_dir), help="%(default)s")
    _poster_options(p)
    p.add_argument("--offline", action="store_true", help="do not fetch posters missing from the cache")
    p.add_argument("--movielens", metavar="DIR", help="MovieLens folder, for titles")
    p.add_argument("--show", metavar="OUT.png", help="render the posters with their genres")
    p.add_argument("--json", dest="as_json", action="store_true", help="print JSON lines")

    b = sub.add_parser("backfill", parents=[common], help="produce movies.new for every movie without genres")
    _data_options(b)
    b.add_argument("--bootstrap-servers", default=None,
                   help="Kafka brokers (default: KAFKA_BOOTSTRAP_SERVERS or localhost:9092)")
    b.add_argument("--topic", default=_DEFAULTS.topic, help="%(default)s")
    b.add_argument("--dry-run", action="store_true", help="print the events as JSON lines")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line."""
    return build_parser().parse_args(argv)


def configure_logging(level: str) -> None:
    """Log lines to stderr (stdout is the command's output)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> TrainerSettings:
    """The one settings object of this run."""
    values = {k: v for k, v in vars(args).items() if v is not None}
    head_keys = set(HeadSettings.model_fields) - {"standardize"}
    head = {k: values.pop(k) for k in list(values) if k in head_keys}
    if "seed" in values:
        head["seed"] = values["split_seed"] = values.pop("seed")
    head["standardize"] = not values.pop("no_standardize", False)
    if "image_size" in values:
        values["image_size"] = (values["image_size"], values["image_size"])
    values["progress"] = not values.pop("no_progress", False)
    values.setdefault("bootstrap_servers", environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    for key in ("command", "log_level"):
        values.pop(key, None)
    try:
        return TrainerSettings(head=HeadSettings(**head), **values)
    except ValidationError as exc:
        raise SystemExit(f"genre-trainer: invalid options: {exc}") from None


def fetch_settings(settings: TrainerSettings) -> FetchSettings:
    """The worker's fetch settings (TMDB_BASE_URL, POSTER_HOSTS, ... from the environment)."""
    from worker.settings import FetchSettings

    overrides = {"fetch_concurrency": settings.fetch_concurrency} if settings.fetch_concurrency else {}
    return FetchSettings(**overrides)


def run(command: str, settings: TrainerSettings, environ: Mapping[str, str]) -> int:
    """Run one command; returns the exit status."""
    from trainer.errors import TrainerError

    try:
        return _COMMANDS[command](settings, environ)
    except TrainerError as exc:
        log.error("%s", exc)
        return 2


def cmd_train(settings: TrainerSettings, environ: Mapping[str, str]) -> int:
    """Train, evaluate and export; print the new version's folder and headline metrics."""
    from trainer.train import train

    result = train(settings, None if settings.offline else fetch_settings(settings))
    m = result.metadata.metrics
    print(json.dumps({"version_dir": str(result.version_dir), "split": m["split"],
                      "macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"],
                      "samples_f1": m["samples_f1"], "labels": result.metadata.labels}))
    return 0


def cmd_fetch_posters(settings: TrainerSettings, environ: Mapping[str, str]) -> int:
    """Fill the poster cache for the labelled movies (and the unlabelled with --all)."""
    from trainer.posters import PosterCache, fetch_posters
    from trainer.train import load_movies

    movies = load_movies(settings)
    wanted = movies.labelled
    if settings.include_unlabelled:
        wanted = movies.table[movies.table["tmdbId"].notna()]
    report = fetch_posters([int(i) for i in wanted["tmdbId"]], PosterCache(settings.posters),
                           fetch_settings(settings), settings.retry_failed, settings.progress)
    print(report.summary())
    return 0 if not report.failed else 1


def cmd_predict(settings: TrainerSettings, environ: Mapping[str, str]) -> int:
    """Print the genres of each input; render them with --show."""
    from trainer.movielens import read_movielens
    from trainer.posters import PosterCache
    from trainer.predict import latest_version_dir, load_images, predict, render

    version = latest_version_dir(settings.model_dir)
    titles = read_movielens(settings.movielens).titles() if settings.movielens else {}
    images = load_images(settings.inputs, PosterCache(settings.posters),
                         None if settings.offline else fetch_settings(settings), titles)
    predictions = predict(version, images)
    for p in predictions:
        if settings.as_json:
            print(json.dumps({"input": p.source, "title": p.title, "genres": p.genres,
                              "scores": p.scores, "model_version": int(version.name)}))
        else:
            shown = ", ".join(f"{g} ({p.scores[g]:.2f})" for g in p.genres) or "-"
            label = f"{p.source} {p.title}" if p.title else p.source
            print(f"{label}\t{shown}")
    if settings.show:
        log.info("rendered %s", render(predictions, settings.show, f"{settings.model_dir}/{version.name}"))
    return 0


def cmd_backfill(settings: TrainerSettings, environ: Mapping[str, str]) -> int:
    """Produce (or with --dry-run print) movies.new for every movie without genres."""
    from trainer.backfill import backfill_events, publish_events, write_events
    from trainer.train import load_movies

    events = backfill_events(load_movies(settings))
    if settings.dry_run:
        write_events(events, sys.stdout)
        return 0
    n = publish_events(events, settings.bootstrap_servers, settings.topic)
    print(f"published {n} event(s) to {settings.topic}")
    return 0


_COMMANDS = {
    "train": cmd_train,
    "fetch-posters": cmd_fetch_posters,
    "predict": cmd_predict,
    "backfill": cmd_backfill,
}
