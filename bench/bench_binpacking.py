#!/usr/bin/env python
"""Bin-packing baselines: every heuristic simulated in envs/binpacking.py, against binpacking.md §6.

    python bench/bench_binpacking.py [--presets wmd b9_pp] [--policies best_fit] [--episodes 1000]

Episode i runs on reset(seed=seed + i), so every policy sees the same items; random_valid draws its choices
from the baseline stream of seed + i (common/streams.py). Each episode must take no invalid action and
return exactly -W(T) (minus the empty space left in partly filled bags), else the run stops with an error.
The table gives mean ± std of the episode return, its standard error, the §6 value and "Δ in s.e.": |ours - §6| over the
standard error of the difference, sqrt(se_ours^2 + se_ref^2) with se_ref = std_ref / sqrt(n_ref) (our se
alone where §6 gives no std).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.streams import Stream, episode_rng  # noqa: E402
from envs.binpacking import PRESETS, BinPackingEnv  # noqa: E402
from envs.binpacking_heuristics import HEURISTICS  # noqa: E402

DEFAULT_PRESETS = ("wmd", "b9_lw", "b9_pp", "b9_bw")

# §6's column names for our heuristics.
REFERENCE_NAMES = {"best_fit": "BF", "sum_of_squares_orl": "SS-orl", "sum_of_squares": "SS-tb",
                   "sum_of_squares_awslabs": "SS report", "random_valid": "Rand", "new_bag": "New",
                   "random_fit": "-"}

# binpacking.md §6 ([re-simulated] heuristic baselines): (mean, std or None) of the episode return, over
# 1000 episodes at T=1000 and 200 episodes at T=10000 (REFERENCE_EPISODES). None: §6 gives no std.
REFERENCE_EPISODES = {1000: 1000, 10000: 200}
# sum_of_squares_awslabs (the awslabs code as it runs) has no §6 column; its reference is the team
# report's Sum of Squares, 1000 trials (binpacking.md §4).
_B30_PP_1000 = {"best_fit": (-25.4, 11.6), "sum_of_squares_orl": (-19.9, 10.0), "sum_of_squares": (-24.4, 12.9),
                "sum_of_squares_awslabs": (-26.857, None), "random_valid": (-292.6, 54.6),
                "new_bag": (-24461.5, None)}
_B30_PP_10000 = {"best_fit": (-57.0, 26.7), "sum_of_squares_orl": (-20.1, 9.8), "sum_of_squares": (-25.3, 13.1),
                 "random_valid": (-1960.8, None)}
REFERENCE: dict[tuple[str, int], dict[str, tuple[float, float | None]]] = {
    ("wmd", 1000): _B30_PP_1000,
    ("b30_pp", 1000): _B30_PP_1000,
    ("wmd", 10000): _B30_PP_10000,
    ("b30_pp", 10000): _B30_PP_10000,
    ("b30_bw", 1000): {"best_fit": (-16.9, 9.0), "sum_of_squares_orl": (-17.7, 9.4),
                       "sum_of_squares": (-19.4, 10.3), "random_valid": (-262.6, None), "new_bag": (-24832.4, None)},
    ("b30_lw", 1000): {"best_fit": (-475.7, 23.8), "sum_of_squares_orl": (-1779.0, 153.0),
                       "sum_of_squares": (-1982.0, 110.0), "random_valid": (-993.8, None),
                       "new_bag": (-22668.8, None)},
    ("b9_pp", 1000): {"best_fit": (-122.7, 9.0), "sum_of_squares_orl": (-46.7, 23.6),
                      "sum_of_squares": (-52.1, 31.9), "random_valid": (-152.5, None), "new_bag": (-6749.7, None)},
    ("b9_bw", 1000): {"best_fit": (-128.0, 9.5), "sum_of_squares_orl": (-16.9, 3.1),
                      "sum_of_squares": (-7.7, 3.6), "random_valid": (-160.1, None), "new_bag": (-6500.2, None)},
    ("b9_lw", 1000): {"best_fit": (-131.9, 9.1), "sum_of_squares_orl": (-208.5, 71.9),
                      "sum_of_squares": (-206.3, 51.1), "random_valid": (-167.1, None), "new_bag": (-6799.8, None)},
    ("b9_pp", 10000): {"best_fit": (-1197.7, 27.0), "sum_of_squares_orl": (-202.1, 160.0),
                       "sum_of_squares": (-177.2, 113.0), "random_valid": (-1186.0, None)},
    ("b9_bw", 10000): {"best_fit": (-1248.5, 28.0), "sum_of_squares_orl": (-18.5, 3.3),
                       "sum_of_squares": (-9.0, 3.7), "random_valid": (-1346.7, None)},
    ("b9_lw", 10000): {"best_fit": (-1285.5, 28.0), "sum_of_squares_orl": (-3075.6, 280.0),
                       "sum_of_squares": (-2000.0, 176.0), "random_valid": (-1279.7, None)},
}


def reference(preset: str, policy: str, horizon: int) -> tuple[float, float | None, int] | None:
    """§6's (mean, std or None, episodes) for this preset, policy and horizon; None if §6 has no such cell."""
    cell = REFERENCE.get((preset, horizon), {}).get(policy)
    return None if cell is None else (*cell, REFERENCE_EPISODES[horizon])


