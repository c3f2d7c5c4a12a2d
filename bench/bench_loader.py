#!/usr/bin/env python
"""Stage 02's frame loader alone (no model): frames delivered per second, as ratios in one run.

    python bench/bench_loader.py                       # 200 fresh Doom episodes in a temp folder
    python bench/bench_loader.py --folder runs/doom/rollouts --episodes 500

Rows: the loader before issue 14 (EpisodeFolder.iter_frame_batches: one reading thread, shuffling in
the main thread), and data.loader.frame_batches with 0 workers (one thread), 1 and 2 worker
processes (and more with --workers). Same batch size and buffer; each row reads every frame once.
The streams of the new loader are checked equal for every worker count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.collect import CollectConfig, generate  # noqa: E402
from data.loader import frame_batches  # noqa: E402
from data.rollouts import RolloutFolder  # noqa: E402
from envs.registry import get_spec  # noqa: E402


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

    rows.append(("before: thread + main-thread shuffle", *best(lambda: rollouts.iter_frame_batches(**kw))))
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


if __name__ == "__main__":
    main()
