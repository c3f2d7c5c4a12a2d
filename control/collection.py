"""Stage 07's player of real episodes (paper §5): the current V + M + C, a share of episodes left random.

With probability `explore` an episode is played by the random policy of the collection, so M keeps seeing
the states the controller avoids; the rest are the controller's own (what M must get right for the
controller to improve). data/collect.py takes it as its EpisodeAgent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from common.streams import Stream, episode_rng
from control.agent import WorldModelAgent
from control.evaluate import controller_z_input, load_controller
from envs.registry import get_spec
from models.loading import check_same_vae, load_mdnrnn, load_vae


@dataclass(frozen=True)
class AgentPolicy:
    """V, M and controller checkpoints (paths, so the config pickles small) and the share of random episodes."""

    vae: str
    mdnrnn: str
    controller: str
    explore: float = 0.3

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def controller_plays(self, seed: int) -> bool:
        """The per-episode coin: True = the controller plays the episode on `seed`, False = the random policy."""
        return not episode_rng(seed, Stream.EXPLORE_COIN).random() < self.explore

    def chooser(self, env_name: str, seed: int, env: gym.Env) -> Callable[[np.ndarray], np.ndarray] | None:
        """The controller's act() for this episode, or None when the coin says explore (random policy)."""
        if not self.controller_plays(seed):
            return None
        agent = _WORKER_AGENTS.get(self)
        if agent is None:
            torch.set_num_threads(1)
            vae, _ = load_vae(Path(self.vae), "cpu")
            mdnrnn, _ = load_mdnrnn(Path(self.mdnrnn), "cpu")
            check_same_vae(vae, Path(self.vae), mdnrnn, Path(self.mdnrnn))
            # unpadded: ~2.5x faster a step, reproducible on its own (same files for any worker count)
            agent = WorldModelAgent(get_spec(env_name), vae, mdnrnn, block_rows=1,
                                    z_input=controller_z_input(Path(self.controller)))
            agent.set_params(load_controller(Path(self.controller), env_name, agent.config.num_params))
            _WORKER_AGENTS[self] = agent
        agent.env = env  # a cached agent may have been made beside another env of this worker
        agent.reset(seed)
        return agent.act


_WORKER_AGENTS: dict[AgentPolicy, WorldModelAgent] = {}  # per worker process: V, M and C loaded once
