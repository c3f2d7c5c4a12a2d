"""Env names -> constructors plus the world-model defaults that go with each env (reference_spec §1, §4, §6).

`doom` and `carracing` are the paper's experiments, `binpacking` the WorldModelsDreaming one. Any other
name is taken as a Gymnasium env id (`"module:EnvId-v0"` imports `module` first, as gymnasium.make
does; VizDoom's own ids such as `VizdoomDefendLine-v1` work without the prefix) with image observations.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from common.errors import UserError
from envs import binpacking
from envs.binpacking_image import MAX_CAPACITY as BINPACKING_MAX_CAPACITY
from envs.doom import MAX_EPISODE_STEPS as DOOM_MAX_STEPS
from envs.doom import DoomTakeCoverEnv
from envs.pixels import PixelEnv, UnsupportedEnvError

CARRACING_CROP_ROWS = (0, 84)  # drop the 12-row dashboard of the 96x96 frame
CARRACING_MAX_STEPS = 1000


@dataclass(frozen=True)
class EnvSpec:
    """One env and the world-model configuration the paper (or a sensible default) uses with it."""

    name: str
    make: Callable[..., gym.Env] = field(repr=False)
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    max_episode_steps: int | None
    default_policy: str
    z_size: int = 32
    rnn_hidden: int = 256
    num_mixtures: int = 5
    predict_done: bool = False
    predict_reward: bool = False
    controller_inputs: str = "zh"  # "zh" = [z, h]; "zch" = [z, c, h] (Doom)
    controller_bias: bool = True
    controller_output: str = "bounds"  # how tanh outputs become a model action; see controller_affine
    action_kind: str = "continuous"  # "discrete" (one-hot recorded) or "binary" (0/1 recorded) for such envs
    dream_temperature: float = 1.0
    survival_reward: bool = False  # Doom: reward +1 per step survived, in the real env and in the dream
    # Env options stage 01 records with every run (defaults filled in), and the values a run recorded
    # before an option existed implicitly had, so an old run is replayed in the game it was collected in.
    recorded_defaults: dict[str, Any] = field(default_factory=dict)
    legacy_defaults: dict[str, Any] = field(default_factory=dict)
    # Episode length set by env options (bin packing's horizon); None: max_episode_steps whatever the options.
    steps_of_options: Callable[[dict[str, Any]], int] | None = field(default=None, repr=False)
    # Envs whose actions are not all valid everywhere: (frames, env options) -> (T, action_dim) 0/1 masks
    # read off real frames. Stage 03 stores them and fits M's mask reader; the dream plays valid actions.
    frame_action_mask: Callable[[np.ndarray, dict[str, Any]], np.ndarray] | None = field(default=None, repr=False)

    def create(self, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
        """Make the env; `kwargs` go to the constructor (e.g. resolution= for doom)."""
        try:
            return self.make(render_mode=render_mode, **kwargs)
        except (TypeError, ValueError) as e:
            raise UserError(f"env {self.name!r}: bad env option ({e})") from None

    def options_to_record(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The env options a new run records: what was asked for, with the recorded defaults filled in."""
        return {**self.recorded_defaults, **kwargs}

    def options_of_run(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """The env options a run was collected with, from what its meta.json recorded (old runs included)."""
        return {**self.legacy_defaults, **recorded}

    def episode_steps(self, options: dict[str, Any] | None = None) -> int:
        """The step cap of an episode with these env options (1,000 for envs that have none)."""
        if self.steps_of_options is not None:
            try:
                return self.steps_of_options(dict(options or {}))
            except (TypeError, ValueError) as e:
                raise UserError(f"env {self.name!r}: bad env option ({e})") from None
        return self.max_episode_steps or 1000

    def controller_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) taking tanh outputs in [-1, 1] to model actions, before clipping to bounds."""
        low = np.asarray(self.action_low, np.float32)
        high = np.asarray(self.action_high, np.float32)
        if self.controller_output == "identity":
            return np.ones_like(low), np.zeros_like(low)
        if self.controller_output == "carracing":  # steer, gas = (a+1)/2, brake = clip(a, 0, 1) (reference)
            return np.array([1.0, 0.5, 1.0], np.float32), np.array([0.0, 0.5, 0.0], np.float32)
        return (high - low) / 2, (high + low) / 2

    def controller_to_action(self, raw: np.ndarray) -> np.ndarray:
        """Map tanh controller outputs (..., action_dim) in [-1, 1] to model actions."""
        scale, offset = self.controller_affine()
        action = np.asarray(raw, np.float32) * scale + offset
        return np.clip(action, self.action_low, self.action_high).astype(np.float32)


def _make_doom(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    return DoomTakeCoverEnv(render_mode=render_mode, **kwargs)


def _make_carracing(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    # Imported here, not at the top: Doom and bin packing run without Box2D and pygame-ce.
    try:
        from envs.carracing import FAST_ID  # CarRacing-v3 with a faster renderer, bit-identical frames
    except ImportError as e:
        raise UserError(f"env carracing needs Box2D and pygame-ce, which did not import ({e}); install them "
                        "with: pip install 'gymnasium[box2d]' pygame-ce") from e
    return PixelEnv(FAST_ID, render_mode=render_mode, crop_rows=CARRACING_CROP_ROWS,
                    max_episode_steps=CARRACING_MAX_STEPS, **kwargs)


def _make_binpacking(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    return PixelEnv(binpacking.GYM_ID, render_mode=render_mode, model_action_size=BINPACKING_MAX_CAPACITY,
                    **kwargs)


def _binpacking_horizon(options: dict[str, Any]) -> int:
    return binpacking.config_of_options(options).horizon


NAMED_ENVS: dict[str, EnvSpec] = {
    "doom": EnvSpec(
        name="doom", make=_make_doom, action_dim=1, action_low=(-1.0,), action_high=(1.0,),
        max_episode_steps=DOOM_MAX_STEPS, default_policy="sticky",
        z_size=64, rnn_hidden=512, predict_done=True, controller_inputs="zch",
        controller_bias=False, controller_output="identity", dream_temperature=1.15,
        survival_reward=True, recorded_defaults={"screen_flashes": True},
        legacy_defaults={"screen_flashes": False},
    ),
    "carracing": EnvSpec(
        name="carracing", make=_make_carracing, action_dim=3, action_low=(-1.0, 0.0, 0.0),
        action_high=(1.0, 1.0, 1.0), max_episode_steps=CARRACING_MAX_STEPS,
        default_policy="brownian", z_size=32, rnn_hidden=256, controller_inputs="zh",
        controller_bias=True, controller_output="carracing",
    ),
    # Bin packing (envs/binpacking.py). The model action is one score per level, padded to 30 so that
    # every bag size shares one world-model shape; the env plays the best-scoring valid level (its
    # action mask), so no episode ends early. No done head: the only end is the horizon, which the
    # picture does not show, so the dream simply runs it. M's reward head scores the dream. The picture
    # is the whole state (Markov), so C reads z alone: 32 x 30 + 30 = 990 parameters (Doom's C: 1,088).
    "binpacking": EnvSpec(
        name="binpacking", make=_make_binpacking, action_dim=BINPACKING_MAX_CAPACITY,
        action_low=(-1.0,) * BINPACKING_MAX_CAPACITY, action_high=(1.0,) * BINPACKING_MAX_CAPACITY,
        max_episode_steps=binpacking.PRESETS[binpacking.DEFAULT_PRESET].horizon,
        default_policy="random_valid", z_size=32, rnn_hidden=256, predict_done=False, predict_reward=True,
        controller_inputs="z", controller_bias=True, controller_output="identity", action_kind="discrete",
        recorded_defaults={"preset": binpacking.DEFAULT_PRESET}, steps_of_options=_binpacking_horizon,
        frame_action_mask=binpacking.frame_action_masks,
    ),
}

# Gymnasium ids that register on importing a module, so a bare id finds them: id prefix -> module.
PROVIDER_MODULES = {"Vizdoom": "vizdoom.gymnasium_wrapper"}


def known_env_names() -> str:
    return ", ".join(NAMED_ENVS) + ", or a Gymnasium env id with image observations"


@functools.cache
def get_spec(name: str) -> EnvSpec:
    """The spec for a named env or a Gymnasium id; UserError (listing known names) otherwise."""
    if name in NAMED_ENVS:
        return NAMED_ENVS[name]
    return _gym_spec(name)


def _gym_spec(name: str) -> EnvSpec:
    env_id = name
    module, _, bare_id = env_id.rpartition(":")
    if not module:
        module = next((m for prefix, m in PROVIDER_MODULES.items() if bare_id.startswith(prefix)), "")
        env_id = f"{module}:{bare_id}" if module else bare_id
    try:
        if module:
            importlib.import_module(module)  # registers its envs, as gymnasium.make would
        gym.spec(bare_id)
    except (gym.error.Error, ImportError, ValueError) as e:
        raise UserError(f"unknown env {name!r} ({e}); known: {known_env_names()}") from None

    def make(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
        return PixelEnv(env_id, render_mode=render_mode, **kwargs)

    try:
        probe = make()
    except UnsupportedEnvError as e:
        raise UserError(f"env {env_id!r}: {e}") from None
    except (gym.error.Error, ImportError) as e:  # e.g. a missing optional dependency
        raise UserError(f"env {env_id!r} cannot be made ({e})") from None
    try:
        space = probe.action_space
        max_steps = probe.env.spec.max_episode_steps if probe.env.spec else None
        env_space = probe.env.action_space
    finally:
        probe.close()
    action_kind = ("discrete" if isinstance(env_space, gym.spaces.Discrete)
                   else "binary" if isinstance(env_space, gym.spaces.MultiBinary) else "continuous")
    return EnvSpec(
        name=name, make=make, action_dim=int(space.shape[0]),
        action_low=tuple(float(x) for x in space.low), action_high=tuple(float(x) for x in space.high),
        max_episode_steps=max_steps, default_policy="brownian" if action_kind == "continuous" else "sticky",
        predict_done=True, predict_reward=True, action_kind=action_kind,
    )


def make_env(name: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """Make env `name` (see module doc) with 64x64x3 uint8 observations and flat float actions."""
    return get_spec(name).create(render_mode=render_mode, **kwargs)
