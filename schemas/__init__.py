"""The events on the three topics, as pydantic models: the contract with producers and consumers."""

from poster_genres.schemas.events import (
    DeadLetter,
    ErrorCode,
    EventDecodeError,
    MovieGenres,
    NewMovie,
    OriginalRecord,
    decode_new_movie,
    json_schemas,
)
from poster_genres.schemas.model import ModelMetadata, ServingPointer, served_version

__all__ = [
    "DeadLetter",
    "ErrorCode",
    "EventDecodeError",
    "ModelMetadata",
    "MovieGenres",
    "NewMovie",
    "OriginalRecord",
    "ServingPointer",
    "decode_new_movie",
    "json_schemas",
    "served_version",
]
