"""The full agent in a real env: V encodes the frame, C acts on [z, (c,) h], M updates its memory.

Step order as in the reference (spec §1.1, §6): z_t is a *sample* from V's posterior (not mu), the
controller sees [z_t, c_t, h_t], and M then advances on (z_t, a_t) so the next step sees the new state.
The dream (envs/dream.py) follows the same order with z sampled from M instead of V. Given the env, M
is told the action the env really plays (for bin packing, the best-scoring *valid* level), as in the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from envs.dream import canonical_actions, model_actions
from envs.registry import EnvSpec
from models.controller import act, controller_config, controller_inputs
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE, frames_to_tensor


class WorldModelAgent:
    """Acts one real-env episode at a time with fixed V, M and controller parameters."""

    def __init__(self, spec: EnvSpec, vae: ConvVAE, mdnrnn: MDNRNN, params: np.ndarray | None = None,
                 env: Any = None) -> None:
        self.spec = spec
        self.env = env
        self.vae = vae.eval()
        self.mdnrnn = mdnrnn.eval()
        self.config = controller_config(spec, mdnrnn.z_size, mdnrnn.hidden_size)
        self.device = next(mdnrnn.parameters()).device
        self.set_params(np.zeros(self.config.num_params) if params is None else params)
        self.reset(0)

    def set_params(self, params: np.ndarray) -> None:
        # a copy: params that came through Ray's object store are a read-only view
        self.params = torch.tensor(np.asarray(params, np.float32), device=self.device)
        if self.params.shape != (self.config.num_params,):
            raise ValueError(f"controller needs {self.config.num_params} params, got {tuple(self.params.shape)}")

    def reset(self, seed: int) -> None:
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.state = self.mdnrnn.initial_state(1, self.device)
        self.restart = torch.ones(1, device=self.device)
        self.z: torch.Tensor | None = None

    @torch.no_grad()
    def act(self, frame: np.ndarray) -> np.ndarray:
        """Model action (action_dim,) for this 64x64x3 frame; advances M's state."""
        mu, logvar = self.vae.encode(frames_to_tensor(frame[None], self.device))
        eps = torch.randn(mu.shape, generator=self.generator).to(self.device)
        self.z = mu + torch.exp(logvar / 2) * eps
        h, c = self.state
        raw = act(self.config, self.params, controller_inputs(self.config, self.z, h, c))
        action = model_actions(self.spec, raw)
        if self.env is not None:
            played = torch.as_tensor(self.env.canonical_action(action[0].cpu().numpy()), device=self.device)[None]
        else:
            played = canonical_actions(self.spec, action)
        _, self.state = self.mdnrnn.step(self.z, played, self.state, self.restart)
        self.restart = torch.zeros_like(self.restart)
        return action[0].cpu().numpy()
