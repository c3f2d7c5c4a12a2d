#!/usr/bin/env python
"""Dream and controller-rollout speed, as ratios measured in one run.

    python bench/bench_dream.py [--hidden 512] [--generation]

(1) dream env-steps/s: one batched rollout of 64 x 16 episodes vs the same episodes one at a time;
(2) --generation: wall time of one paper-size Doom CMA-ES generation (pop 64 x 16 rollouts, LSTM 512,
    2,100-step cap) in the dream with an untrained M whose done head never fires: the worst case, every
    episode running the full 2,100 steps;
(3) real-env steps/s with V + M + C in the loop vs the bare env loop (doom, 1 process, 1 thread).
Models are untrained (speed does not depend on the weights); sizes are the paper's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control.agent import WorldModelAgent  # noqa: E402
from control.real import run_episode  # noqa: E402
from envs import get_spec, make_env  # noqa: E402
from envs.dream import WorldModel, rollout_population  # noqa: E402
from models.mdnrnn import MDNRNN  # noqa: E402
from models.vae import ConvVAE  # noqa: E402


def doom_world(hidden: int, never_done: bool) -> WorldModel:
    torch.manual_seed(0)
    m = MDNRNN(64, 1, hidden, 5, predict_done=True)
    with torch.no_grad():
        m.head.bias[0] = -1e4 if never_done else -2.0
        if not never_done:
            m.head.weight[0] *= 30
    return WorldModel(get_spec("doom"), m, torch.randn(100, 64), torch.full((100, 64), -2.0))


def dream_ratio(hidden: int, steps: int) -> None:
    world = doom_world(hidden, never_done=True)
    params = torch.randn(64, world.controller.num_params) * 0.1
    seeds = list(range(16))
    start = time.perf_counter()
    rollout_population(world, params, seeds, 1.15, steps)
    batched = 64 * 16 * steps / (time.perf_counter() - start)
    start = time.perf_counter()
    singles = 8
    for p in range(singles):
        rollout_population(world, params[p:p + 1], seeds[:1], 1.15, steps)
    single = singles * steps / (time.perf_counter() - start)
    print(f"dream, hidden {hidden}, {steps} steps: batched 64x16 {batched:9.0f} env-steps/s | "
          f"one at a time {single:7.0f} env-steps/s | {batched / single:5.1f} x")


def generation_time(hidden: int) -> None:
    world = doom_world(hidden, never_done=True)
    params = torch.randn(64, world.controller.num_params) * 0.1
    start = time.perf_counter()
    returns, _ = rollout_population(world, params, list(range(16)), 1.15, 2100)
    seconds = time.perf_counter() - start
    print(f"one paper-size doom generation in the dream (64 x 16 x {int(returns.max())} steps, worst case): "
          f"{seconds:.1f} s (reference: 108 s on 64 cores)")


def real_ratio(steps: int) -> None:
    torch.set_num_threads(1)
    env = make_env("doom")
    spec = get_spec("doom")
    agent = WorldModelAgent(spec, ConvVAE(64), MDNRNN(64, 1, 512, 5, predict_done=True),
                            np.random.default_rng(0).normal(size=1088) * 0.1)

    def timed(choose) -> float:
        done, seed, start = 0, 0, time.perf_counter()
        while done < steps:
            if hasattr(choose, "__self__"):
                agent.reset(seed)
            done += run_episode(env, choose, seed, min(2100, steps - done)).length
            seed += 1
        return done / (time.perf_counter() - start)

    rng = np.random.default_rng(0)
    bare = timed(lambda obs: rng.uniform(-1, 1, 1).astype(np.float32))
    full = timed(agent.act)
    env.close()
    print(f"real doom, 1 thread: bare env loop {bare:6.0f} steps/s | with V+M+C {full:6.0f} steps/s | "
          f"{full / bare:4.2f} x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=512, help="LSTM size (doom: 512)")
    p.add_argument("--steps", type=int, default=50, help="dream steps for the batched/single comparison")
    p.add_argument("--real_steps", type=int, default=2000, help="real-env steps per measurement")
    p.add_argument("--generation", action="store_true", help="also time one paper-size generation (~1-2 min)")
    args = p.parse_args()
    dream_ratio(args.hidden, args.steps)
    if args.generation:
        generation_time(args.hidden)
    real_ratio(args.real_steps)


if __name__ == "__main__":
    main()
