#!/usr/bin/env python
"""Stage 01 throughput against bare env loops, measured in one run (ratios, not absolute claims).

    python bench/bench_generate.py --env doom --episodes 60

Rows: raw engine loop (DoomGame / gym.make, no preprocessing), our env loop (crop + 64x64 resize),
stage 01 with 1 worker and with 2 workers (policy, recording, compression, atomic writes, processes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.collect import CollectConfig, generate  # noqa: E402
from envs import get_spec, make_env  # noqa: E402


def raw_doom_fps(steps: int) -> float:
    import vizdoom as vzd

    game = vzd.DoomGame()
    game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
    tmp = tempfile.mkdtemp()
    game.set_doom_config_path(os.path.join(tmp, "_vizdoom.ini"))
    game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
    game.set_window_visible(False)
    cwd = os.getcwd()
    os.chdir(tmp)
    game.init()
    os.chdir(cwd)
    rng = np.random.default_rng(0)
    buttons = [[0, 0], [1, 0], [0, 1]]
    game.new_episode()
    start = time.perf_counter()
    for _ in range(steps):
        if game.is_episode_finished():
            game.new_episode()
        game.get_state().screen_buffer  # noqa: B018 - reading the frame is part of the cost
        game.make_action(buttons[rng.integers(3)])
    fps = steps / (time.perf_counter() - start)
    game.close()
    return fps


def raw_gym_fps(env_id: str, steps: int) -> float:
    import gymnasium as gym

    env = gym.make(env_id)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    fps = steps / (time.perf_counter() - start)
    env.close()
    return fps


def env_loop_fps(name: str, steps: int) -> float:
    env = make_env(name)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    fps = steps / (time.perf_counter() - start)
    env.close()
    return fps


def pipeline_fps(name: str, episodes: int, workers: int, max_steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        spec = get_spec(name)
        config = CollectConfig(env=name, out_dir=out, policy=spec.default_policy, max_steps=max_steps)
        summary = generate(config, episodes, workers, progress=False)
    return summary.frames / summary.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="doom", help="doom or carracing")
    p.add_argument("--episodes", type=int, default=60, help="episodes per pipeline measurement")
    p.add_argument("--steps", type=int, default=20000, help="steps per bare-loop measurement")
    p.add_argument("--max_steps", type=int, default=None, help="episode cap (default: the env's)")
    args = p.parse_args()
    max_steps = args.max_steps or get_spec(args.env).max_episode_steps
    raw = raw_doom_fps(args.steps) if args.env == "doom" else raw_gym_fps("CarRacing-v3", args.steps)
    loop = env_loop_fps(args.env, args.steps)
    one = pipeline_fps(args.env, args.episodes, 1, max_steps)
    two = pipeline_fps(args.env, args.episodes, 2, max_steps)
    print(f"env={args.env} episodes={args.episodes} (cpus={os.cpu_count()})")
    print(f"{'raw engine loop':28s} {raw:8.0f} frames/s")
    print(f"{'our env loop (64x64)':28s} {loop:8.0f} frames/s   {loop / raw:5.2f} x raw")
    print(f"{'stage 01, 1 worker':28s} {one:8.0f} frames/s   {one / loop:5.2f} x env loop   {one / raw:5.2f} x raw")
    print(f"{'stage 01, 2 workers':28s} {two:8.0f} frames/s   {two / one:5.2f} x 1 worker")


if __name__ == "__main__":
    main()
