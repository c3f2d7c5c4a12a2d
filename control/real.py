"""Real-env episodes with the full agent (or a random policy), in-process or in worker processes.

Workers load V and M once (in the pool initializer, on CPU, one torch thread each, as the reference's
MPI workers did). Each holds K envs and a batched agent: a task is a list of episodes (controller,
seed), played K at a time in lockstep with one V, C and M call per step for all K, and a slot whose
episode ends takes the next one. An episode's score depends on its controller and seed only, never on
K, the worker count or the backend (control/agent.py says why the agent guarantees that).

Training episodes may end early: after N consecutive steps of negative reward (CarRacing: the car is off
the track, stalled or going round in circles), as AttentionAgent did. Scoring never does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from common.backend import ShippedFile, local_file
from common.streams import Stream, episode_rng
from common.workers import TaskPool
from control.agent import BatchedAgent
from envs.policies import make_policy
from envs.registry import get_spec
from models.loading import check_same_vae, load_mdnrnn, load_vae

ENVS_PER_WORKER = 8  # K: episodes a worker plays at once (the agent's block size, see control/agent.py)
BATCHES_PER_TASK = 4  # a task holds at most this many times K episodes, so work spreads over workers


@dataclass
class Episode:
    score: float
    length: int
    invalid: int | None = None  # actions the env refused (bin packing's info["invalid_action"]); None: no such rule
    stopped: bool = False  # ended by the negative-reward rule, not by the env

    def add_step(self, reward: float, info: dict) -> None:
        """Count one env step's reward (and a refused action, where the env reports them)."""
        self.score += float(reward)
        self.length += 1
        if "invalid_action" in info:
            self.invalid = (self.invalid or 0) + int(bool(info["invalid_action"]))


