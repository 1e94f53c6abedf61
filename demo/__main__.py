"""`make demo` (`python -m demo`): the worker end to end on this machine, with nothing to set up.

Starts the embedded broker, trains a small model on synthetic posters when the model
folder has none, serves new movies' posters from a loopback TMDB stand-in, runs
`genre-worker`, sends `movies.new` events and prints the `movies.genres` events as a
table as they arrive. `--real` uses themoviedb.org and the TF Hub extractor instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REAL_MOVIES = {
    603: "The Matrix",
    550: "Fight Club",
    13: "Forrest Gump",
    862: "Toy Story",
    27205: "Inception",
    694: "The Shining",
    105: "Back to the Future",
    8587: "The Lion King",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path(".demo"), help="models and data (default .demo)"
    )
    parser.add_argument(
        "--events", type=int, default=12, help="movies.new events to send (default 12)"
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train a new model version even if one exists"
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="use themoviedb.org and the TF Hub MobileNetV2 extractor (needs the internet)",
    )
    return parser.parse_args(argv)


class Steps:
    """Numbered progress lines with timings."""

    def __init__(self, total: int):
        self.total, self.number, self.started = total, 0, time.monotonic()

    def begin(self, text: str) -> float:
        self.number += 1
        print(f"[{self.number}/{self.total}] {text} ...", flush=True)
        return time.monotonic()

    def done(self, began: float, text: str = "done") -> None:
        print(f"      {text} ({time.monotonic() - began:.1f} s)", flush=True)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (TensorFlow's C++ logs included) to a file for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log_file:
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def train_demo_model(work: Path, model_dir: Path, real: bool) -> Path:
    """Train on synthetic posters with a local extractor (or MovieLens + TF Hub with `real`)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from poster_genres.posters import FetchSettings
    from poster_genres.trainer.settings import HeadSettings, TrainerSettings
    from poster_genres.trainer.train import train

    if real:
        settings = TrainerSettings(
            download=True,
            cache_dir=work / "data",
            posters=work / "data" / "posters",
            model_dir=model_dir,
            force=True,
        )  # the demo serves what it trains
        return train(settings, FetchSettings()).version_dir
    from demo.extractor import build_local_extractor
    from demo.synthetic import write_dataset

    image_size = (96, 96)
    data = write_dataset(work / "train", n_labelled=800, n_unlabelled=0, n_without_tmdb=0, seed=0)
    extractor = work / "extractor"
    if not (extractor / "saved_model.pb").exists():
        build_local_extractor(extractor, image_size, features=96)
    settings = TrainerSettings(
        movielens=data.root,
        posters=data.posters_dir,
        offline=True,
        feature_extractor=str(extractor),
        extra_extractor=None,  # one random-filter extractor tells synthetic posters apart
        image_size=image_size,
        model_dir=model_dir,
        cache_dir=work / "cache",
        test_fraction=0.0,
        force=True,  # no films held out, so no gate: the demo serves what it trains
        val_fraction=0.2,
        head=HeadSettings(epochs=40, patience=8, hidden=128),
        progress=False,
        repeats=1,  # one 5-fold cross-fit is enough for synthetic posters, and three times quicker
    )
    return train(settings).version_dir


