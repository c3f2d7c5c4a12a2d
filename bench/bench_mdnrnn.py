#!/usr/bin/env python
"""Stage 03 encoding and stage 04 training throughput, and M's fused nn.LSTM against Python loops, in one run.

    python bench/bench_mdnrnn.py --threads 2

M rows are forward + backward of the full loss at the paper's Doom size (z 64, hidden 512, 5 mixtures,
batch 100, 100 steps), all from the same weights:
  loop (old code)  the previous models/mdnrnn.py: a Python loop over time indexing x_proj[:, t]
  loop (unbind)    the best Python loop: the same cell on x_proj.unbind(1)
  nn.LSTM fused    this repo: one nn.LSTM call (oneDNN on CPU)
  nn.LSTM split    the fallback for restarts inside a sequence (here 5 cut columns)
Stage 04 rows are whole optimizer steps (batch_losses + backward + clip by value + Adam) on collated
windows; stage 03 rows are the encoder alone at batch 100 and encode_rollouts end to end on files.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.encode import encode_frames, encode_rollouts  # noqa: E402
from data.rollouts import RolloutFolder, save_rollout  # noqa: E402
from models.mdnrnn import MDNRNN, mdnrnn_loss  # noqa: E402
from models.vae import ConvVAE  # noqa: E402
from training.mdnrnn import Window, batch_losses, collate  # noqa: E402

Z, HIDDEN, MIXTURES = 64, 512, 5


def median_seconds(fn: Callable[[], object], iters: int) -> float:
    fn()  # warm-up (oneDNN primitive creation, allocator)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loop_forward(model: MDNRNN, z: torch.Tensor, action: torch.Tensor, restart: torch.Tensor,
                 unbind: bool) -> torch.Tensor:
    """The cell of model.step run over time in Python, from the same weights; returns hidden states."""
    cell = model.cell
    x_proj = F.linear(model._cell_inputs(z, action, restart), cell.weight_ih, cell.bias)
    h, c = model.initial_state(z.shape[0])
    steps = x_proj.unbind(1) if unbind else [x_proj[:, t] for t in range(z.shape[1])]
    hidden = []
    for x_t in steps:
        gates = x_t + F.linear(h, cell.weight_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hidden.append(h)
    return torch.stack(hidden, dim=1)


def bench_lstm(batch: int, steps: int, iters: int) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    model = MDNRNN(Z, 1, HIDDEN, MIXTURES, predict_done=True)
    z, action = torch.randn(batch, steps, Z), torch.rand(batch, steps, 1) * 2 - 1
    restart = torch.zeros(batch, steps)
    restart[:, 0] = 1
    split_restart = restart.clone()
    for k, t in enumerate(np.linspace(0, steps, 7).astype(int)[1:-1]):  # 5 columns with a mid-sequence restart
        split_restart[k, t] = 1
    done = torch.zeros(batch, steps)

    def run(kind: str) -> None:
        model.zero_grad(set_to_none=True)
        if kind.startswith("loop"):
            out = model.split_head(model.head(loop_forward(model, z, action, restart, unbind="unbind" in kind)))
        else:
            out, _ = model(z, action, split_restart if "split" in kind else restart)
        mdnrnn_loss(out, z, done)["total"].backward()

    kinds = ["loop (old code)", "loop (unbind)", "nn.LSTM fused", "nn.LSTM split"]
    return [(kind, batch * steps / median_seconds(lambda k=kind: run(k), iters)) for kind in kinds]


def bench_train_step(batch: int, steps: int, iters: int) -> float:
    """Timesteps/s of whole stage-04 optimizer steps on full-length windows."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    windows = [Window(mu=rng.normal(size=(steps + 1, Z)).astype(np.float16),
                      logvar=np.full((steps + 1, Z), -3, np.float16),
                      action=rng.uniform(-1, 1, (steps, 1)).astype(np.float32), reward=np.ones(steps, np.float32),
                      done=np.zeros(steps, bool), first=True) for _ in range(batch)]
    model = MDNRNN(Z, 1, HIDDEN, MIXTURES, predict_done=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    device = torch.device("cpu")

    def step() -> None:
        losses, _ = batch_losses(model, collate(windows, 1), 1, device)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
        optimizer.step()

    return batch * steps / median_seconds(step, iters)


def bench_encode(frames: int, episodes: int, iters: int) -> tuple[float, float]:
    """(encoder alone, stage 03 end to end) img/s at z 64, batch 100."""
    torch.manual_seed(0)
    vae = ConvVAE(Z).eval()
    rng = np.random.default_rng(0)
    # smooth-ish frames, so compression costs what it does on real ones
    base = rng.integers(0, 256, (frames, 8, 8, 3), dtype=np.uint8)
    obs = base.repeat(8, axis=1).repeat(8, axis=2)
    encoder = frames / median_seconds(lambda: encode_frames(vae, obs, 100), iters)
    with tempfile.TemporaryDirectory() as tmp:
        rollouts = Path(tmp) / "rollouts"
        rollouts.mkdir()
        per = frames // episodes
        for i in range(episodes):
            save_rollout(rollouts / f"episode_{i:06d}.npz", obs[i * per:(i + 1) * per],
                         np.zeros((per, 1), np.float32), np.ones(per, np.float32), np.zeros(per, bool))
        folder = RolloutFolder(rollouts)
        identity = {"sha256": "bench", "env": "doom", "z_size": Z, "path": "", "progress": {}}

        def stage() -> None:
            encode_rollouts(folder, vae, identity, Path(tmp) / "series", 100, "cpu", new=True, progress=False)

        end_to_end = per * episodes / median_seconds(stage, iters)
    return encoder, end_to_end


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--iters", type=int, default=3, help="timed repetitions per row (median), after one warm-up")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=100, help="sequence length of the M rows")
    p.add_argument("--frames", type=int, default=3000, help="frames for the stage 03 rows")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.iters}")

    rows = bench_lstm(args.batch, args.steps, args.iters)
    fused = dict(rows)["nn.LSTM fused"]
    print(f"\nM forward+backward, z {Z}, hidden {HIDDEN}, batch {args.batch}, {args.steps} steps")
    print(f"{'path':<18} {'timesteps/s':>12} {'fused is':>10}")
    for kind, rate in rows:
        print(f"{kind:<18} {rate:>12,.0f} {fused / rate:>9.2f}x")

    print(f"\nstage 04 optimizer step (loss, backward, clip, Adam), batch {args.batch}")
    for steps in (args.steps, 500):
        print(f"seq_len {steps:<4} {bench_train_step(args.batch, steps, args.iters):>12,.0f} timesteps/s")

    encoder, end_to_end = bench_encode(args.frames, 10, args.iters)
    print(f"\nstage 03, z {Z}, batch 100")
    print(f"encoder alone        {encoder:>8,.0f} img/s")
    print(f"encode_rollouts      {end_to_end:>8,.0f} img/s (load + encode + save, 10 episode files)")


if __name__ == "__main__":
    main()
