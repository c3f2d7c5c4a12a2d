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
`--loader_workers` continues the same stream. Memory holds at most (workers x (prefetch + 2) + 2)
buffers, whatever the folder size: each worker writes its items into a few shared-memory slots it
reuses (_Slots), and the main process reads them there. `workers=0` decodes on one background thread.

Why a map-style Dataset of buffers rather than an IterableDataset sharded by episode: sharding makes
each worker's stream depend on the worker count, and interleaving shards by arrival breaks the order;
a map-style dataset with a fixed sampler gets both parallel decoding and one order.
"""

from __future__ import annotations

import collections
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


class _Slots:
    """`count` byte buffers, taken in turn and reused: where a dataset writes its items.

    Fresh memory costs a page fault per 4 KB, ten times the copy itself, so items go into buffers a
    process keeps. In a loader worker the buffers are in shared memory from the start, and an item
    written there crosses to the main process without another copy. Reuse is safe: the DataLoader hands
    indices to its workers in turn and keeps at most `prefetch` per worker in flight, so a worker
    rewrites a buffer `count` of its items (count x workers items) later, long after the main process
    took that item; what the main process keeps longer it copies (frame_batches, episodes(keep=True)).
    """

    def __init__(self, count: int) -> None:
        self.count, self._buffers, self._taken = count, {}, 0

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        nbytes = math.prod(shape) * dtype.itemsize
        i = self._taken % self.count
        self._taken += 1
        buffer = self._buffers.get(i)
        if buffer is None or len(buffer) < nbytes:
            size = nbytes + nbytes // 4 + 64  # room for the larger items to come
            in_worker = torch.utils.data.get_worker_info() is not None
            self._buffers[i] = buffer = _shared_bytes(size) if in_worker else torch.empty(size, dtype=torch.uint8)
        return buffer[:nbytes].view(dtype).view(shape)


def _shared_bytes(size: int) -> torch.Tensor:
    """Uninitialised bytes in shared memory (share_memory_() on a fresh tensor would copy it there)."""
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)  # private torch API: fall back if gone
    if new_shared is None:
        return torch.empty(size, dtype=torch.uint8).share_memory_()
    return torch.empty(0, dtype=torch.uint8).set_(new_shared(size), 0, (size,))


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


class _FrameBuffers(torch.utils.data.Dataset):
    """Item k: buffer k of the epoch as (full batches (n, B, ...), leftover frames (r, ...)), written into
    `slots` (PREFETCH + 2 per worker; with 0 workers the main process assembles into 2 it alternates)."""

    def __init__(self, paths: Sequence[Path], schema: EpisodeSchema, key: str, order: np.ndarray,
                 buffer_episodes: int, batch_size: int, seed: int | None, shuffle: bool, slots: int) -> None:
        self.paths, self.schema, self.key = list(paths), schema, key
        self.chunks = [order[i:i + buffer_episodes] for i in range(0, len(order), buffer_episodes)]
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.slots = _Slots(slots)

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
        """Each episode's frames straight to their shuffled places in a slot (one copy); cut batches."""
        total = sum(len(x) for x in parts)
        out = self.slots.take((total, *parts[0].shape[1:]), _torch_dtype(parts[0].dtype))
        places = (np.random.default_rng(None if self.seed is None else [self.seed, k]).permutation(total)
                  if self.shuffle else np.arange(total))
        target, start = out.numpy(), 0
        for frames in parts:
            target[places[start:start + len(frames)]] = frames
            start += len(frames)
        full = total // self.batch_size * self.batch_size
        return out[:full].view(-1, self.batch_size, *out.shape[1:]), out[full:]


class _Episodes(torch.utils.data.Dataset):
    """Item i: episode i; in a worker, its arrays packed into one of `slots` shared buffers (see _Slots)."""

    def __init__(self, paths: Sequence[Path], schema: EpisodeSchema, slots: int) -> None:
        self.paths, self.schema, self.slots = list(paths), schema, _Slots(slots)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, np.ndarray | torch.Tensor] | _Failed:
        in_worker = torch.utils.data.get_worker_info() is not None
        try:
            arrays = load_episode(self.paths[i], self.schema, writable=not in_worker)
        except DataError as e:
            return _Failed(str(e))
        if not in_worker or not all(a.dtype.isnative for a in arrays.values()):
            return arrays
        places, end = {}, 0
        for key, a in arrays.items():
            places[key] = end
            end += -(-a.nbytes // 64) * 64  # each array 64-byte aligned, so any dtype can view it
        packed = self.slots.take((end,), torch.uint8)
        out = {}
        for key, a in arrays.items():
            view = packed[places[key]:places[key] + a.nbytes].view(_torch_dtype(a.dtype)).view(a.shape)
            view.numpy()[...] = a
            out[key] = view
        return out


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
    # The last items of every worker stay referenced here, so their slots stay mapped: torch maps a
    # shared buffer it still holds only once, and the next item in that slot is read without page faults.
    recent: collections.deque = collections.deque(maxlen=0 if pin_memory else (PREFETCH + 2) * workers)
    try:
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except RuntimeError as e:  # a worker died (killed, out of memory): the DataLoader says which
                raise DataError(f"loader: {str(e).splitlines()[0]}") from None
            recent.append(item)
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
                            slots=PREFETCH + 2 if workers else 2)
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


def episodes(paths: Sequence[Path], schema: EpisodeSchema, workers: int = 0,
             keep: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Whole validated episodes in `paths` order, decoded `workers` at a time (0: one thread ahead).

    keep=False (a consumer done with each episode before it asks for the next, like stage 03): with
    workers an episode may be a view of a slot that is rewritten a few episodes later.
    """
    items = _items(_Episodes(paths, schema, slots=PREFETCH + 2), workers, pin_memory=False)
    try:
        for item in items:
            if isinstance(item, _Failed):
                raise DataError(item.message)
            yield {k: _array(v, keep) for k, v in item.items()}
    finally:
        items.close()


def _array(value: np.ndarray | torch.Tensor, keep: bool) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        return value  # decoded here, the caller's already
    return value.numpy().copy() if keep else value.numpy()
