"""Errors that end a command with exit status 2: the input cannot do what was asked.

Kept apart from the modules that raise them, which import TensorFlow, so that the
command line can catch them without importing it.

    TrainerError          bad input for the command (exit status 2)
    ├── MovieLensError    the MovieLens files are missing, malformed, or failed verification
    ├── DataError         the training data cannot make a model (empty, or no label with examples)
    ├── PredictError      no usable model, or an input that names neither a file nor a TMDB id
    └── ReleaseError      no such version to promote or evaluate, nothing to roll back to

A candidate that the release gate holds back is not an error: `train` ends with status 3.
"""

from __future__ import annotations


class TrainerError(ValueError):
    """The command's input cannot do what was asked."""


class MovieLensError(TrainerError):
    """The MovieLens files are missing, malformed, or failed verification."""


class DataError(TrainerError):
    """The training data cannot make a model (empty, or no label with examples)."""


class PredictError(TrainerError):
    """No usable model, or an input that names neither a file nor a TMDB id."""


class ReleaseError(TrainerError):
    """No such version to promote or evaluate, or nothing to roll back to."""
