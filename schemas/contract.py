"""The published contract, generated from the models: a JSON Schema per topic, for
`metadata.json` and for the `serving.json` pointer, and the worker's AsyncAPI document.

Consumers read the files in `schemas/json/`, not this code, so the files are committed;
`python -m poster_genres.schemas write` regenerates them and a test fails when the committed copies
differ from what the models say. Only pydantic is imported, so a consumer can install
`schemas` without the worker's dependencies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from poster_genres.schemas.events import (
    SCHEMA_VERSION,
    DeadLetter,
    ErrorCode,
    MovieGenres,
    NewMovie,
    OriginalRecord,
)
from poster_genres.schemas.headers import DEAD_LETTER_HEADERS
from poster_genres.schemas.model import ModelMetadata, ServingPointer

DEFAULT_DIR = Path(__file__).parent / "json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_FILE = "asyncapi.yaml"
METADATA_SCHEMA_FILE = "metadata.schema.json"
SERVING_SCHEMA_FILE = "serving.schema.json"
TOPICS: dict[str, type[BaseModel]] = {
    "movies.new": NewMovie,
    "movies.genres": MovieGenres,
    "movies.new.dlq": DeadLetter,
}
# The worker's defaults (INPUT_TOPIC, ..., GROUP_ID, CLIENT_ID); a test holds them equal.
GROUP_ID = "genre-worker"
CLIENT_ID = "genre-worker"
KAFKA_BINDING = "0.5.0"
TMDB_ID_KEY = {
    "type": "string",
    "pattern": "^[1-9][0-9]*$",
    "description": "The TMDB id as a decimal string, so that every event of one movie goes "
    "to one partition, in order.",
    "examples": ["603"],
}


def schema_file(topic: str) -> str:
    """File name of a topic's JSON Schema."""
    return f"{topic}.schema.json"


def standalone_schema(model: type[BaseModel]) -> dict[str, Any]:
    """One model's JSON Schema as a self-contained document (its `$defs` inside)."""
    return {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema()}


def examples() -> dict[str, dict[str, Any]]:
    """A valid event of each topic, as JSON-ready values (built through the models)."""
    source = "0b6f7a3e-4c1d-4e0a-9f57-1d2c3b4a5e6f"
    new = NewMovie(
        tmdb_id=603,
        event_id=source,
        title="The Matrix",
        occurred_at=datetime(2026, 11, 28, 9, 30, tzinfo=UTC),
    )
    genres = MovieGenres(
        event_id="9d1c5e0e-7b1a-4f5e-8a8e-5c2f3d4b6a71",
        source_event_id=source,
        tmdb_id=603,
        title="The Matrix",
        genres=["Action", "Sci-Fi"],
        scores={"Action": 0.91, "Comedy": 0.04, "Sci-Fi": 0.77},
        model_version=3,
        poster_url="https://image.tmdb.org/t/p/w780/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg",
        classified_at=datetime(2026, 11, 28, 9, 30, 1, 123456, tzinfo=UTC),
        page_genres=["Action", "Sci-Fi"],
    )
    raw = b'{"tmdb_id": 99999999, "event_id": "c7d1"}'
    letter = DeadLetter(
        error=ErrorCode.MOVIE_NOT_FOUND,
        detail="GET https://www.themoviedb.org/movie/99999999 answered 404",
        attempts=1,
        failed_at=datetime(2026, 11, 28, 9, 30, 2, tzinfo=UTC),
        tmdb_id=99999999,
        source_event_id="c7d1",
        original=OriginalRecord.from_raw(
            "movies.new", 4, 1042, b"99999999", raw, timestamp_ms=1795858200000
        ),
    )
    return {
        "movies.new": new.model_dump(mode="json", exclude_none=True),
        "movies.genres": genres.model_dump(mode="json"),
        "movies.new.dlq": letter.model_dump(mode="json"),
    }


def asyncapi() -> dict[str, Any]:
    """The worker's AsyncAPI 3.0 document: what it receives and sends, and how."""
    _, top = models_json_schema(
        [(model, "validation") for model in TOPICS.values()],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "asyncapi": "3.0.0",
        "info": _info(),
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster (`KAFKA_BOOTSTRAP_SERVERS`).",
                "variables": {"bootstrap": {"default": "localhost:9092"}},
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {"messages": _messages(examples()), "schemas": top["$defs"]},
    }


def _info() -> dict[str, Any]:
    return {
        "title": "genre-worker",
        "version": f"{SCHEMA_VERSION}.0.0",
        "description": (
            "Tags new movies with genres from their TMDB posters. Every `movies.new` event "
            "ends as one `movies.genres` event or one `movies.new.dlq` dead letter, at least "
            "once: deduplicate on `source_event_id`. Consumers ignore fields they do not "
            "know; the major version is the events' `schema_version`. Generated by "
            "`python -m poster_genres.schemas write`."
        ),
        "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
    }


def _channel(topic: str, message_id: str, description: str) -> dict[str, Any]:
    return {
        "address": topic,
        "description": description,
        "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
    }


