#!/usr/bin/env python
"""Why doom renders at 160x120: speed per resolution, and how different the 64x64 model input looks.

    python bench/bench_doom_resolution.py [--png frames.png]

Same seed and actions at each resolution; reports env frames/s and the mean absolute pixel difference
of the 64x64 frames against 640x480 (0-255 scale). Optionally saves the frames side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.doom import RESOLUTIONS, DoomTakeCoverEnv  # noqa: E402


def run(resolution: str, steps: int) -> tuple[float, np.ndarray]:
    env = DoomTakeCoverEnv(resolution=resolution, max_episode_steps=10**9)
    frames = []
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for t in range(steps):
        frames.append(obs)
        obs, _, term, trunc, _ = env.step(np.array([np.sin(t / 15)], np.float32))
        if term or trunc:
            obs, _ = env.reset(seed=t)
    fps = steps / (time.perf_counter() - start)
    env.close()
    return fps, np.stack(frames)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="env steps per resolution")
    p.add_argument("--png", default=None, help="save a strip of frames per resolution here")
    args = p.parse_args()
    results = {res: run(res, args.steps) for res in RESOLUTIONS}
    reference = results["640x480"][1]
    for res, (fps, frames) in results.items():
        n = min(len(frames), len(reference))
        diff = np.abs(frames[:n].astype(np.int16) - reference[:n]).mean()
        print(f"{res:8s} {fps:7.0f} frames/s   mean |diff| vs 640x480: {diff:5.2f}")
    if args.png:
        rows = [np.concatenate(list(frames[50:450:50]), axis=1) for _, frames in results.values()]
        Image.fromarray(np.concatenate(rows, axis=0)).resize((8 * 128, len(rows) * 128), Image.NEAREST).save(args.png)
        print(f"saved {args.png} (rows: {', '.join(results)})")


if __name__ == "__main__":
    main()
