"""The dream: M as a simulator, in a batched form (many episodes per tensor call) and a Gymnasium env.

One implementation, two faces. `BatchedDream` steps N independent episodes at once, each with its own
controller parameters, which is what makes CMA-ES in the dream fast on a CPU. `DreamEnv` is the same
code with N = 1 behind the Gymnasium API (reset/step/render), for play and inspection.

Randomness is per *scenario seed*: each episode draws its initial latent and all sampling noise from
a generator seeded by its own scenario seed. Episodes that share a seed therefore see the same random
numbers whatever else is in the batch (common random numbers for CMA-ES), and a batched episode
reproduces the single-env episode with the same seed.

Per step, as in the reference (spec §1.3): a = C([z, c, h]); M advances on (z, a, restart) to give the
mixture for the next z; z' is sampled at temperature tau (logits / tau, sigma * sqrt(tau)); done when
p(done) > 0.5 (or, with done_mode "sample", drawn with M's calibrated hazard) or at the step cap;
Doom's reward is +1 per step, the terminal one included. Where some actions are invalid (bin packing),
the mask reader tells from z which ones are valid and the best-scoring valid action is played, as the
real env does with its own mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from common.errors import UserError
from common.streams import Stream, episode_rng
from envs.controller import canonical_actions, controller_config, model_actions
from envs.policies import STATE_POLICIES, make_policy
from envs.registry import EnvSpec
from models.controller import ControllerConfig, act, controller_inputs
from models.mask_reader import MaskReader
from models.mdnrnn import MDNRNN, MDNOutput, done_from_logit, done_probability
from models.vae import ConvVAE, tensor_to_frames

DONE_MODES = {
    "threshold": "the episode ends when p(done) > 0.5 on the head trained with positives x10, i.e. at a believed "
                 "hazard above 1/11 (the reference; deterministic)",
    "sample": "the episode ends with the hazard M believes in, sigmoid(logit - log 10), drawn each step "
              "(ZW's port sampled done)",
}


@dataclass
class WorldModel:
    """What the dream needs: the env's spec, a trained M, real initial latents, and V for pictures."""

    spec: EnvSpec
    mdnrnn: MDNRNN
    initial_mu: torch.Tensor  # (N0, Z): first-frame latents of real episodes
    initial_logvar: torch.Tensor
    vae: ConvVAE | None = None
    done_mode: str = "threshold"  # see DONE_MODES
    mask_reader: MaskReader | None = None  # envs with invalid actions: z -> which actions are valid
    members: tuple[MDNRNN, ...] = ()  # an ensemble dream's other Ms (see the module docstring)

    def __post_init__(self) -> None:
        if self.done_mode not in DONE_MODES:
            raise ValueError(f"done_mode must be one of {sorted(DONE_MODES)}, got {self.done_mode!r}")
        self.mdnrnn.eval()
        for member in self.members:
            member.eval()
        if self.vae is not None:
            self.vae.eval()

    @property
    def device(self) -> torch.device:
        return next(self.mdnrnn.parameters()).device

    def valid_only(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Model actions with the scores of actions invalid on z set to -inf (unchanged without a reader)."""
        if self.mask_reader is None:
            return actions
        return torch.where(self.mask_reader.valid(z), actions, torch.full_like(actions, -math.inf))

    @property
    def controller(self) -> ControllerConfig:
        return controller_config(self.spec, self.mdnrnn.z_size, self.mdnrnn.hidden_size)


def sample_mixture(out: MDNOutput, tau: float, uniform: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """z' from the per-dimension mixtures with given noise: uniform picks components, normal the value."""
    k = out.logpi.shape[-1]
    if tau == 0:
        index = out.logpi.argmax(-1)
    else:
        cdf = torch.softmax(out.logpi / tau, dim=-1).cumsum(-1)
        index = (cdf < uniform.unsqueeze(-1)).sum(-1).clamp_(max=k - 1)
    mu = out.mu.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    sigma = out.logsigma.gather(-1, index.unsqueeze(-1)).squeeze(-1).exp()
    return mu + sigma * math.sqrt(tau) * normal


class _ScenarioNoise:
    """One torch generator per distinct scenario seed; each step draws once per scenario still in play.

    Draw k of a scenario always serves step k of every episode on that scenario, so an episode's noise
    depends on its seed alone, and P candidates sharing R seeds cost R draws a step, not P * R.
    """

    def __init__(self, seeds: list[int], device: torch.device, stream: int = 0) -> None:
        distinct = sorted(set(seeds))  # stream k > 0: another sequence per scenario, in the same order
        self.generators = [torch.Generator(device="cpu").manual_seed(int(s) + stream * 2**40) for s in distinct]
        index = {s: i for i, s in enumerate(distinct)}
        self.of_episode = torch.tensor([index[s] for s in seeds], dtype=torch.long)  # episode -> generator
        self.device = device

    def draw(self, scenarios: torch.Tensor, size: int, kind: str) -> torch.Tensor:
        """Noise (len(scenarios), size): 'uniform' in [0, 1), 'normal', or 'index' (one int < size)."""
        distinct, inverse = torch.unique(scenarios, return_inverse=True)
        rows = []
        for i in distinct.tolist():
            g = self.generators[i]
            if kind == "uniform":
                rows.append(torch.rand(size, generator=g))
            elif kind == "normal":
                rows.append(torch.randn(size, generator=g))
            else:
                rows.append(torch.randint(size, (), generator=g))
        return torch.stack(rows)[inverse].to(self.device)


class DreamStep(NamedTuple):
    """What one batched step gives, for the episodes that were active before it."""

    episodes: torch.Tensor  # episode indices (into the seeds given to reset)
    reward: torch.Tensor
    terminated: torch.Tensor  # M predicted the end (p(done) > 0.5)
    truncated: torch.Tensor  # the step cap
    z: torch.Tensor  # the new latents, including those of episodes that just ended


class BatchedDream:
    """N dream episodes stepped together; finished episodes leave the batch, so cost tracks the living."""

    def __init__(self, world: WorldModel, temperature: float, max_steps: int) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.world = world
        self.temperature = temperature
        self.max_steps = max_steps

    def reset(self, seeds: list[int]) -> None:
        """Start one episode per seed (the scenario); all step together from here."""
        world, device = self.world, self.world.device
        self.noise = _ScenarioNoise(seeds, device)
        if world.members:  # the member draws have their own stream, so they leave z's noise alone
            self.member_noise = _ScenarioNoise(seeds, device, stream=1)
        self.scenario = self.noise.of_episode  # active episode -> its scenario's generator
        self.active = torch.arange(len(seeds), device=device)  # active episode -> episode index
        pick = self.noise.draw(self.scenario, len(world.initial_mu), "index")
        eps = self.noise.draw(self.scenario, world.mdnrnn.z_size, "normal")
        self.z = world.initial_mu[pick] + torch.exp(world.initial_logvar[pick] / 2) * eps
        self.h, self.c = world.mdnrnn.initial_state(len(seeds), device)
        self.member_states = [m.initial_state(len(seeds), device) for m in world.members]
        self.restart = torch.ones(len(seeds), device=device)
        self.steps = 0

    @property
    def num_active(self) -> int:
        return len(self.active)

    def observation(self) -> torch.Tensor:
        """Controller inputs of the active episodes: [z, c, h] or [z, h]."""
        return controller_inputs(self.world.controller, self.z, self.h, self.c)

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> DreamStep:
        """Advance the active episodes with model actions (n_active, A); finished ones leave the batch."""
        world, spec = self.world, self.world.spec
        m = world.mdnrnn
        played = canonical_actions(spec, world.valid_only(self.z, actions))
        out, (self.h, self.c) = m.step(self.z, played, (self.h, self.c), self.restart)
        if world.members:
            out = self._ensemble_step(out, played)
        uniform = self.noise.draw(self.scenario, m.z_size, "uniform")
        normal = self.noise.draw(self.scenario, m.z_size, "normal")
        self.z = sample_mixture(out, self.temperature, uniform, normal)
        self.restart = torch.zeros_like(self.restart)
        self.steps += 1
        if m.predict_done and world.done_mode == "sample":
            hazard = done_probability(out.done_logit)
            terminated = self.noise.draw(self.scenario, 1, "uniform")[:, 0] < hazard
        elif m.predict_done:
            terminated = done_from_logit(out.done_logit)
        else:
            terminated = torch.zeros(self.num_active, dtype=torch.bool, device=self.z.device)
        truncated = ~terminated if self.steps >= self.max_steps else torch.zeros_like(terminated)
        if spec.survival_reward:
            reward = torch.ones(self.num_active, device=self.z.device)
        elif m.predict_reward:
            reward = out.reward
        else:
            reward = torch.zeros(self.num_active, device=self.z.device)
        result = DreamStep(self.active, reward, terminated, truncated, self.z)
        self._drop(terminated | truncated)
        return result

    def _ensemble_step(self, first: MDNOutput, played: torch.Tensor) -> MDNOutput:
        """Advance the other members; each episode's next-step heads from one member drawn at random."""
        outputs = [first]
        for i, member in enumerate(self.world.members):
            out, self.member_states[i] = member.step(self.z, played, self.member_states[i], self.restart)
            outputs.append(out)
        drawn = self.member_noise.draw(self.scenario, len(outputs), "index")
        rows = torch.arange(self.num_active, device=drawn.device)

        def pick(field: int) -> torch.Tensor | None:
            if outputs[0][field] is None:
                return None
            return torch.stack([o[field] for o in outputs])[drawn, rows]
        return MDNOutput(*(pick(i) for i in range(len(first))))

    def _drop(self, done: torch.Tensor) -> None:
        if not bool(done.any()):
            return
        keep = (~done).nonzero().squeeze(-1)
        self.active = self.active[keep]
        self.scenario = self.scenario[keep.cpu()]
        self.z, self.h, self.c, self.restart = (t[keep] for t in (self.z, self.h, self.c, self.restart))
        self.member_states = [(h[keep], c[keep]) for h, c in self.member_states]


@torch.no_grad()
def rollout_population(world: WorldModel, params: torch.Tensor, seeds: list[int], temperature: float,
                       max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate (P, num_params) on every scenario seed (R) in one batch.

    Returns (returns, lengths), each (P, R). Candidate p on seed r is episode p * R + r.
    """
    num_candidates, num_seeds = params.shape[0], len(seeds)
    dream = BatchedDream(world, temperature, max_steps)
    dream.reset([s for _ in range(num_candidates) for s in seeds])
    config = world.controller
    episode_params = params.to(world.device).repeat_interleave(num_seeds, dim=0)
    total = torch.zeros(num_candidates * num_seeds, device=world.device)
    lengths = torch.zeros_like(total)
    while dream.num_active:
        raw = act(config, episode_params[dream.active], dream.observation())
        result = dream.step(model_actions(world.spec, raw))
        total[result.episodes] += result.reward
        lengths[result.episodes] += 1
    shape = (num_candidates, num_seeds)
    return total.reshape(shape).cpu().numpy(), lengths.reshape(shape).cpu().numpy()


@torch.no_grad()
def rollout_policy(world: WorldModel, policy: str, seeds: list[int], temperature: float,
                   max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """A stage-01 policy (or 'constant:a') in the dream, one episode per seed; returns (returns, lengths).

    Episode i's policy draws from the same generator as the real-env baseline on seed i
    (control/real.py), so the dream and the game see the same action sequences where lengths allow.
    """
    if policy in STATE_POLICIES:
        raise UserError(f"policy {policy!r} reads the real env's state, which the dream does not have; it plays "
                        "only in the real env")
    space = gym.spaces.Box(np.asarray(world.spec.action_low, np.float32),
                           np.asarray(world.spec.action_high, np.float32))
    policies = [make_policy(policy, space, episode_rng(seed, Stream.BASELINE)) for seed in seeds]
    for p in policies:
        p.reset()
    dream = BatchedDream(world, temperature, max_steps)
    dream.reset(list(seeds))
    total = torch.zeros(len(seeds), device=world.device)
    lengths = torch.zeros_like(total)
    while dream.num_active:
        actions = np.stack([policies[i].act() for i in dream.active.tolist()])
        result = dream.step(torch.as_tensor(actions, device=world.device))
        total[result.episodes] += result.reward
        lengths[result.episodes] += 1
    return total.cpu().numpy(), lengths.cpu().numpy()


class DreamEnv(gym.Env):
    """One dream episode behind the Gymnasium API. obs = controller inputs; render() decodes z with V."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(self, world: WorldModel, temperature: float | None = None, max_steps: int | None = None,
                 render_mode: str | None = None) -> None:
        spec = world.spec
        self.world = world
        self.render_mode = render_mode
        self.temperature = spec.dream_temperature if temperature is None else temperature
        self._dream = BatchedDream(world, self.temperature, max_steps or spec.max_episode_steps or 1000)
        size = world.controller.input_size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
        self.action_space = gym.spaces.Box(low, high, low.shape, np.float32)
        self._z: torch.Tensor | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        scenario = int(self.np_random.integers(2**31 - 1)) if seed is None else seed
        self._dream.reset([scenario])
        self._z = self._dream.z
        return self._observe(), self._info()

    def set_temperature(self, temperature: float) -> None:
        """Change tau, also mid-episode (keyboard play turns it up and down live)."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.temperature = self._dream.temperature = float(temperature)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._dream.num_active == 0:
            raise RuntimeError("step() after the episode ended; call reset()")
        a = torch.as_tensor(np.asarray(action, np.float32).reshape(1, -1), device=self.world.device)
        result = self._dream.step(a)
        self._z = result.z
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        obs = np.zeros(self.observation_space.shape, np.float32) if terminated or truncated else self._observe()
        return obs, float(result.reward[0]), terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        """The valid actions M's mask reader sees on the current z (envs that have invalid actions)."""
        if self.world.mask_reader is None or self._z is None:
            return {}
        return {"action_mask": self.world.mask_reader.valid(self._z[:1])[0].cpu().numpy().astype(np.int8)}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self.world.vae is None or self._z is None:
            return None
        with torch.no_grad():
            return tensor_to_frames(self.world.vae.decode(self._z[:1].to(self.world.device))[0])

    def _observe(self) -> np.ndarray:
        return self._dream.observation()[0].cpu().numpy().astype(np.float32)