def _channels() -> dict[str, Any]:
    return {
        "moviesNew": _channel(
            "movies.new",
            "newMovie",
            "Movies whose genres are not known yet. Unknown fields are ignored.",
        ),
        "moviesGenres": _channel(
            "movies.genres",
            "movieGenres",
            "One event per input that succeeded: the genres the model sees in the poster.",
        ),
        "moviesNewDlq": _channel(
            "movies.new.dlq",
            "deadLetter",
            "One event per input that failed for good: a stable error code and the raw input.",
        ),
    }


def _operation(
    action: str, channel_id: str, message_id: str, summary: str, **kafka: Any
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
        "bindings": {"kafka": {**kafka, "bindingVersion": KAFKA_BINDING}},
    }


def _operations() -> dict[str, Any]:
    client = {"type": "string", "default": CLIENT_ID, "description": "CLIENT_ID"}
    return {
        "receiveNewMovie": _operation(
            "receive",
            "moviesNew",
            "newMovie",
            "Consume new movies as one consumer group.",
            groupId={"type": "string", "default": GROUP_ID, "description": "GROUP_ID"},
            clientId=client,
        ),
        "sendMovieGenres": _operation(
            "send", "moviesGenres", "movieGenres", "Publish a movie's genres.", clientId=client
        ),
        "sendDeadLetter": _operation(
            "send",
            "moviesNewDlq",
            "deadLetter",
            "Publish an input that failed for good.",
            clientId=client,
        ),
    }


def _message(
    sample: dict[str, Any], name: str, topic: str, title: str, summary: str, key: dict[str, Any]
) -> dict[str, Any]:
    model = TOPICS[topic]
    return {
        "name": model.__name__,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING}},
        "examples": [{"name": name, "payload": sample[topic]}],
    }


def _messages(sample: dict[str, Any]) -> dict[str, Any]:
    dead_letter_key = {
        "type": ["string", "null"],
        "description": "The TMDB id as a decimal string when the input held "
        "a valid event, else the input record's key as it was.",
        "examples": ["99999999"],
    }
    return {
        "newMovie": _message(
            sample,
            "the-matrix",
            "movies.new",
            "New movie",
            "A movie whose genres are not known yet.",
            TMDB_ID_KEY,
        ),
        "movieGenres": _message(
            sample,
            "the-matrix",
            "movies.genres",
            "Movie genres",
            "The genres the model sees in a movie's poster.",
            TMDB_ID_KEY,
        ),
        "deadLetter": {
            **_message(
                sample,
                "movie-not-found",
                "movies.new.dlq",
                "Dead letter",
                "An input that failed for good, and why.",
                dead_letter_key,
            ),
            "headers": dead_letter_headers(),
        },
    }


def dead_letter_headers() -> dict[str, Any]:
    """The Kafka headers of a dead letter, as an AsyncAPI message `headers` schema."""
    return {
        "type": "object",
        "description": "Kafka record headers, values UTF-8 text. The input record's own headers "
        "are copied first; replaying a dead letter gives them back without the `dlq.` ones.",
        "properties": {
            name: {"type": "string", "description": text}
            for name, text in DEAD_LETTER_HEADERS.items()
        },
        "required": list(DEAD_LETTER_HEADERS),
    }


def files() -> dict[str, str]:
    """Every file of the contract: name -> text."""
    out = {schema_file(topic): _json(standalone_schema(model)) for topic, model in TOPICS.items()}
    out[METADATA_SCHEMA_FILE] = _json(standalone_schema(ModelMetadata))
    out[SERVING_SCHEMA_FILE] = _json(standalone_schema(ServingPointer))
    out[ASYNCAPI_FILE] = (
        "# Generated by `python -m poster_genres.schemas write` from the pydantic models in "
        "schemas/: do not edit.\n" + to_yaml(asyncapi())
    )
    return out


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Write every contract file into `directory`; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = DEFAULT_DIR) -> list[str]:
    """Names of the files in `directory` that are missing, differ, or are no longer generated."""
    expected = files()
    present = (
        {path.name for path in directory.glob("*") if path.is_file()}
        if directory.is_dir()
        else set()
    )
    wrong = [
        name
        for name, text in expected.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted(wrong + sorted(present - set(expected)))


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# YAML without a YAML library, so that writing the contract needs nothing beyond pydantic and
# gives the same bytes everywhere: block mappings and sequences, every scalar written as a JSON
# scalar (strings always double-quoted, a YAML flow scalar too), keys plain when that is safe.
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_.$-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def to_yaml(value: dict[str, Any]) -> str:
    """A mapping of JSON values as block-style YAML."""
    return "".join(line + "\n" for line in _yaml_lines(value, ""))


def _yaml_lines(value: Any, indent: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            name = (
                key
                if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
                else json.dumps(key)
            )
            if isinstance(item, (dict, list)) and item:
                yield f"{indent}{name}:"
                yield from _yaml_lines(item, indent + "  ")
            else:
                yield f"{indent}{name}: {_yaml_scalar(item)}"
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                first, *rest = _yaml_lines(item, indent + "  ")
                yield f"{indent}- {first.lstrip()}"
                yield from rest
            else:
                yield f"{indent}- {_yaml_scalar(item)}"


def _yaml_scalar(value: Any) -> str:
    text = json.dumps(value)
    if isinstance(value, float) and "e" in text and "." not in text:
        text = text.replace("e", ".0e")  # YAML 1.1 readers take `1e-05` for a string
    return text