def run_episode(preset: str, policy: str, seed: int, horizon: int | None = None,
                env: BinPackingEnv | None = None) -> tuple[float, list[int]]:
    """One episode of a heuristic on reset(seed=seed): (return, item sizes in order), checked.

    Raises AssertionError if the policy took an invalid action, the episode did not run `horizon` steps, or the
    return is not exactly -W(T).
    """
    env = env or BinPackingEnv(preset=preset, horizon=horizon, observation="vector")
    choose = HEURISTICS[policy]
    rng = episode_rng(seed, Stream.BASELINE)
    obs, info = env.reset(seed=seed)
    total, items, done = 0.0, [], False
    while not done:
        item = int(obs[-1])
        items.append(item)
        obs, reward, done, truncated, info = env.step(choose(obs[:-1], item, rng))
        total += reward
        done = done or truncated
    if info["invalid_actions"]:
        raise AssertionError(f"{policy} on {preset}, seed {seed}: {info['invalid_actions']} invalid action(s)")
    if info["step"] != env.config.horizon:
        raise AssertionError(f"{policy} on {preset}, seed {seed}: {info['step']} steps, not {env.config.horizon}")
    if total != -info["waste"]:
        raise AssertionError(f"{policy} on {preset}, seed {seed}: return {total} != -W(T) = {-info['waste']}")
    return total, items


def simulate(preset: str, policy: str, episodes: int, horizon: int | None = None, seed: int = 0) -> np.ndarray:
    """Returns of `episodes` checked episodes on seeds seed..seed+episodes-1."""
    env = BinPackingEnv(preset=preset, horizon=horizon, observation="vector")
    return np.array([run_episode(preset, policy, seed + i, horizon, env)[0] for i in range(episodes)])


def _job(args: tuple[str, str, int, int, int]) -> tuple[str, str, np.ndarray, float]:
    start = time.perf_counter()
    returns = simulate(*args)
    return args[0], args[1], returns, time.perf_counter() - start


def table_rows(results: list[tuple[str, str, np.ndarray]], horizon: int | None) -> list[dict[str, str]]:
    rows = []
    for preset, policy, returns in results:
        steps = horizon or PRESETS[preset].horizon
        n = len(returns)
        mean = float(returns.mean())
        std = float(returns.std(ddof=1)) if n > 1 else math.nan
        se = std / math.sqrt(n)
        ref = reference(preset, policy, steps)
        ref_text, z_text = "–", "–"
        if ref is not None:
            ref_mean, ref_std, ref_n = ref
            ref_text = f"{ref_mean:.1f}" + ("" if ref_std is None else f" ± {ref_std:.1f}")
            se_diff = math.sqrt(se ** 2 + (0.0 if ref_std is None else ref_std ** 2 / ref_n))
            z_text = f"{abs(mean - ref_mean) / se_diff:.2f}" if se_diff > 0 else "–"
        rows.append({"config": preset, "T": str(steps), "policy": f"{policy} ({REFERENCE_NAMES.get(policy, '-')})",
                     "episodes": str(n), "mean ± std": f"{mean:.1f} ± {std:.1f}", "s.e.": f"{se:.2f}",
                     "§6": ref_text, "Δ in s.e.": z_text})
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[k] for k in header) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS), choices=sorted(PRESETS), metavar="PRESET",
                   help=f"env presets to simulate, from {sorted(PRESETS)} (default: {' '.join(DEFAULT_PRESETS)})")
    p.add_argument("--policies", nargs="+", default=list(HEURISTICS), choices=list(HEURISTICS), metavar="POLICY",
                   help=f"heuristics to simulate, from {list(HEURISTICS)} (default: all)")
    p.add_argument("--episodes", type=int, default=1000, help="episodes per (preset, policy) (default: 1000, as §6)")
    p.add_argument("--horizon", type=int, default=None,
                   help="steps (items) per episode (default: the preset's, 1000); §6 has T=1000 and T=10000 values")
    p.add_argument("--seed", type=int, default=0, help="episode i runs on reset(seed=SEED + i) (default: 0)")
    p.add_argument("--workers", type=int, default=os.cpu_count(),
                   help="processes, one (preset, policy) pair each at a time (default: os.cpu_count())")
    p.add_argument("--csv", type=Path, default=None, metavar="FILE", help="also write the table to this CSV file")
    args = p.parse_args()
    if args.episodes < 1:
        p.error(f"--episodes must be >= 1, got {args.episodes}")
    if args.horizon is not None and args.horizon < 1:
        p.error(f"--horizon must be >= 1, got {args.horizon}")
    if args.workers is None or args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")

    jobs = [(preset, policy, args.episodes, args.horizon, args.seed)
            for preset in args.presets for policy in args.policies]
    start = time.perf_counter()
    if args.workers == 1 or len(jobs) == 1:
        done = [_job(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=min(args.workers, len(jobs))) as pool:
            done = list(pool.map(_job, jobs))
    wall = time.perf_counter() - start
    steps = sum(len(returns) * (args.horizon or PRESETS[preset].horizon) for preset, _, returns, _ in done)
    cpu = sum(seconds for *_, seconds in done)

    rows = table_rows([(preset, policy, returns) for preset, policy, returns, _ in done], args.horizon)
    print(markdown(rows))
    print(f"\n{len(done)} (preset, policy) pairs x {args.episodes} episodes, every one valid with return == -W(T); "
          f"{steps:,} steps in {wall:.1f} s wall ({steps / cpu / 1e3:.1f} k steps/s per worker), "
          f"{args.workers} worker(s)")
    if args.csv is not None:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"table written to {args.csv}")


if __name__ == "__main__":
    main()
