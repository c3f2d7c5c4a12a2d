#!/usr/bin/env python
"""CarRacing env steps per second on one core: Gymnasium's CarRacing-v3 against ours (same pixels).

    python bench/bench_carracing.py --steps 3000

Rows: the bare Gymnasium env loop (gym.make, 96x96 frames), then our `carracing` env (crop + 64x64
resize) over each renderer. Same seeds and random actions for both; the ratio is what counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.carracing import FAST_ID  # noqa: E402
from envs.pixels import PixelEnv  # noqa: E402
from envs.registry import CARRACING_CROP_ROWS, CARRACING_MAX_STEPS  # noqa: E402


def steps_per_second(make: Callable[[], gym.Env], steps: int, seed: int = 0) -> float:
    """Random actions, a new episode (seed, seed+1, ...) whenever one ends; reset time included."""
    env = make()
    actions = np.random.default_rng(seed).uniform([-1, 0, 0], [1, 1, 1], (steps, 3)).astype(np.float32)
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            seed += 1
            env.reset(seed=seed)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="env steps timed per row (default: 3000)")
    args = parser.parse_args()
    rows = {}
    for name, env_id in (("Gymnasium CarRacing-v3", "CarRacing-v3"), ("ours (fast renderer)", FAST_ID)):
        rows[f"bare loop, {name}"] = steps_per_second(lambda env_id=env_id: gym.make(env_id), args.steps)
    for name, env_id in (("Gymnasium CarRacing-v3", "CarRacing-v3"), ("ours (fast renderer)", FAST_ID)):
        rows[f"`carracing` env, {name}"] = steps_per_second(
            lambda env_id=env_id: PixelEnv(env_id, crop_rows=CARRACING_CROP_ROWS,
                                           max_episode_steps=CARRACING_MAX_STEPS), args.steps)
    names = list(rows)
    print(f"{'row':48s} {'steps/s':>9s} {'ratio':>6s}")
    for i, name in enumerate(names):
        base = rows[names[i - i % 2]]
        print(f"{name:48s} {rows[name]:9.0f} {rows[name] / base:5.2f}x")


if __name__ == "__main__":
    main()
