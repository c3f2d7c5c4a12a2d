#!/usr/bin/env python
"""Stage 02's frame loader alone (no model): frames delivered per second, as ratios in one run.

    python bench/bench_loader.py                       # 200 fresh Doom episodes in a temp folder
    python bench/bench_loader.py --folder runs/doom/rollouts --episodes 500

Rows: the loader before issue 14 (kept here as it was: np.load on one reading thread, shuffling in
the main thread), and data.loader.frame_batches with 0 workers (one thread), 1 and 2 worker
processes (and more with --workers). Same batch size and buffer; each row reads every frame once.
The streams of the new loader are checked equal for every worker count. Then the same for stage 03's
reader (data.loader.episodes: whole episodes in file order) against the one it had before.

--train N: also train stage 02's VAE (paper size, this machine's torch threads) for one whole epoch
of the first N episodes, fed by the old loader and by the new one with its CPU default (0 workers),
alternating, to check that stage 02 on a CPU is no slower than before. (A whole epoch: a run cut
short would charge each loader for the episodes it read ahead and never used.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.collect import CollectConfig, generate  # noqa: E402
from data.episodes import _prefetched  # noqa: E402
from data.loader import episodes, frame_batches  # noqa: E402
from data.rollouts import ROLLOUT_SCHEMA, RolloutFolder  # noqa: E402
from envs.registry import get_spec  # noqa: E402


def decode_before_issue_14(path: Path) -> dict[str, np.ndarray]:
    """An episode as load_episode read it before issue 14: np.load, every key, validated."""
    with np.load(path, allow_pickle=False) as npz:
        return ROLLOUT_SCHEMA.validate({k: npz[k] for k in npz.files}, str(path))


def before_issue_14(paths: list[Path], batch_size: int, buffer_episodes: int, seed: int):
    """The loader stage 02 had before issue 14, unchanged: whole episodes decoded by np.load and validated
    two ahead on a thread, pooled `buffer_episodes` at a time, concatenated, shuffled and cut in the
    main thread."""
    rng, order = np.random.default_rng(seed), np.arange(len(paths))
    np.random.default_rng(seed + 1).shuffle(order)
    episodes = _prefetched((decode_before_issue_14(paths[i])["obs"] for i in order), 2)
    leftover, exhausted = None, False
    while not exhausted:
        pool = [e for _, e in zip(range(buffer_episodes), episodes)]
        exhausted = len(pool) < buffer_episodes
        if not pool:
            break
        frames = np.concatenate(([leftover] if leftover is not None else []) + pool)
        frames = frames[rng.permutation(len(frames))]
        full = len(frames) // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield frames[start:start + batch_size]
        leftover = frames[full:] if full < len(frames) else None
    if leftover is not None and len(leftover):
        yield leftover


def frames_of(episodes):
    return (episode["obs"] for episode in episodes)


def timed(batches) -> tuple[float, int, int]:
    started, frames, checksum = time.perf_counter(), 0, 0
    for batch in batches:
        frames += len(batch)
        checksum += int(batch[0, 0, 0, 0])  # touch each batch, as a trainer would
    return time.perf_counter() - started, frames, checksum


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", default=None, help="a rollout folder (default: generate Doom episodes in a temp folder)")
    p.add_argument("--episodes", type=int, default=200, help="episodes to read (and to generate)")
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--buffer_episodes", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts to try")
    p.add_argument("--repeats", type=int, default=2, help="best of this many passes per row")
    p.add_argument("--train", type=int, default=0, help="also train the VAE on one epoch of this many episodes")
    args = p.parse_args()
    torch.set_num_threads(1)

    folder = args.folder
    if folder is None:
        folder = tempfile.mkdtemp(prefix="bench_loader_")
        generate(CollectConfig(env="doom", out_dir=folder, policy="sticky", max_steps=2100,
                               env_kwargs=get_spec("doom").options_to_record({})),
                 args.episodes, os.cpu_count(), progress=False)
    rollouts = RolloutFolder(folder)
    rollouts.paths = rollouts.paths[:args.episodes]
    kw = {"batch_size": args.batch_size, "buffer_episodes": args.buffer_episodes, "seed": 0}

    rows = []
    def best(make) -> tuple[float, int, int]:
        return min((timed(make()) for _ in range(args.repeats)), key=lambda r: r[0])

    rows.append(("before: thread + main-thread shuffle", *best(lambda: before_issue_14(rollouts.paths, **kw))))
    sums = set()
    for workers in [0, *args.workers]:
        label = "new, 0 workers (thread)" if workers == 0 else f"new, {workers} worker process{'es' * (workers > 1)}"
        row = best(lambda w=workers: frame_batches(rollouts.paths, rollouts.schema, workers=w, keep=False, **kw))
        rows.append((label, *row))
        sums.add(row[2])
    assert len(sums) == 1, "the new loader's stream depends on the worker count"

    base = rows[0][1]
    print(f"{len(rollouts.paths)} episodes, {rows[0][2]} frames, batch {args.batch_size}, buffer "
          f"{args.buffer_episodes} episodes, {os.cpu_count()} cores; best of {args.repeats}")
    print(f"{'loader':<40} {'seconds':>8} {'frames/s':>9} {'vs before':>10}")
    for label, seconds, frames, _ in rows:
        print(f"{label:<40} {seconds:8.2f} {frames / seconds:9.0f} {base / seconds:9.2f}x")

    # stage 03's path: whole episodes in file order (before: np.load two ahead on a thread)
    rows = [("before: np.load on a thread", *best(lambda: frames_of(_prefetched(
        (decode_before_issue_14(p) for p in rollouts.paths), 2))))]
    for workers in [0, *args.workers]:
        label = "new, 0 workers (thread)" if workers == 0 else f"new, {workers} worker process{'es' * (workers > 1)}"
        rows.append((label, *best(lambda w=workers: frames_of(episodes(rollouts.paths, rollouts.schema, w,
                                                                        keep=False)))))
    base = rows[0][1]
    print(f"\nstage 03's reader, whole episodes in order: {'seconds':>8} {'frames/s':>9} {'vs before':>10}")
    for label, seconds, frames, _ in rows:
        print(f"{label:<40} {seconds:8.2f} {frames / seconds:9.0f} {base / seconds:9.2f}x")
    if args.train:
        torch.set_num_threads(os.cpu_count() or 1)
        kw = {"batch_size": args.batch_size, "buffer_episodes": args.buffer_episodes, "seed": 0}
        subset = RolloutFolder(folder)
        subset.paths = subset.paths[:args.train]
        old, new = [], []
        for _ in range(args.repeats):
            old.append(train_rate(before_issue_14(subset.paths, **kw)))
            new.append(train_rate(frame_batches(subset.paths, subset.schema, workers=0, keep=False, **kw)))
        print(f"stage-02 training, one epoch of {args.train} episodes, {torch.get_num_threads()} torch threads, "
              f"{args.repeats} alternating runs: old loader {max(old):.0f} img/s (runs "
              f"{', '.join(f'{r:.0f}' for r in old)}), new loader (CPU default, 0 workers) {max(new):.0f} img/s "
              f"(runs {', '.join(f'{r:.0f}' for r in new)}): best new / best old = {max(new) / max(old):.3f}")


def train_rate(batches) -> float:
    """img/s of the stage-02 step (ConvVAE, Adam, the paper's loss) over all of `batches`."""
    from models.vae import ConvVAE, frames_to_tensor, vae_loss

    torch.manual_seed(0)
    model = ConvVAE(64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    done, started = 0, time.perf_counter()
    for batch in batches:
        x = frames_to_tensor(batch)
        recon, mu, logvar = model(x)
        loss = vae_loss(recon, x, mu, logvar, 0.5)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done += len(x)
    return done / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
