"""Stage 01 as a library: random-policy rollouts from a real env, one file per episode, in parallel.

Determinism: episode i is collected with env seed `seed + i` and its own policy RNG, in whichever
worker runs it, so the same flags give the same files for any worker count. With `min_length`, the
saved episodes are the first `total_episodes` long-enough ones in index order: an index is only
handed out while the episodes in flight could not already reach the total.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from common.atomic import remove_stale_temp_files, write_bytes_atomic
from common.backend import LOCAL, Backend
from common.seeds import TRAINING_DATA_SEED
from common.streams import Stream, episode_rng
from data.episodes import write_meta
from data.rollouts import (
    check_meta_matches,
    encode_rollout,
    episode_path,
    finished_indices,
    save_rollout,
    skipped_marker,
)
from envs.policies import make_policy
from envs.registry import get_spec

DEFAULT_MAX_STEPS = 1000  # for Gymnasium envs that have no time limit of their own
_MARK_PREFIX = ".collecting-"


class EpisodeAgent(Protocol):
    """Who plays an episode instead of the random policy (stage 07: the trained agent, control/collection.py).

    Given in the config rather than imported here, so data collection depends on no trained model; it
    travels to the worker processes with the config, so it must pickle.
    """

    def record(self) -> dict[str, Any]:
        """What meta.json keeps of it (new episodes belong with a folder's old ones only if this matches)."""
        ...

    def chooser(self, env_name: str, seed: int, env: gym.Env) -> Callable[[np.ndarray], np.ndarray] | None:
        """act(obs) for the episode on `seed` in `env`, or None to leave it to the random policy."""
        ...


@dataclass(frozen=True)
class CollectConfig:
    env: str
    out_dir: str
    policy: str
    seed: int = TRAINING_DATA_SEED  # episode i: env seed seed + i, apart from the test seeds
    max_steps: int = DEFAULT_MAX_STEPS
    min_length: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent: EpisodeAgent | None = None  # plays the episodes it chooses to (stage 07), the random policy the rest

    def identity(self) -> dict[str, Any]:
        """What must match for new episodes to belong with the ones already in out_dir."""
        d = asdict(dataclasses.replace(self, agent=None))
        d.pop("out_dir")
        d["agent"] = None if self.agent is None else self.agent.record()
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


def collect_episode(env: gym.Env, policy_name: str, seed: int, max_steps: int,
                    choose: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One episode as rollout arrays (see data/rollouts.py for the format): the random policy, or `choose(obs)`."""
    policy = make_policy(policy_name, env.action_space, episode_rng(seed, Stream.COLLECTION), env)
    obs, _ = env.reset(seed=seed)
    policy.reset()
    frames, actions, rewards, dones = [], [], [], []
    for _ in range(max_steps):
        action = policy.act() if choose is None else choose(obs)
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


def _worker_episode(config: CollectConfig, index: int, writer_mark: str) -> tuple[int, bool, bytes | None]:
    """Collect episode `index`; return (length, kept, unwritten). Runs in a worker process.

    A worker that sees the output folder (this machine, or a disk every node mounts: the driver's
    `writer_mark` file is there) writes the file itself, in parallel with the others, and returns
    unwritten None. One on a node that does not returns what the driver must write: the file's bytes
    (b"" for a too-short episode's marker).
    """
    key = json.dumps([config.env, config.env_kwargs], sort_keys=True)
    env = _WORKER_ENVS.get(key)
    if env is None:
        env = _WORKER_ENVS[key] = get_spec(config.env).create(**config.env_kwargs)
    seed = config.seed + index
    choose = None if config.agent is None else config.agent.chooser(config.env, seed, env)
    episode = collect_episode(env, config.policy, seed, config.max_steps, choose)
    length = len(episode["done"])
    here = (Path(config.out_dir) / writer_mark).exists()
    if length < config.min_length:
        if here:
            skipped_marker(config.out_dir, index).touch()
        return length, False, None if here else b""
    if not here:
        return length, True, encode_rollout(**episode)
    save_rollout(episode_path(config.out_dir, index), **episode)
    return length, True, None


# -- parent side ----------------------------------------------------------------------------------
@contextlib.contextmanager
def writer_mark(out_dir: Path) -> Iterator[str]:
    """A hidden file that only this run puts in out_dir: a worker that finds it sees the driver's folder."""
    for stale in out_dir.glob(f"{_MARK_PREFIX}*"):
        stale.unlink(missing_ok=True)
    name = f"{_MARK_PREFIX}{uuid.uuid4().hex}"
    (out_dir / name).touch()
    try:
        yield name
    finally:
        (out_dir / name).unlink(missing_ok=True)


def generate(config: CollectConfig, total_episodes: int, workers: int | None,
             episode_timeout: float | None = 600.0, progress: bool = True, backend: Backend = LOCAL,
             ) -> CollectSummary:
    """Collect until `out_dir` holds `total_episodes` saved episodes; resumes what is there.

    `workers` None: one per CPU (of the Ray cluster with the ray backend).
    """
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

    config = dataclasses.replace(config, out_dir=str(out_dir.resolve()))  # Ray workers run in another folder
    with writer_mark(out_dir) as mark, backend.pool(workers, task_timeout=episode_timeout) as pool:
        while summary.saved_total < total_episodes:
            while summary.saved_total + pool.pending < total_episodes and pool.pending < 2 * pool.num_workers:
                index = next_todo()
                pool.submit(index, _worker_episode, config, index, mark)
            index, (length, was_saved, unwritten) = pool.next_result()
            if unwritten is not None:  # the worker could not see out_dir
                if was_saved:
                    write_bytes_atomic(episode_path(out_dir, index), unwritten)
                else:
                    skipped_marker(out_dir, index).touch()
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
