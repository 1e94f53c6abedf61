"""Event validation and the published JSON Schema."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from poster_genres.schemas import (
    DeadLetter,
    ErrorCode,
    EventDecodeError,
    MovieGenres,
    NewMovie,
    OriginalRecord,
    contract,
    decode_new_movie,
)


def test_a_minimal_event_and_a_full_one():
    assert decode_new_movie(b'{"tmdb_id": 603}') == NewMovie(tmdb_id=603)
    event = decode_new_movie(
        json.dumps(
            {
                "tmdb_id": 603,
                "event_id": "e1",
                "title": "The Matrix",
                "occurred_at": "2026-11-28T09:30:00Z",
                "schema_version": 1,
                "producer_note": "ignored",
            }
        ).encode()
    )
    assert event.title == "The Matrix" and event.event_id == "e1" and event.occurred_at.year == 2026


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"[603]", "not an object"),
        (b'{"tmdb_id": 0}', "greater than 0"),
        (b'{"tmdb_id": -1}', "greater than 0"),
        (b'{"tmdb_id": "603"}', "valid integer"),
        (b'{"tmdb_id": 603.0}', "valid integer"),
        (b'{"tmdb_id": true}', "valid integer"),
        (b'{"tmdb_id": 99999999999}', "less than or equal"),
        (b'{"tmdb_id": NaN}', "NaN"),
        (b'{"tmdb_id": 1, "tmdb_id": 2}', "duplicate key"),
        (b'{"tmdb_id": 1, "occurred_at": "yesterday"}', "occurred_at"),
        (b'{"tmdb_id": 1, "occurred_at": "2026-11-28T09:30:00"}', "timezone"),
        (b"\xff\xfe", "not UTF-8"),
        (None, "tombstone"),
        (b"[" * 60_000, "not JSON"),
    ],
)
def test_bad_events_are_refused_with_a_reason(raw, reason):
    with pytest.raises(EventDecodeError, match=reason):
        decode_new_movie(raw)


def test_oversized_values_are_refused_before_parsing():
    with pytest.raises(EventDecodeError, match="over the limit"):
        decode_new_movie(b'{"tmdb_id": 1, "title": "' + b"x" * 100 + b'"}', max_bytes=64)


def test_original_record_keeps_text_or_base64_and_truncates_huge_values():
    text = OriginalRecord.from_raw("t", 0, 5, b"k", b"hello")
    assert (text.value, text.value_encoding, text.raw_value()) == ("hello", "utf-8", b"hello")
    binary = OriginalRecord.from_raw("t", 0, 5, b"k", b"\xff\x00")
    assert binary.value_encoding == "base64" and binary.raw_value() == b"\xff\x00"
    assert base64.b64decode(binary.key) == b"k"
    huge = OriginalRecord.from_raw("t", 0, 5, None, b"a" * 1000, keep_bytes=100)
    assert huge.value_truncated and huge.value_bytes == 1000 and len(huge.value) == 100


def test_python_m_schemas_prints_every_topic():
    out = subprocess.run(
        [sys.executable, "-m", "poster_genres.schemas"], capture_output=True, text=True, check=True
    ).stdout
    schemas = json.loads(out)
    assert set(schemas) == {"movies.new", "movies.genres", "movies.new.dlq"}
    assert schemas["movies.new"]["required"] == ["tmdb_id"]
    assert "description" in schemas["movies.genres"]["properties"]["genres"]
    assert set(MovieGenres.model_fields) <= set(schemas["movies.genres"]["properties"])
    assert set(DeadLetter.model_fields) <= set(schemas["movies.new.dlq"]["properties"])


# --- the published contract (schemas/json/) -------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_contract_files_are_up_to_date():
    assert contract.stale(contract.DEFAULT_DIR) == [], (
        "schemas/json/ differs from the models: run `python -m poster_genres.schemas write` and commit the result"
    )
    assert contract.DEFAULT_DIR == ROOT / "schemas" / "json"


def test_schemas_check_fails_on_a_stale_file_and_write_fixes_it(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "poster_genres.schemas", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )

    assert run("write", str(tmp_path)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(contract.files())
    assert run("check", str(tmp_path)).returncode == 0
    stale = tmp_path / "movies.genres.schema.json"
    stale.write_text(stale.read_text().replace('"tmdb_id"', '"tmdbId"'))
    (tmp_path / "movies.old.schema.json").write_text("{}")
    done = run("check", str(tmp_path))
    assert done.returncode == 1
    assert "movies.genres.schema.json" in done.stderr and "movies.old.schema.json" in done.stderr
    assert "movies.new.schema.json" not in done.stderr


def test_importing_schemas_needs_pydantic_only():
    """Consumers install the schemas without the worker's dependencies (no TensorFlow, no Kafka)."""
    code = (
        "import sys, poster_genres.schemas, poster_genres.schemas.contract\n"
        "import poster_genres.schemas.__main__\n"
        "top = {name.split('.')[0] for name in sys.modules if not name.startswith('_')}\n"
        "print('\\n'.join(sorted(top - set(sys.stdlib_module_names))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "tensorflow" not in loaded and "kafka" not in loaded
    pydantic_and_its_own = {
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
    }
    assert loaded - {"poster_genres"} <= pydantic_and_its_own, loaded


def test_the_contract_distribution_holds_the_contract_alone(tmp_path: Path) -> None:
    """`pip install ./schemas` gives a producer `poster_genres.schemas` and pydantic, no more."""
    source = shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("movie_poster_genres_contract-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    folders = {n.rsplit("/", 1)[0] for n in names if not n.startswith("movie_poster_genres_")}
    assert folders == {"poster_genres/schemas", "poster_genres/schemas/json"}, folders
    assert {"poster_genres/schemas/events.py", "poster_genres/schemas/json/asyncapi.yaml"} <= set(
        names
    )
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA")))
    requires = [line for line in metadata.decode().splitlines() if line.startswith("Requires-")]
    assert requires == ["Requires-Python: <3.13,>=3.11", "Requires-Dist: pydantic<3,>=2.7"]


def published_schemas() -> dict[str, dict]:
    return {
        name: json.loads((contract.DEFAULT_DIR / name).read_text())
        for name in contract.files()
        if name.endswith(".json")
    }


def closed_objects(schema, path="$"):
    """Every place in a JSON Schema that refuses unknown properties."""
    if isinstance(schema, dict):
        if (
            schema.get("additionalProperties") is False
            or schema.get("unevaluatedProperties") is False
        ):
            yield path
        for key, value in schema.items():
            yield from closed_objects(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from closed_objects(value, f"{path}[{i}]")


def test_published_schemas_allow_unknown_fields():
    for name, schema in published_schemas().items():
        assert list(closed_objects(schema)) == [], name
    assert list(closed_objects(contract.asyncapi()["components"]["schemas"])) == []


def test_examples_validate_and_so_do_events_with_fields_added_later():
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema (a dev dependency) validates the examples"
    )
    for topic, example in contract.examples().items():
        schema = json.loads((contract.DEFAULT_DIR / contract.schema_file(topic)).read_text())
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.FormatChecker()
        )
        validator.validate(example)
        validator.validate({**example, "added_in_a_later_release": {"any": "thing"}})
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**example, "tmdb_id": "603"})
        model = contract.TOPICS[topic]
        assert model.model_validate(
            {**example, "added_in_a_later_release": 1}
        ) == model.model_validate(example)


