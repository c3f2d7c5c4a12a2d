"""Any Gymnasium env with image observations, adapted to the world-model interface.

The world model sees 64x64x3 uint8 frames and a flat float action vector (the *model action*). This
wrapper finds the image in the env's observation (a HxWx3 / HxW / HxWx1 uint8 Box, or such a Box
inside a Dict), and maps model actions onto the env's own action space:

| env action space | model action            | sent to the env          | recorded (canonical) |
|------------------|-------------------------|--------------------------|----------------------|
| Discrete(n)      | Box(-1, 1, (n,))        | argmax over valid ones   | one-hot              |
| MultiBinary(n)   | Box(-1, 1, (n,))        | a > 0                    | 0/1 floats           |
| Box(low, high)   | Box(low, high) (flat)   | clipped, reshaped        | clipped              |

Unbounded Box dimensions are given [-1, 1] for the model action. A Discrete env that puts an
`action_mask` in its info (1 = allowed; bin packing, also gymnasium's toy-text envs) gets the
best-scoring *allowed* action, and what is recorded is the action really played. `model_action_size`
pads a Discrete model action with scores that are never played, so that one world-model shape serves
every size of an env family (bin packing with bags of 9 or 30).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from envs.preprocess import FRAME_SHAPE, to_model_frame

IMAGE_KEYS_PREFERRED = ("screen", "pixels", "image", "rgb", "observation", "obs")


class UnsupportedEnvError(ValueError):
    """The env's spaces cannot feed a world model; the message says which space and why."""


def find_image_key(space: gym.Space) -> str | None:
    """None if `space` itself is an image; the Dict key holding the image otherwise."""
    if _is_image_space(space):
        return None
    if isinstance(space, gym.spaces.Dict):
        keys = [k for k, s in space.spaces.items() if _is_image_space(s)]
        if keys:
            return next((k for k in IMAGE_KEYS_PREFERRED if k in keys), keys[0])
    raise UnsupportedEnvError(
        f"observation space {space} has no image (need a HxWx3, HxWx1 or HxW uint8 Box, "
        "or a Dict holding one)"
    )


def _is_image_space(space: gym.Space) -> bool:
    if not isinstance(space, gym.spaces.Box) or space.dtype != np.uint8:
        return False
    shape = space.shape
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))


class ActionAdapter:
    """Maps flat float model actions to an env's action space and back to what we record."""

    def __init__(self, space: gym.Space, model_size: int | None = None) -> None:
        self.space = space
        if model_size is not None and not (isinstance(space, gym.spaces.Discrete) and model_size >= space.n):
            raise UnsupportedEnvError(f"model_action_size {model_size} needs a Discrete action space of at most "
                                      f"that many actions, not {space}")
        if isinstance(space, gym.spaces.Discrete):
            self.model_space = gym.spaces.Box(-1.0, 1.0, (model_size or int(space.n),), np.float32)
        elif isinstance(space, gym.spaces.MultiBinary) and len(space.shape) == 1:
            self.model_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)
        elif isinstance(space, gym.spaces.Box):
            low = np.where(np.isfinite(space.low), space.low, -1.0).astype(np.float32).reshape(-1)
            high = np.where(np.isfinite(space.high), space.high, 1.0).astype(np.float32).reshape(-1)
            self.model_space = gym.spaces.Box(low, high, low.shape, np.float32)
        else:
            raise UnsupportedEnvError(
                f"action space {space} is not supported (Discrete, MultiBinary(n) or Box)"
            )

    def choice(self, action: Any, mask: np.ndarray | None = None) -> int:
        """Discrete spaces: the index of the best-scoring action that `mask` allows (all without one)."""
        scores = np.asarray(action, dtype=np.float32).reshape(self.model_space.shape)[:int(self.space.n)]
        if mask is not None:
            scores = np.where(np.asarray(mask)[:len(scores)] > 0, scores, -np.inf)
        return int(np.argmax(scores))

    def to_env(self, action: Any, mask: np.ndarray | None = None) -> Any:
        a = np.asarray(action, dtype=np.float32).reshape(self.model_space.shape)
        if isinstance(self.space, gym.spaces.Discrete):
            return int(self.space.start + self.choice(a, mask))
        if isinstance(self.space, gym.spaces.MultiBinary):
            return (a > 0).astype(self.space.dtype)
        clipped = np.clip(a, self.model_space.low, self.model_space.high)
        return clipped.reshape(self.space.shape).astype(self.space.dtype)

    def canonical(self, action: Any, mask: np.ndarray | None = None) -> np.ndarray:
        a = np.asarray(action, dtype=np.float32).reshape(self.model_space.shape)
        if isinstance(self.space, gym.spaces.Discrete):
            one_hot = np.zeros(self.model_space.shape, np.float32)
            one_hot[self.choice(a, mask)] = 1.0
            return one_hot
        if isinstance(self.space, gym.spaces.MultiBinary):
            return (a > 0).astype(np.float32)
        return np.clip(a, self.model_space.low, self.model_space.high)


