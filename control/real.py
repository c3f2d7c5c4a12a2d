"""Real-env episodes with the full agent (or a random policy), in-process or in worker processes.

Workers load V and M once (in the pool initializer, on CPU, one torch thread each, as the reference's
MPI workers did) and then run one episode per task, so a population is spread over processes (or Ray
actors) with the pool's death and time-out handling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from common.backend import ShippedFile, local_file
from control.agent import WorldModelAgent
from control.world import check_same_vae, load_mdnrnn, load_vae
from data.policies import make_policy
from envs.registry import get_spec


@dataclass
class Episode:
    score: float
    length: int
    invalid: int | None = None  # actions the env refused (bin packing's info["invalid_action"]); None: no such rule


def run_episode(env: gym.Env, choose: Callable[[np.ndarray], np.ndarray], seed: int, max_steps: int) -> Episode:
    """Play one episode; `choose(obs)` returns the model action for each observation."""
    obs, _ = env.reset(seed=seed)
    episode = Episode(0.0, 0)
    for _ in range(max_steps):
        action = choose(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        episode.score += float(reward)
        episode.length += 1
        if "invalid_action" in info:
            episode.invalid = (episode.invalid or 0) + int(bool(info["invalid_action"]))
        if terminated or truncated:
            break
    return episode


def random_chooser(env: gym.Env, policy: str, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """A stage-01 random policy as a chooser (the baseline scored on the same seeds)."""
    policy_obj = make_policy(policy, env.action_space, np.random.default_rng([seed, 2]), env)
    policy_obj.reset()
    return lambda obs: policy_obj.act()


# -- worker side ----------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def init_worker(env_name: str, env_kwargs: dict, vae: str | ShippedFile | None,
                mdnrnn: str | ShippedFile | None) -> None:
    """Pool initializer: one env, V and M per worker process, all on CPU with one thread.

    V and M come as paths (local backend) or as the files' bytes (Ray: the node may not see our disk).
    """
    torch.set_num_threads(1)
    spec = get_spec(env_name)
    _WORKER["spec"] = spec
    _WORKER["env"] = spec.create(**env_kwargs)
    vae_path, mdnrnn_path = local_file(vae), local_file(mdnrnn)
    if vae_path and mdnrnn_path:
        vae, _ = load_vae(vae_path, "cpu")
        mdnrnn, _ = load_mdnrnn(mdnrnn_path, "cpu")
        check_same_vae(vae, vae_path, mdnrnn, mdnrnn_path)
        _WORKER["agent"] = WorldModelAgent(spec, vae, mdnrnn, env=_WORKER["env"])


def agent_episode_task(params: np.ndarray, seed: int, max_steps: int) -> Episode:
    agent: WorldModelAgent = _WORKER["agent"]
    agent.set_params(params)
    agent.reset(seed)
    return run_episode(_WORKER["env"], agent.act, seed, max_steps)


def random_episode_task(policy: str, seed: int, max_steps: int) -> Episode:
    env = _WORKER["env"]
    return run_episode(env, random_chooser(env, policy, seed), seed, max_steps)
