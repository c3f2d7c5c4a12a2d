#!/usr/bin/env python
"""Real-env agent throughput on one core: V + M + C in CarRacing, before and after batching (ratios).

    taskset -c 0 python bench/bench_real_agent.py --episodes 8 --steps 300

Paper-size V (z 32) and M (256 units), a random linear controller, one torch thread. Rows:
- before: Gymnasium's CarRacing-v3 and the agent one frame at a time (V, then C, then M with its
  mixture head, per step), which is how every real-env episode ran until the batched agent;
- the same agent on our fast renderer (identical frames);
- the batched agent, K episodes in lockstep (one V, C and M call a step for all K), on the fast renderer;
- the one-episode face of the batched agent (blocks padded to 8 rows: the price of batch-independent
  results for play, videos and data collection).
Episodes per second per core = steps/s / 1000 for whole CarRacing episodes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control.agent import BatchedAgent, WorldModelAgent  # noqa: E402
from control.real import play_agent_episodes  # noqa: E402
from envs.carracing import FAST_ID  # noqa: E402
from envs.controller import canonical_actions, controller_config, model_actions  # noqa: E402
from envs.pixels import PixelEnv  # noqa: E402
from envs.registry import CARRACING_CROP_ROWS, CARRACING_MAX_STEPS, get_spec  # noqa: E402
from models.controller import act, controller_inputs  # noqa: E402
from models.mdnrnn import MDNRNN  # noqa: E402
from models.vae import ConvVAE, frames_to_tensor  # noqa: E402


class FrameAtATimeAgent:
    """The agent as it was: batch-1 V, C and M (with the mixture head) every step."""

    def __init__(self, spec, vae, mdnrnn, params) -> None:
        self.spec, self.vae, self.mdnrnn = spec, vae, mdnrnn
        self.config = controller_config(spec, mdnrnn.z_size, mdnrnn.hidden_size)
        self.params = torch.as_tensor(params)

    def reset(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.state = self.mdnrnn.initial_state(1, "cpu")
        self.restart = torch.ones(1)

    @torch.no_grad()
    def act(self, frame: np.ndarray) -> np.ndarray:
        mu, logvar = self.vae.encode(frames_to_tensor(frame[None]))
        z = mu + torch.exp(logvar / 2) * torch.randn(mu.shape, generator=self.generator)
        h, c = self.state
        action = model_actions(self.spec, act(self.config, self.params, controller_inputs(self.config, z, h, c)))
        _, self.state = self.mdnrnn.step(z, canonical_actions(self.spec, action), self.state, self.restart)
        self.restart = torch.zeros(1)
        return action[0].numpy()


def make_env(env_id: str) -> PixelEnv:
    return PixelEnv(env_id, crop_rows=CARRACING_CROP_ROWS, max_episode_steps=CARRACING_MAX_STEPS)


def one_at_a_time(env_id: str, agent, episodes: int, steps: int) -> float:
    env = make_env(env_id)
    start = time.perf_counter()
    for seed in range(episodes):
        agent.reset(seed)
        obs, _ = env.reset(seed=seed)
        for _ in range(steps):
            obs, *_ = env.step(agent.act(obs))
    rate = episodes * steps / (time.perf_counter() - start)
    env.close()
    return rate


def batched(agent: BatchedAgent, params: np.ndarray, episodes: int, steps: int) -> float:
    envs = [make_env(FAST_ID) for _ in range(agent.slots)]
    start = time.perf_counter()
    play_agent_episodes(envs, agent, [params] * episodes, list(range(episodes)), steps)
    rate = episodes * steps / (time.perf_counter() - start)
    for env in envs:
        env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=8, help="episodes per row (default: 8)")
    parser.add_argument("--steps", type=int, default=300, help="steps per episode (default: 300)")
    parser.add_argument("--slots", type=int, default=8, help="K, episodes in lockstep (default: 8)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = get_spec("carracing")
    vae, mdnrnn = ConvVAE(32).eval(), MDNRNN(32, 3, 256, 5).eval()
    params = np.random.default_rng(0).normal(size=controller_config(spec, 32, 256).num_params).astype(np.float32)
    params *= 0.1
    rows = {
        "before: stock CarRacing-v3, one frame at a time": one_at_a_time(
            "CarRacing-v3", FrameAtATimeAgent(spec, vae, mdnrnn, params), args.episodes, args.steps),
        "fast renderer, one frame at a time": one_at_a_time(
            FAST_ID, FrameAtATimeAgent(spec, vae, mdnrnn, params), args.episodes, args.steps),
        f"fast renderer, batched agent K={args.slots}": batched(
            BatchedAgent(spec, vae, mdnrnn, args.slots), params, args.episodes, args.steps),
        "fast renderer, one-episode face (padded blocks)": one_at_a_time(
            FAST_ID, WorldModelAgent(spec, vae, mdnrnn, params), args.episodes, args.steps),
    }
    base = next(iter(rows.values()))
    print(f"{'row':52s} {'steps/s':>8s} {'episodes/s':>10s} {'ratio':>6s}")
    for name, rate in rows.items():
        print(f"{name:52s} {rate:8.0f} {rate / 1000:10.3f} {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
