"""Episodes decoded in worker processes: frame batches for stage 02, whole episodes for stage 03.

Decoding a compressed episode (zlib, numpy) is the loader's cost. One reading thread tops out at one
core, which left a GPU about 30 % busy; here torch's DataLoader runs the decoding, and for stage 02
the shuffling and batching too, in `workers` processes. The main process only hands batches to the
model (pinned, so the copy to a GPU runs beside the compute).

The stream of an epoch is fixed by (files, seed, batch size, buffer size) alone, never by the worker
count: episodes go in a seeded order, in buffers of `buffer_episodes`; buffer k's frames are shuffled
with seed (seed, k) and cut into batches, and the few frames each buffer has left over wait in the
main process until they fill a batch. Any worker can build any buffer and the DataLoader returns them
in order, so 0, 1 or 16 workers give the same batches, and a run resumed with another
`--loader_workers` continues the same stream. Memory holds at most (workers x prefetch + 1) buffers,
whatever the folder size. `workers=0` builds buffers on one background thread (the old loader).

Why a map-style Dataset of buffers rather than an IterableDataset sharded by episode: sharding makes
each worker's stream depend on the worker count, and interleaving shards by arrival breaks the order;
a map-style dataset with a fixed sampler gets both parallel decoding and one order.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

from common.errors import DataError
from data.episodes import EpisodeSchema, _prefetched, load_episode

PREFETCH = 2  # buffers (or episodes) each worker prepares ahead
WORKER_TIMEOUT = 600.0  # seconds a loader worker may take over one item


def default_loader_workers(device: torch.device | str) -> int:
    """Where the GPU trains, decoding needs the cores (all but one, up to 8); on a CPU the model does."""
    if torch.device(device).type == "cuda":
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    return 0


class _Failed:
    """A worker's DataError, passed as a value: the DataLoader would re-raise it with a traceback in the message."""

    def __init__(self, message: str) -> None:
        self.message = message


class _FrameBuffers(torch.utils.data.Dataset):
    """Item k: buffer k of the epoch as (full batches (n, B, ...), leftover frames (r, ...)).

    In a worker process each buffer is written into one of `ring` shared-memory slots that the worker
    keeps and reuses: fresh memory costs a page fault per 4 KB, ten times the copy itself, and a
    tensor already in shared memory crosses to the main process without another copy. Reuse is safe:
    the DataLoader hands indices to its workers in turn and keeps at most `prefetch` per worker in
    flight, so a worker rewrites a slot `ring` of its items (ring x workers items) later, long after the
    main process took the buffer; frame_batches copies what it yields out of it at once. With 0
    workers buffers are assembled in the main process, on demand, into two slots it alternates.
    """

    def __init__(self, paths: Sequence[Path], schema: EpisodeSchema, key: str, order: np.ndarray,
                 buffer_episodes: int, batch_size: int, seed: int | None, shuffle: bool, ring: int = 0) -> None:
        self.paths, self.schema, self.key = list(paths), schema, key
        self.chunks = [order[i:i + buffer_episodes] for i in range(0, len(order), buffer_episodes)]
        self.batch_size, self.seed, self.shuffle, self.ring = batch_size, seed, shuffle, ring
        self._slots: dict[int, torch.Tensor] = {}
        self._served = 0  # buffers this process has built

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor] | _Failed:
        parts = self.load(k)
        return parts if isinstance(parts, _Failed) else self.assemble(k, parts)

    def load(self, k: int) -> list[np.ndarray] | _Failed:
        """Decode buffer k's episodes (zlib: it releases the GIL, so a thread can do this part)."""
        try:
            return [load_episode(self.paths[i], self.schema, writable=False)[self.key] for i in self.chunks[k]]
        except DataError as e:
            return _Failed(str(e))

    def assemble(self, k: int, parts: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each episode's frames straight to their shuffled places in a reused slot (one copy); cut batches."""
        total = sum(len(x) for x in parts)
        out = self._output(total, parts[0])
        places = (np.random.default_rng(None if self.seed is None else [self.seed, k]).permutation(total)
                  if self.shuffle else np.arange(total))
        target, start = out.numpy(), 0
        for frames in parts:
            target[places[start:start + len(frames)]] = frames
            start += len(frames)
        full = total // self.batch_size * self.batch_size
        return out[:full].view(-1, self.batch_size, *out.shape[1:]), out[full:]

    def _output(self, total: int, like: np.ndarray) -> torch.Tensor:
        dtype = torch.from_numpy(np.empty(0, like.dtype)).dtype
        if not self.ring:
            return torch.empty((total, *like.shape[1:]), dtype=dtype)
        slot = self._served % self.ring
        self._served += 1
        buffer = self._slots.get(slot)
        if buffer is None or len(buffer) < total or buffer.shape[1:] != like.shape[1:]:
            shape = (total + total // 4, *like.shape[1:])  # room for the larger buffers to come
            if torch.utils.data.get_worker_info() is None:
                buffer = torch.empty(shape, dtype=dtype)
            else:  # in shared memory from the start: it crosses to the main process without a copy
                storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
                buffer = torch.empty(0, dtype=dtype).set_(storage, 0, shape)
            self._slots[slot] = buffer
        return buffer[:total]


class _Episodes(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], schema: EpisodeSchema) -> None:
        self.paths, self.schema = list(paths), schema

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, np.ndarray] | _Failed:
        try:
            return load_episode(self.paths[i], self.schema)
        except DataError as e:
            return _Failed(str(e))


