"""Embeddings of the frozen feature extractor, computed once and cached on disk.

The cache is keyed by the image's content (SHA-256 of its bytes), the extractor's identity
and the image size, so a changed poster or another extractor never reuses stale vectors:

    <cache_dir>/<extractor key>/shard-<time>-<random>.npz    keys [n] str, vectors [n, dim] float32
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from poster_genres.trainer.preprocess import read_image
from poster_genres.trainer.progress import Progress, ProgressMode

log = logging.getLogger(__name__)

Extractor = Callable[[tf.Tensor], tf.Tensor]


def content_key(data: bytes) -> str:
    """The cache key of an image: SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def extractor_key(
    handle: str,
    image_size: tuple[int, int],
    mirror: bool = False,
    extra: str | None = None,
    extra_size: tuple[int, int] | None = None,
) -> str:
    """Identity of an extractor: its files' digest for a local file or folder, else its handle.

    With `extra` (a second extractor whose features go beside the first's), its identity
    and input size too.
    """
    digest = hashlib.sha256()
    _add_identity(digest, handle)
    digest.update(f"{image_size[0]}x{image_size[1]}".encode())
    if mirror:
        digest.update(b"+mirror")
    if extra is not None:
        digest.update(b"+beside:")
        _add_identity(digest, extra)
        size = tuple(extra_size or image_size)
        digest.update(f"@{size[0]}x{size[1]}".encode())
    return digest.hexdigest()[:24]


def _add_identity(digest: Any, handle: str) -> None:
    """Feed a handle's identity to `digest`: a local file's or folder's bytes, else the text."""
    path = Path(handle)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    elif path.is_file():
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    else:
        digest.update(handle.encode())


class EmbeddingCache:
    """Append-only on-disk store of content key -> embedding, for one extractor."""

    def __init__(self, cache_dir: Path, key: str):
        self.dir = cache_dir / key
        self._vectors: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            for shard in sorted(self.dir.glob("shard-*.npz")):
                try:
                    with np.load(shard) as data:
                        keys, vectors = data["keys"].tolist(), data["vectors"]
                    self._vectors.update(zip(keys, vectors, strict=True))
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("ignoring unreadable embedding shard %s: %s", shard, exc)
        return self._vectors

    def __len__(self) -> int:
        return len(self._load())

    def get(self, key: str) -> np.ndarray | None:
        """The cached embedding of `key`, if any."""
        return self._load().get(key)

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store new embeddings in one new shard (written under a temporary name, then renamed)."""
        if not len(keys):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}.npz"
        tmp = self.dir / f".{name}"
        with tmp.open("wb") as f:
            np.savez(f, keys=np.asarray(keys), vectors=np.asarray(vectors, dtype=np.float32))
        tmp.rename(self.dir / name)
        self._load().update(zip(keys, np.asarray(vectors, dtype=np.float32), strict=True))


@dataclass
class Embedded:
    """Embeddings of the images that could be used, and why the others could not."""

    vectors: np.ndarray  # [n_ok, dim] float32, in the order of `ok`
    ok: np.ndarray  # indices into the input paths
    failed: dict[int, str] = field(default_factory=dict)  # input index -> reason
    computed: int = 0  # how many were computed now (the rest came from the cache)


def embed_images(
    paths: Sequence[Path],
    extractor: Extractor,
    image_size: tuple[int, int],
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    progress: ProgressMode | bool = "auto",
) -> Embedded:
    """Embed image files, reusing cached vectors; unreadable images are skipped and reported."""
    keys, failed = _content_keys(paths)
    vectors: dict[str, np.ndarray] = {}
    todo: dict[str, int] = {}  # key -> first input index with that content
    for i, key in enumerate(keys):
        if key is None:
            continue
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            vectors[key] = cached
        elif key not in todo:
            todo[key] = i
    computed = 0
    if todo:
        new_keys, new_vectors = _run_extractor(
            [(i, str(paths[i])) for i in todo.values()], extractor, image_size, batch_size, progress
        )
        index_to_key = {i: k for k, i in todo.items()}
        for i in set(todo.values()) - {j for j, _ in new_keys}:
            failed[i] = f"{paths[i]} is not a decodable image"
        done = [index_to_key[i] for i, _ in new_keys]
        if cache is not None:
            cache.add(done, new_vectors)
        vectors.update(zip(done, new_vectors, strict=True))
        computed = len(done)
    ok, rows = [], []
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in vectors:
            ok.append(i)
            rows.append(vectors[key])
        elif i not in failed:
            failed[i] = f"{paths[i]} is not a decodable image"
    for i, reason in sorted(failed.items()):
        log.warning("skipping image: %s", reason)
    dim = rows[0].shape[-1] if rows else 0
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    return Embedded(matrix, np.asarray(ok, dtype=int), failed, computed)


def _content_keys(paths: Sequence[Path]) -> tuple[list[str | None], dict[int, str]]:
    """The content key of each file (None if unreadable) and why the unreadable ones are."""
    failed: dict[int, str] = {}
    keys: list[str | None] = []
    for i, path in enumerate(paths):
        try:
            keys.append(content_key(Path(path).read_bytes()))
        except OSError as exc:
            keys.append(None)
            failed[i] = f"cannot read {path}: {exc.strerror or exc}"
    return keys, failed


def _run_extractor(
    items: list[tuple[int, str]],
    extractor: Extractor,
    image_size: tuple[int, int],
    batch_size: int,
    progress: ProgressMode | bool,
) -> tuple[list[tuple[int, str]], np.ndarray]:
    """Decode and embed files in parallel; images that fail to decode are dropped."""
    indices = np.asarray([i for i, _ in items], dtype=np.int64)
    files = [p for _, p in items]

    ds = (
        tf.data.Dataset.from_tensor_slices((indices, files))
        .map(
            lambda index, path: (index, read_image(path, image_size)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .ignore_errors()
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    run = tf.function(lambda images: extractor(images), reduce_retracing=True)
    done: list[int] = []
    out: list[np.ndarray] = []
    with Progress(len(items), "embedding posters", "img", progress) as bar:
        for index, images in ds:
            out.append(run(images).numpy().astype(np.float32))
            done.extend(int(i) for i in index.numpy())
            bar.update(len(index))
    by_index = dict(items)
    vectors = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    return [(i, by_index[i]) for i in done], vectors