class PixelEnv(gym.Env):
    """Wrap `gym.make(env_id)` so that obs are 64x64x3 uint8 and actions are flat float vectors."""

    def __init__(
        self,
        env_id: str,
        render_mode: str | None = None,
        crop_rows: tuple[int, int] | None = None,
        max_episode_steps: int | None = None,
        model_action_size: int | None = None,
        **make_kwargs: Any,
    ) -> None:
        # ViZDoom's own envs write `_vizdoom.ini` and `_vizdoom/` into the cwd: give them a private one.
        self._private_dir = tempfile.mkdtemp(prefix="pixelenv-") if "vizdoom" in env_id.lower() else None
        with _cwd(self._private_dir):
            self.env = gym.make(env_id, render_mode=render_mode, **make_kwargs)
        try:
            self._image_key = find_image_key(self.env.observation_space)
            self._actions = ActionAdapter(self.env.action_space, model_action_size)
        except UnsupportedEnvError:
            self.close()
            raise
        self.env_id = env_id
        self.render_mode = render_mode
        self.metadata = self.env.metadata
        self.crop_rows = crop_rows
        self.max_episode_steps = max_episode_steps
        self.observation_space = gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.action_space = self._actions.model_space
        self._steps = 0
        self.last_frame: np.ndarray | None = None  # the full-size frame, for side-by-side renders
        self.last_info: dict = {}  # the env's info after the last reset/step (baselines read the state there)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.env.action_space.seed(seed)
        with _cwd(self._private_dir):  # ViZDoom's wrapper starts its game on the first reset
            obs, info = self.env.reset(seed=seed, options=options)
        self._steps = 0
        self.last_info = info
        return self._frame(obs), info

    @property
    def action_mask(self) -> np.ndarray | None:
        """The env's current mask of allowed actions (from its info), None if it gives none."""
        mask = self.last_info.get("action_mask")
        if mask is None or not isinstance(self.env.action_space, gym.spaces.Discrete):
            return None
        return np.asarray(mask)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        env_action = self._actions.to_env(action, self.action_mask)
        obs, reward, terminated, truncated, info = self.env.step(env_action)
        self.last_info = info
        self._steps += 1
        if self.max_episode_steps is not None and self._steps >= self.max_episode_steps:
            truncated = truncated or not terminated
        return self._frame(obs), float(reward), bool(terminated), bool(truncated), info

    def canonical_action(self, action: Any) -> np.ndarray:
        """What the world model is trained on for `action` now: for masked envs, the action really played."""
        return self._actions.canonical(action, self.action_mask)

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        with _cwd(self._private_dir):
            self.env.close()
        if self._private_dir:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    def _frame(self, obs: Any) -> np.ndarray:
        image = obs if self._image_key is None else obs[self._image_key]
        self.last_frame = np.asarray(image)
        return to_model_frame(self.last_frame, self.crop_rows)


@contextlib.contextmanager
def _cwd(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