def _items(dataset: torch.utils.data.Dataset, workers: int, pin_memory: bool) -> Iterator:
    """The dataset's items in index order: on `workers` processes, or (0) decoded one thread ahead.

    With 0 workers a frame buffer is decoded on the thread and assembled here: numpy's scattering
    holds the GIL, which a background thread would take from the training loop.
    """
    if workers == 0:
        if isinstance(dataset, _FrameBuffers):
            decoded = _prefetched((dataset.load(k) for k in range(len(dataset))), PREFETCH)
            items = (p if isinstance(p, _Failed) else dataset.assemble(k, p) for k, p in enumerate(decoded))
        else:
            items = _prefetched((dataset[k] for k in range(len(dataset))), PREFETCH)
        try:
            yield from (_pinned(x) if pin_memory else x for x in items)
        finally:
            items.close()  # stops the reading thread now
        return
    # batch_size=None: an item is already a buffer (or an episode); numpy arrays come back as tensors
    # through shared memory. timeout: a worker stuck on one file is an error, not a hang.
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                                         pin_memory=pin_memory, prefetch_factor=PREFETCH, timeout=WORKER_TIMEOUT,
                                         worker_init_fn=_worker_init)
    iterator = iter(loader)
    try:
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except RuntimeError as e:  # a worker died (killed, out of memory): the DataLoader says which
                raise DataError(f"loader: {str(e).splitlines()[0]}") from None
            yield item
    finally:
        with contextlib.suppress(Exception):
            iterator._shutdown_workers()  # now, not at garbage collection (a stopped epoch, Ctrl-C)


def _worker_init(_: int) -> None:
    """Keep freed memory in the worker's heap (glibc): each decoded episode is a few MB, which glibc would
    otherwise map fresh and fault in page by page; that was ~20 % of a worker's time."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)  # this process's C library
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # above one episode's frames (2,100 Doom steps: 26 MB)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # come from the heap, and stay there when freed


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def _pinned(item: object) -> object:
    if isinstance(item, tuple):
        return tuple(t.pin_memory() for t in item)
    return item


def frame_batches(paths: Sequence[Path], schema: EpisodeSchema, batch_size: int, key: str = "obs",
                  shuffle: bool = True, buffer_episodes: int = 16, seed: int | None = None,
                  drop_last: bool = False, workers: int = 0, pin_memory: bool = False,
                  keep: bool = True) -> Iterator[torch.Tensor]:
    """uint8 batches of single steps of `key`, shuffled across episodes within buffers (see the module).

    keep=False saves a copy of every frame for a consumer that is done with each batch before it asks
    for the next one (a training loop): a batch may then be a view of a reused slot that is rewritten
    a few buffers later. keep=True: every batch is the caller's to keep.
    """
    order = np.arange(len(paths))
    if shuffle:
        np.random.default_rng(None if seed is None else [seed, 2**32 - 1]).shuffle(order)  # buffers use [seed, k]
    # Slots reused: per worker, PREFETCH + 2 (see _FrameBuffers); here, 2 (item k waits for k - 2's slot).
    dataset = _FrameBuffers(paths, schema, key, order, buffer_episodes, batch_size, seed, shuffle,
                            ring=PREFETCH + 2 if workers else 2)
    in_slots = not pin_memory  # pinned items are fresh copies already
    waiting: list[torch.Tensor] = []  # leftover frames of earlier buffers, fewer than a batch
    waiting_count = 0
    items = _items(dataset, workers, pin_memory)
    try:
        for item in items:
            if isinstance(item, _Failed):
                raise DataError(item.message)
            batches, leftover = item
            for batch in batches:
                yield batch.clone() if in_slots and keep else batch
            if len(leftover):
                waiting.append(leftover.clone() if in_slots else leftover)  # kept past this buffer
                waiting_count += len(leftover)
            if waiting_count >= batch_size:
                joined = torch.cat(waiting)
                full = len(joined) // batch_size * batch_size
                yield from joined[:full].split(batch_size)
                waiting, waiting_count = [joined[full:]], len(joined) - full
        if waiting_count and not drop_last:
            yield torch.cat(waiting)
    finally:
        items.close()


def episodes(paths: Sequence[Path], schema: EpisodeSchema, workers: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Whole validated episodes in `paths` order, decoded `workers` at a time (0: one thread ahead)."""
    items = _items(_Episodes(paths, schema), workers, pin_memory=False)
    try:
        for item in items:
            if isinstance(item, _Failed):
                raise DataError(item.message)
            yield {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in item.items()}
    finally:
        items.close()