def print_row(record: dict, truth: dict[int, list[str]]) -> None:
    """One line of the live table: an output with its true genres, or a dead letter."""
    if "genres" in record:
        top = max(record["scores"].values()) if record["scores"] else 0.0
        actual = ", ".join(truth.get(record["tmdb_id"], [])) or "?"
        print(
            f"  {record['tmdb_id']:>7}  {str(record.get('title') or '')[:32]:<32}  "
            f"{', '.join(record['genres']) or '-':<28}  {actual:<28}  v{record['model_version']}  {top:.2f}",
            flush=True,
        )
    else:
        print(
            f"  {record.get('tmdb_id') or '':>7}  dead letter: {record['error']}: {record['detail'][:80]}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from demo.broker import EmbeddedBroker, create_topics, free_port
    from demo.synthetic import write_dataset
    from demo.tmdb import StandInMovie, TmdbStandIn, tmdb_genre_names
    from poster_genres.schemas.model import complete_versions

    work = args.work_dir.resolve()
    model_dir = work / "models"
    steps = Steps(6)
    began = steps.begin("starting the embedded Kafka broker (Tansu)")
    with EmbeddedBroker() as broker:
        topics = {"movies.new": 2, "movies.genres": 1, "movies.new.dlq": 1}
        create_topics(broker.bootstrap_servers, topics)
        steps.done(began, f"listening on {broker.bootstrap_servers}, topics {', '.join(topics)}")

        began = steps.begin(f"looking for a model in {model_dir}")
        if args.retrain or not complete_versions(model_dir):
            print(
                "      none: training one on synthetic posters (colour and shape tell the genre)"
                if not args.real
                else "      none: training one on MovieLens and TMDB posters",
                flush=True,
            )
            work.mkdir(parents=True, exist_ok=True)
            print(
                f"      about half a minute on 2 cores; training log in {work / 'train.log'}",
                flush=True,
            )
            with stderr_to(work / "train.log"):
                version = train_demo_model(work, model_dir, args.real)
            steps.done(began, f"exported {version}")
        else:
            steps.done(began, f"serving version {complete_versions(model_dir)[-1]}")

        began = steps.begin("preparing new movies")
        truth: dict[int, list[str]] = {}
        if args.real:
            ids = list(REAL_MOVIES)[: args.events]
            titles = dict(REAL_MOVIES)
            standin = None
            site_env = {}
        else:
            new = write_dataset(
                work / "new", n_labelled=args.events, n_unlabelled=0, n_without_tmdb=0, seed=99
            )
            ids = list(new.labelled)
            truth = new.labelled
            titles = {i: f"New movie {i}" for i in ids}
            movies = {  # every fourth page lists no genres; every other is in the site's layout
                i: StandInMovie(
                    (new.posters_dir / f"{i}.jpg").read_bytes(),
                    title=titles[i],
                    genres=tmdb_genre_names(truth[i]) if n % 4 else None,
                    layout="site" if n % 2 else "og",
                )
                for n, i in enumerate(ids)
            }
            missing = max(ids) + 7
            ids.append(missing)  # one movie the site does not know: a dead letter
            standin = TmdbStandIn(movies).start()
            site_env = {
                "TMDB_BASE_URL": standin.base_url,
                "TMDB_IMAGE_BASE_URL": f"{standin.base_url}/t/p/w500",
                "POSTER_HOSTS": standin.host,
            }
            steps.done(
                began, f"{len(movies)} posters served by a TMDB stand-in at {standin.base_url}"
            )

        began = steps.begin("starting genre-worker")
        port = free_port()
        env = {
            **os.environ,
            **site_env,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "MODEL_DIR": str(model_dir),
            "HTTP_PORT": str(port),
            "GROUP_ID": "genre-demo",
            "SESSION_TIMEOUT_MS": "6000",
            "HEARTBEAT_INTERVAL_MS": "1000",
            "BATCH_SIZE": "8",
        }
        log_path = work / "worker.log"
        log_file = open(log_path, "w")  # noqa: SIM115 (the worker process writes it until stopped)
        worker = subprocess.Popen(
            [sys.executable, "-m", "poster_genres.worker", "--exit-when-idle", "5"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        steps.done(
            began,
            f"pid {worker.pid}, log in {log_path}, metrics on http://127.0.0.1:{port}/metrics",
        )
        try:
            began = steps.begin(f"sending {len(ids)} movies.new events")
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
            for tmdb_id in ids:
                body = {
                    "tmdb_id": tmdb_id,
                    "event_id": f"demo-{tmdb_id}",
                    "title": titles.get(tmdb_id),
                }
                producer.send(
                    "movies.new", key=str(tmdb_id).encode(), value=json.dumps(body).encode()
                )
            producer.flush()
            producer.close()
            steps.done(began)

            began = steps.begin("waiting for movies.genres (the worker starts TensorFlow first)")
            print(
                f"  {'tmdb id':>7}  {'title':<32}  {'predicted genres':<28}  {'drawn on the poster':<28}  model top",
                flush=True,
            )
            consumer = KafkaConsumer(
                bootstrap_servers=broker.bootstrap_servers,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                group_id=None,
            )
            consumer.assign(
                [TopicPartition("movies.genres", 0), TopicPartition("movies.new.dlq", 0)]
            )
            seen, predicted = 0, []
            deadline = time.monotonic() + 300
            while seen < len(ids) and time.monotonic() < deadline and worker.poll() is None:
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        value = json.loads(record.value)
                        print_row(value, truth)
                        seen += 1
                        if value.get("tmdb_id") in truth and "genres" in value:
                            predicted.append((set(value["genres"]), set(truth[value["tmdb_id"]])))
            consumer.close()
            steps.done(began, f"{seen} of {len(ids)} events answered")
            if predicted:
                exact = sum(p == t for p, t in predicted)
                overlap = sum(len(p & t) / len(p | t) for p, t in predicted) / len(predicted)
                print(
                    f"      genres exactly right for {exact} of {len(predicted)} posters; "
                    f"mean overlap (Jaccard) {overlap:.2f}",
                    flush=True,
                )
        finally:
            if worker.poll() is None:
                worker.terminate()
            worker.wait(timeout=60)
            log_file.close()
            if standin is not None:
                standin.stop()
        summary = [line for line in log_path.read_text().splitlines() if "worker stopped" in line]
        print(
            f"worker exited with code {worker.returncode}: {summary[-1].split(': ', 1)[-1] if summary else '?'}"
        )
        print(f"Run `make demo` again to reuse the model in {model_dir}, or add --retrain.")
        return 0 if seen == len(ids) and worker.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