def run_episode(env: gym.Env, choose: Callable[[np.ndarray], np.ndarray], seed: int, max_steps: int,
                on_reward: Callable[[float], None] | None = None) -> Episode:
    """Play one episode; `choose(obs)` returns the model action for each observation."""
    obs, _ = env.reset(seed=seed)
    episode = Episode(0.0, 0)
    for _ in range(max_steps):
        action = choose(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        if on_reward is not None:
            on_reward(float(reward))
        episode.add_step(reward, info)
        if terminated or truncated:
            break
    return episode


def random_chooser(env: gym.Env, policy: str, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """A stage-01 random policy as a chooser (the baseline scored on the same seeds)."""
    policy_obj = make_policy(policy, env.action_space, episode_rng(seed, Stream.BASELINE), env)
    policy_obj.reset()
    return lambda obs: policy_obj.act()


def play_agent_episodes(envs: Sequence[gym.Env], agent: BatchedAgent, params: Sequence[np.ndarray],
                        seeds: Sequence[int], max_steps: int, stop_after_negative: int = 0) -> list[Episode]:
    """Play episode i = (params[i], seeds[i]) for every i, len(envs) at a time; results in that order.

    stop_after_negative N > 0 ends an episode after N consecutive steps of negative reward.
    """
    results: list[Episode | None] = [None] * len(seeds)
    waiting = iter(range(len(seeds)))
    playing: dict[int, int] = {}  # slot -> episode index
    frames: dict[int, np.ndarray] = {}
    negative_run: dict[int, int] = {}

    def start(slot: int) -> None:
        i = next(waiting, None)
        if i is None:
            return
        frames[slot], _ = envs[slot].reset(seed=int(seeds[i]))
        agent.start(slot, params[i], int(seeds[i]), envs[slot])
        playing[slot], negative_run[slot], results[i] = i, 0, Episode(0.0, 0)

    for slot in range(min(len(envs), len(seeds))):
        start(slot)
    while playing:
        slots = sorted(playing)
        actions = agent.act(slots, np.stack([frames[s] for s in slots]))
        for slot, action in zip(slots, actions, strict=True):
            episode = results[playing[slot]]
            assert episode is not None
            frames[slot], reward, terminated, truncated, info = envs[slot].step(action)
            episode.add_step(reward, info)
            negative_run[slot] = negative_run[slot] + 1 if reward < 0 else 0
            episode.stopped = 0 < stop_after_negative <= negative_run[slot] and not (terminated or truncated)
            if terminated or truncated or episode.stopped or episode.length >= max_steps:
                del playing[slot]
                start(slot)
    return [episode for episode in results if episode is not None]


def task_chunks(count: int, workers: int, slots: int) -> list[range]:
    """Episodes 0..count-1 as tasks: enough for every worker, at most BATCHES_PER_TASK x slots each, even sizes."""
    tasks = max(1, min(count, workers), -(-count // (BATCHES_PER_TASK * slots)))
    if tasks > workers:
        tasks = min(count, -(-tasks // workers) * workers)  # whole rounds of the pool
    bounds = np.linspace(0, count, tasks + 1).round().astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def agent_episodes(pool: TaskPool, params: np.ndarray, seeds: Sequence[int], max_steps: int, slots: int,
                   stop_after_negative: int = 0, done: Callable[[int], None] | None = None) -> list[Episode]:
    """Episode i = (params[i], seeds[i]) on the pool's workers, in tasks of whole batches; results in order.

    `done(n)` is told each time n more episodes have finished (for progress bars)."""
    params = np.asarray(params, np.float32)
    return _run_tasks(pool, len(seeds), slots, done, lambda c: (
        agent_episodes_task, params[c.start:c.stop], [int(s) for s in seeds[c.start:c.stop]], max_steps,
        stop_after_negative))


def random_episodes(pool: TaskPool, policy: str, seeds: Sequence[int], max_steps: int, slots: int,
                    done: Callable[[int], None] | None = None) -> list[Episode]:
    """The random `policy` on each seed, on the pool's workers (in the same tasks as agent_episodes)."""
    return _run_tasks(pool, len(seeds), slots, done, lambda c: (
        random_episodes_task, policy, [int(s) for s in seeds[c.start:c.stop]], max_steps))


def _run_tasks(pool: TaskPool, count: int, slots: int, done: Callable[[int], None] | None,
               task: Callable[[range], tuple]) -> list[Episode]:
    chunks = task_chunks(count, pool.num_workers, slots)
    for key, chunk in enumerate(chunks):
        pool.submit(key, *task(chunk))
    results: list[Episode] = [Episode(0.0, 0)] * count
    while pool.pending:
        key, episodes = pool.next_result()
        results[chunks[key].start:chunks[key].stop] = episodes
        if done is not None:
            done(len(episodes))
    return results


# -- worker side ----------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def init_worker(env_name: str, env_kwargs: dict, vae: str | ShippedFile | None,
                mdnrnn: str | ShippedFile | None, slots: int = 1, z_input: str = "sample") -> None:
    """Pool initializer: V and M per worker process, all on CPU with one thread; `slots` envs made on demand.

    V and M come as paths (local backend) or as the files' bytes (Ray: the node may not see our disk).
    """
    torch.set_num_threads(1)
    spec = get_spec(env_name)
    _WORKER.update(spec=spec, env_kwargs=env_kwargs, envs=[], slots=slots)
    vae_path, mdnrnn_path = local_file(vae), local_file(mdnrnn)
    if vae_path and mdnrnn_path:
        vae, _ = load_vae(vae_path, "cpu")
        mdnrnn, _ = load_mdnrnn(mdnrnn_path, "cpu")
        check_same_vae(vae, vae_path, mdnrnn, mdnrnn_path)
        _WORKER["agent"] = BatchedAgent(spec, vae, mdnrnn, slots, z_input=z_input)


def _worker_envs(count: int) -> list[gym.Env]:
    envs = _WORKER["envs"]
    while len(envs) < count:
        envs.append(_WORKER["spec"].create(**_WORKER["env_kwargs"]))
    return envs[:count]


def agent_episodes_task(params: np.ndarray, seeds: list[int], max_steps: int,
                        stop_after_negative: int = 0) -> list[Episode]:
    return play_agent_episodes(_worker_envs(min(_WORKER["slots"], len(seeds))), _WORKER["agent"], params, seeds,
                               max_steps, stop_after_negative)


def random_episodes_task(policy: str, seeds: list[int], max_steps: int) -> list[Episode]:
    env = _worker_envs(1)[0]
    return [run_episode(env, random_chooser(env, policy, seed), seed, max_steps) for seed in seeds]
