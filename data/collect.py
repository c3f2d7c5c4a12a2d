"""Stage 01 as a library: random-policy rollouts from a real env, one file per episode, in parallel.

Determinism: episode i is collected with env seed `seed + i` and its own policy RNG, in whichever
worker runs it, so the same flags give the same files for any worker count. With `min_length`, the
saved episodes are the first `total_episodes` long-enough ones in index order: an index is only
handed out while the episodes in flight could not already reach the total.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from common.atomic import remove_stale_temp_files
from common.workers import WorkerPool
from data.policies import make_policy
from data.rollouts import (
    check_meta_matches,
    episode_path,
    finished_indices,
    save_rollout,
    skipped_marker,
    write_meta,
)
from envs.registry import get_spec

DEFAULT_MAX_STEPS = 1000  # for Gymnasium envs that have no time limit of their own


@dataclass(frozen=True)
class CollectConfig:
    env: str
    out_dir: str
    policy: str
    seed: int = 0
    max_steps: int = DEFAULT_MAX_STEPS
    min_length: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What must match for new episodes to belong with the ones already in out_dir."""
        d = asdict(self)
        d.pop("out_dir")
        return d


@dataclass
class CollectSummary:
    new_episodes: int = 0
    saved_total: int = 0
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        mean = self.frames / self.new_episodes if self.new_episodes else 0.0
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (f"episodes: {self.new_episodes} new, {self.saved_total} in folder, "
                f"{self.skipped} too short | frames: {self.frames} | mean length: {mean:.1f} | "
                f"time: {self.seconds:.1f} s ({fps:.0f} frames/s)")


def collect_episode(env: gym.Env, policy_name: str, seed: int, max_steps: int) -> dict[str, np.ndarray]:
    """One random-policy episode as rollout arrays (see data/rollouts.py for the format)."""
    policy = make_policy(policy_name, env.action_space, np.random.default_rng([seed, 1]))
    obs, _ = env.reset(seed=seed)
    policy.reset()
    frames, actions, rewards, dones = [], [], [], []
    for _ in range(max_steps):
        action = policy.act()
        frames.append(obs)
        actions.append(env.canonical_action(action))
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        dones.append(terminated)
        if terminated or truncated:
            break
    return {
        "obs": np.stack(frames),
        "action": np.stack(actions).astype(np.float32),
        "reward": np.asarray(rewards, np.float32),
        "done": np.asarray(dones, bool),
    }


# -- worker side ----------------------------------------------------------------------------------
_WORKER_ENVS: dict[str, gym.Env] = {}


def _worker_episode(config: CollectConfig, index: int) -> tuple[int, bool]:
    """Collect and write episode `index`; return (length, saved). Runs in a worker process."""
    key = json.dumps([config.env, config.env_kwargs], sort_keys=True)
    env = _WORKER_ENVS.get(key)
    if env is None:
        env = _WORKER_ENVS[key] = get_spec(config.env).create(**config.env_kwargs)
    episode = collect_episode(env, config.policy, config.seed + index, config.max_steps)
    length = len(episode["done"])
    if length < config.min_length:
        skipped_marker(config.out_dir, index).touch()
        return length, False
    save_rollout(episode_path(config.out_dir, index), **episode)
    return length, True


# -- parent side ----------------------------------------------------------------------------------
def generate(config: CollectConfig, total_episodes: int, workers: int,
             episode_timeout: float | None = 600.0, progress: bool = True) -> CollectSummary:
    """Collect until `out_dir` holds `total_episodes` saved episodes; resumes what is there."""
    out_dir = Path(config.out_dir)
    check_meta_matches(out_dir, config.identity())
    write_meta(out_dir, config.identity())
    remove_stale_temp_files(out_dir)
    saved, skipped = finished_indices(out_dir)
    summary = CollectSummary(saved_total=len(saved), skipped=len(skipped))
    if len(saved) >= total_episodes:
        return summary

    next_index = 0
    started = time.perf_counter()
    bar = tqdm(total=total_episodes, initial=len(saved), unit="ep", desc="rollouts",
               disable=None if progress else True, dynamic_ncols=True)

    def next_todo() -> int:
        nonlocal next_index
        while next_index in saved or next_index in skipped:
            next_index += 1
        next_index += 1
        return next_index - 1

    with WorkerPool(workers, task_timeout=episode_timeout) as pool:
        while summary.saved_total < total_episodes:
            while summary.saved_total + pool.pending < total_episodes and pool.pending < 2 * workers:
                index = next_todo()
                pool.submit(index, _worker_episode, config, index)
            _, (length, was_saved) = pool.next_result()
            if was_saved:
                summary.frames += length
                summary.new_episodes += 1
                summary.saved_total += 1
                bar.update(1)
            else:
                summary.skipped += 1
            summary.seconds = time.perf_counter() - started
            bar.set_postfix(frames_per_s=f"{summary.frames / max(summary.seconds, 1e-9):.0f}",
                            refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
