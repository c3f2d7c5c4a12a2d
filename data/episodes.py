"""Episode files: one compressed `.npz` per episode, validated on load, streamed with bounded memory.

A folder of episodes is never loaded whole (the reference needed ~125 GB for CarRacing): readers load
a few episodes ahead (here on a background thread: zlib releases the GIL; frames for stage 02 in
data.loader). Each file format (rollouts, latent series) is an `EpisodeSchema`.
"""

from __future__ import annotations

import io
import json
import queue
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import write_bytes_atomic, write_json_atomic
from common.errors import DataError
from data.npz import read_npz

VARIABLE = -1  # a trailing dimension that may take any size (the same within one folder)
META_FILE = "meta.json"  # beside the episodes: how they were made (env, options, policy, seed, VAE...)
META_FORMAT = 1
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date


@dataclass(frozen=True)
class EpisodeSchema:
    """Keys of an episode file: each a dtype and trailing shape; dimension 0 is time for all of them."""

    name: str
    fields: dict[str, tuple[np.dtype, tuple[int, ...]]]
    length_key: str  # a small key: reading it alone gives the episode length cheaply
    optional: tuple[str, ...] = ()  # fields that some envs' files have and others lack
    meta_keys: tuple[str, ...] = ("env",)  # what the folder's meta.json must hold to be one of this format's

    def validate(self, arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
        missing = [k for k in self.fields if k not in arrays and k not in self.optional]
        if missing:
            raise DataError(f"{source}: not a {self.name} file (missing keys {missing}; "
                            f"has {sorted(arrays)})")
        length = None
        for key, (dtype, trailing) in self.fields.items():
            if key not in arrays:
                continue  # an optional field
            a = arrays[key]
            if a.dtype != dtype:
                raise DataError(f"{source}: key {key!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
            if a.ndim != 1 + len(trailing) or any(
                want not in (VARIABLE, got) for want, got in zip(trailing, a.shape[1:])
            ):
                want = ("T", *("*" if d == VARIABLE else d for d in trailing))
                raise DataError(f"{source}: key {key!r} has shape {a.shape}, expected {want}")
            if length is None:
                length = a.shape[0]
            elif a.shape[0] != length:
                raise DataError(f"{source}: key {key!r} has {a.shape[0]} steps, "
                                f"other keys have {length}")
        if not length:
            raise DataError(f"{source}: episode has no steps")
        return arrays


def save_episode(path: str | Path, arrays: dict[str, np.ndarray], schema: EpisodeSchema,
                 compresslevel: int = 1) -> None:
    """Write a validated episode atomically as a compressed .npz that np.load reads."""
    schema.validate(arrays, str(path))
    write_bytes_atomic(path, encode_episode(arrays, compresslevel))


def encode_episode(arrays: dict[str, np.ndarray], compresslevel: int = 1) -> bytes:
    """The .npz file's bytes; the same arrays always give the same bytes, wherever they are encoded.

    zlib level 1 instead of numpy's default 6: about 3x faster to write, a few % larger on frames. Each
    member carries a fixed date, so a file does not depend on when it was written (np.savez stamps the
    current time), and episodes collected on other machines (the Ray backend) are byte-identical.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            member = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_DATE)
            member.compress_type, member.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            zf.writestr(member, buffer.getvalue(), compresslevel=compresslevel)
    return out.getvalue()


def load_episode(path: str | Path, schema: EpisodeSchema, keys: Sequence[str] | None = None,
                 writable: bool = True) -> dict[str, np.ndarray]:
    """Load (some keys of) one episode; a corrupt, truncated or foreign file raises DataError.

    writable=False: read-only arrays, one copy fewer (for a reader that copies them anyway).
    """
    path = Path(path)
    try:
        if keys is None:
            return schema.validate(read_npz(path, writable=writable), str(path))
        arrays = read_npz(path, keys=keys, writable=writable)
        absent = [k for k in keys if k not in arrays]
        if absent:
            raise DataError(f"{path}: not a {schema.name} file (missing keys {absent})")
        return arrays
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, KeyError, struct.error) as e:
        raise DataError(f"{path}: corrupt or truncated .npz ({type(e).__name__}: {e})") from None


def read_meta(folder: str | Path, schema: EpisodeSchema) -> dict[str, Any] | None:
    """The folder's meta.json, or None if it has none; DataError if it is unreadable or not this format's."""
    path = Path(folder) / META_FILE
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or any(key not in meta for key in schema.meta_keys):
        raise DataError(f"{path}: not a {schema.name} meta file")
    return meta


def write_meta(folder: str | Path, meta: dict[str, Any]) -> None:
    write_json_atomic(Path(folder) / META_FILE, {"format": META_FORMAT, **meta})


def split_by_episode(num_episodes: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """(train, validation) indices: every k-th episode (k = 1/val_fraction) by file order is held out,
    at least one; none of a single episode. Counting from the start keeps the split stable when stage 01
    later adds episodes to the folder.
    """
    if num_episodes < 2 or val_fraction <= 0:
        return list(range(num_episodes)), []
    k = max(2, round(1 / val_fraction))
    val = list(range(k - 1, num_episodes, k)) or [num_episodes - 1]
    held = set(val)
    return [i for i in range(num_episodes) if i not in held], val


class EpisodeFolder:
    """The episode files of one folder (sorted by name), read lazily, and its meta.json ({} if none)."""

    def __init__(self, folder: str | Path, schema: EpisodeSchema, flag: str = "folder") -> None:
        self.folder = Path(folder)
        self.schema = schema
        if not self.folder.exists():
            raise DataError(f"{flag} {self.folder}: no such folder")
        if not self.folder.is_dir():
            raise DataError(f"{flag} {self.folder}: not a folder")
        self.paths = sorted(p for p in self.folder.glob("*.npz") if not p.name.startswith("."))
        if not self.paths:
            raise DataError(f"{flag} {self.folder}: no {schema.name} files (*.npz) in it")
        self._lengths: np.ndarray | None = None
        self.meta = read_meta(self.folder, schema) or {}

    @property
    def env_name(self) -> str | None:
        return self.meta.get("env")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return load_episode(self.paths[index], self.schema)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.iter_episodes(shuffle=False)

    def lengths(self) -> np.ndarray:
        """Steps per episode, reading only the small `length_key` array of each file."""
        if self._lengths is None:
            key = self.schema.length_key
            self._lengths = np.array(
                [len(load_episode(p, self.schema, keys=[key])[key]) for p in self.paths], np.int64
            )
        return self._lengths

    def iter_episodes(self, shuffle: bool = False, seed: int | None = None,
                      keys: Sequence[str] | None = None, prefetch: int = 2,
                      ) -> Iterator[dict[str, np.ndarray]]:
        """Yield whole episodes (validated), loading up to `prefetch` ahead on a thread."""
        order = np.arange(len(self.paths))
        if shuffle:
            np.random.default_rng(seed).shuffle(order)

        def load(i: int) -> dict[str, np.ndarray]:
            arrays = load_episode(self.paths[i], self.schema)
            return arrays if keys is None else {k: arrays[k] for k in keys}

        yield from _prefetched((load(int(i)) for i in order), prefetch)

    def iter_windows(self, seq_len: int, keys: Sequence[str] | None = None, shuffle: bool = True,
                     seed: int | None = None, pad: bool = True) -> Iterator[dict[str, np.ndarray]]:
        """Fixed-length windows (non-overlapping, random phase when shuffled) plus a `mask` of real steps.

        Episodes shorter than `seq_len` give one zero-padded window when `pad`, so they still count.
        """
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        rng = np.random.default_rng(seed)
        for episode in self.iter_episodes(shuffle=shuffle, seed=seed, keys=keys):
            length = len(next(iter(episode.values())))
            offset = int(rng.integers(seq_len)) % max(1, length - seq_len + 1) if shuffle else 0
            starts = list(range(offset, length - seq_len + 1, seq_len))
            for start in starts:
                window = {k: v[start:start + seq_len] for k, v in episode.items()}
                window["mask"] = np.ones(seq_len, bool)
                yield window
            if not starts and pad:
                yield _pad_window(episode, length, seq_len)


def _pad_window(episode: dict[str, np.ndarray], length: int, seq_len: int) -> dict[str, np.ndarray]:
    window = {}
    for k, v in episode.items():
        padded = np.zeros((seq_len, *v.shape[1:]), v.dtype)
        padded[:length] = v
        window[k] = padded
    mask = np.zeros(seq_len, bool)
    mask[:length] = True
    window["mask"] = mask
    return window


_DONE = object()


def _prefetched(items: Iterator, depth: int) -> Iterator:
    """Run the `items` generator on a daemon thread, `depth` items ahead; re-raise its errors here."""
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, _DONE))
        except BaseException as e:  # handed to the consumer
            q.put((False, e))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
