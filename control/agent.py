"""The full agent in a real env: V encodes the frame, C acts on [z, (c,) h], M updates its memory.

Step order as in the reference (spec §1.1, §6): z_t is a *sample* from V's posterior (not mu), the
controller sees [z_t, c_t, h_t], and M then advances on (z_t, a_t) so the next step sees the new state.
`z_input="mean"` uses V's mean instead (as ctallec's reproduction did): V leaves most of z's dimensions
unused (posterior ~N(0, 1) whatever the frame), and a sample fills those with noise that C must learn to
ignore.
The dream (envs/dream.py) follows the same order with z sampled from M instead of V. Given the env, M
is told the action the env really plays (for bin packing, the best-scoring *valid* level), as in the data.

One implementation, two faces, as the dream: `BatchedAgent` acts for K real-env episodes at once (one
V, C and M call a step for all of them, each episode with its own controller and seed), and
`WorldModelAgent` is the same code with one episode, for play, videos and data collection.

An episode's actions depend on its frames, controller and seed only, never on which other episodes
share the batch: V, C and M always run on blocks of exactly `BLOCK_ROWS` rows (padded), because torch's
CPU kernels give a row bit-identical results in a batch of a fixed size whatever the other rows hold,
but not across batch sizes (a batch of 4 frames rounds differently from 4 batches of 1). Each episode
draws V's sampling noise from its own generator, seeded by its scenario seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from envs.controller import canonical_actions, controller_config, model_actions
from envs.registry import EnvSpec
from models.controller import act, controller_inputs
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE, frames_to_tensor

BLOCK_ROWS = 8  # rows per V/C/M call; 8 frames encode at ~0.24 ms each on one core against ~0.6 ms alone
Z_INPUTS = {"sample": "z drawn from V's posterior each step (the reference)",
            "mean": "V's posterior mean (ctallec's reproduction): no sampling noise in the unused dimensions"}


def in_blocks(fn: Callable[..., Any], *tensors: torch.Tensor, block_rows: int = BLOCK_ROWS) -> Any:
    """fn applied to blocks of exactly `block_rows` rows (the last one zero-padded), results joined and trimmed.

    `fn` returns a tensor or a tuple of tensors with one row per input row.
    """
    rows = tensors[0].shape[0]
    padded = -(-rows // block_rows) * block_rows
    if padded != rows:
        tensors = tuple(torch.cat([t, t.new_zeros((padded - rows, *t.shape[1:]))]) for t in tensors)
    outputs = [fn(*(t[i:i + block_rows] for t in tensors)) for i in range(0, padded, block_rows)]
    if isinstance(outputs[0], tuple):
        return tuple(torch.cat(parts)[:rows] for parts in zip(*outputs, strict=True))
    return torch.cat(outputs)[:rows]


class BatchedAgent:
    """V, M and C for `slots` real-env episodes at once; each slot plays one episode at a time.

    `block_rows` 1 computes a single episode without padding, ~2.5x faster than a padded block, but its
    numbers then differ in the last bits from those of any batch: for data collection, which only needs
    to be reproducible on its own, not for scoring.
    """

    def __init__(self, spec: EnvSpec, vae: ConvVAE, mdnrnn: MDNRNN, slots: int = 1,
                 block_rows: int = BLOCK_ROWS, z_input: str = "sample") -> None:
        if z_input not in Z_INPUTS:
            raise ValueError(f"z_input {z_input!r}: one of {', '.join(Z_INPUTS)}")
        self.spec = spec
        self.z_input = z_input
        self.block_rows = block_rows
        self.vae = vae.eval()
        self.mdnrnn = mdnrnn.eval()
        self.config = controller_config(spec, mdnrnn.z_size, mdnrnn.hidden_size)
        self.device = next(mdnrnn.parameters()).device
        self.slots = slots
        self.params = torch.zeros(slots, self.config.num_params, device=self.device)
        self.h, self.c = mdnrnn.initial_state(slots, self.device)
        self.restart = torch.ones(slots, device=self.device)
        self.z = torch.zeros(slots, mdnrnn.z_size, device=self.device)  # the last z each slot's controller saw
        self.generators = [torch.Generator(device="cpu").manual_seed(0) for _ in range(slots)]
        self.envs: list[Any] = [None] * slots

    def start(self, slot: int, params: np.ndarray, seed: int, env: Any = None) -> None:
        """Begin an episode in `slot`: its controller, its scenario seed, and the env it plays (for masks)."""
        params = np.asarray(params, np.float32)  # a copy below: params from Ray's object store are read-only
        if params.shape != (self.config.num_params,):
            raise ValueError(f"controller needs {self.config.num_params} params, got {params.shape}")
        self.params[slot] = torch.tensor(params, device=self.device)
        self.generators[slot].manual_seed(int(seed))
        self.h[slot], self.c[slot] = 0.0, 0.0  # C's first input, as M's restart flag zeroes it for M's step
        self.restart[slot] = 1.0
        self.envs[slot] = env

    @torch.no_grad()
    def act(self, slots: Sequence[int], frames: np.ndarray) -> np.ndarray:
        """Model actions (n, action_dim) for the 64x64x3 frames (n, ...) of these slots; advances their M."""
        index = torch.as_tensor(list(slots), dtype=torch.long)
        blocks = self.block_rows
        mu, logvar = in_blocks(self.vae.encode, frames_to_tensor(frames, self.device), block_rows=blocks)
        if self.z_input == "mean":
            z = mu
        else:
            eps = torch.cat([torch.randn((1, mu.shape[1]), generator=self.generators[s]) for s in slots])
            z = mu + torch.exp(logvar / 2) * eps.to(self.device)
        h, c = self.h[index], self.c[index]
        inputs = controller_inputs(self.config, z, h, c)
        raw = in_blocks(lambda p, x: act(self.config, p, x), self.params[index], inputs, block_rows=blocks)
        actions = model_actions(self.spec, raw)
        played = canonical_actions(self.spec, actions)
        for row, slot in enumerate(slots):
            if self.envs[slot] is not None:  # the action the env really plays (bin packing: a valid level)
                played[row] = torch.as_tensor(self.envs[slot].canonical_action(actions[row].cpu().numpy()))
        h, c = in_blocks(lambda *x: self.mdnrnn.advance(x[0], x[1], (x[2], x[3]), x[4]),
                         z, played, h, c, self.restart[index], block_rows=blocks)
        self.h[index], self.c[index], self.z[index] = h, c, z
        self.restart[index] = 0.0
        return actions.cpu().numpy()


class WorldModelAgent:
    """One real-env episode at a time with fixed V, M and controller parameters: a batch of one."""

    def __init__(self, spec: EnvSpec, vae: ConvVAE, mdnrnn: MDNRNN, params: np.ndarray | None = None,
                 env: Any = None, block_rows: int = BLOCK_ROWS, z_input: str = "sample") -> None:
        self.batch = BatchedAgent(spec, vae, mdnrnn, slots=1, block_rows=block_rows, z_input=z_input)
        self.spec, self.vae, self.config = spec, self.batch.vae, self.batch.config
        self.env = env
        self.set_params(np.zeros(self.config.num_params) if params is None else params)
        self.reset(0)

    @property
    def z(self) -> torch.Tensor:
        """(1, Z): the z the controller saw last."""
        return self.batch.z

    def set_params(self, params: np.ndarray) -> None:
        self.params = np.asarray(params, np.float32)
        if self.params.shape != (self.config.num_params,):
            raise ValueError(f"controller needs {self.config.num_params} params, got {self.params.shape}")

    def reset(self, seed: int) -> None:
        self.batch.start(0, self.params, seed, self.env)

    def act(self, frame: np.ndarray) -> np.ndarray:
        """Model action (action_dim,) for this 64x64x3 frame; advances M's state."""
        return self.batch.act([0], frame[None])[0]
