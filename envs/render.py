"""The full-size picture of a real env (beside the 64x64 model input), for people rather than the model."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from common.errors import UserError
from envs.registry import EnvSpec


def create_with_frames(spec: EnvSpec, env_kwargs: dict | None = None) -> gym.Env:
    """The env in rgb_array mode when it has one (Doom keeps its last screen only then), else plain."""
    try:
        return spec.create(render_mode="rgb_array", **(env_kwargs or {}))
    except UserError:
        return spec.create(render_mode=None, **(env_kwargs or {}))


def full_frame(env: gym.Env) -> np.ndarray | None:
    """The env's own full-size frame (HxWx3 uint8) for the current state, or None if it shows none."""
    if getattr(env, "render_mode", None) == "rgb_array":
        frame = env.render()
        if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3:
            return frame
    frame = getattr(env.unwrapped, "last_frame", None)
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    return None