def test_metadata_schema_matches_what_the_trainer_writes():
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema (a dev dependency) validates the examples"
    )
    from poster_genres.schemas import ModelMetadata

    metadata = ModelMetadata(
        labels=["Action", "Comedy"],
        thresholds=[0.4, 0.55],
        image_size=(224, 224),
        feature_extractor="https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
        created_at="2026-11-28T09:30:00Z",
        trainer_note="kept",
    )
    schema = published_schemas()[contract.METADATA_SCHEMA_FILE]
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(json.loads(metadata.model_dump_json()))
    assert not validator.is_valid({**json.loads(metadata.model_dump_json()), "image_size": [224]})


def test_asyncapi_document_describes_the_worker():
    from poster_genres.worker.settings import WorkerSettings

    settings = WorkerSettings(_env_file=None)
    doc = contract.asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert (
        addresses
        == {settings.input_topic, settings.output_topic, settings.dlq_topic}
        == set(contract.TOPICS)
    )
    actions = {
        doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]: op["action"]
        for op in doc["operations"].values()
    }
    assert actions == {"movies.new": "receive", "movies.genres": "send", "movies.new.dlq": "send"}
    (receive,) = [op for op in doc["operations"].values() if op["action"] == "receive"]
    assert (
        receive["bindings"]["kafka"]["groupId"]["default"] == settings.group_id == contract.GROUP_ID
    )
    assert settings.client_id == contract.CLIENT_ID
    messages = doc["components"]["messages"]
    key = messages["newMovie"]["bindings"]["kafka"]["key"]
    for message in messages.values():
        (example,) = message["examples"]
        assert re.fullmatch(key["pattern"].strip("^$"), str(example["payload"]["tmdb_id"]))
        assert message["payload"]["$ref"].rsplit("/", 1)[1] in doc["components"]["schemas"]
    assert messages["movieGenres"]["bindings"]["kafka"]["key"] == key


def test_asyncapi_yaml_reads_back_as_the_document():
    yaml = pytest.importorskip("yaml", reason="PyYAML (a dev dependency) reads the YAML back")
    text = (contract.DEFAULT_DIR / contract.ASYNCAPI_FILE).read_text()
    assert yaml.safe_load(text) == contract.asyncapi()
    tricky = {
        "on": ["yes", 1e-05, 2.5, -3, None, True, "a: b", 'q"\\\n\u00e9'],
        "$ref": {},
        "k": [[1], {"x": []}],
    }
    assert yaml.safe_load(contract.to_yaml(tricky)) == tricky


def test_dead_letter_codes_are_an_open_list():
    """A code added in a later release reaches older readers as a string, not as an error."""
    letter = contract.examples()["movies.new.dlq"]
    assert DeadLetter.model_validate(letter).error is ErrorCode.MOVIE_NOT_FOUND
    assert (
        DeadLetter.model_validate({**letter, "error": "quota_exceeded"}).error == "quota_exceeded"
    )
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema (a dev dependency) validates the examples"
    )
    schema = published_schemas()[contract.schema_file("movies.new.dlq")]
    jsonschema.Draft202012Validator(schema).validate({**letter, "error": "quota_exceeded"})
    assert set(schema["$defs"]["ErrorCode"]["enum"]) == {code.value for code in ErrorCode}
