"""The rollout format written by stage 01 and read by stages 02-03.

One compressed `.npz` per episode, named `episode_<index>.npz` (index i was collected with seed + i):

| key      | shape          | dtype   | meaning                                                          |
|----------|----------------|---------|------------------------------------------------------------------|
| `obs`    | (T, 64, 64, 3) | uint8   | obs[t] is the frame on which action[t] was taken                 |
| `action` | (T, A)         | float32 | the model action (canonical form; A = the env's action_dim)      |
| `reward` | (T,)           | float32 | reward received after action[t]                                  |
| `done`   | (T,)           | bool    | action[t] ended the episode by termination (death, goal); a      |
|          |                |         | time-capped (truncated) episode has no done step                  |

The frame after the final step is not stored. `meta.json` in the folder records the env, its options,
the policy and the seed, so a rerun can refuse to mix data and later stages can check what they read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import DataError, UserError
from data.episodes import VARIABLE, EpisodeFolder, EpisodeSchema, encode_episode, read_meta, save_episode
from envs.preprocess import FRAME_SHAPE

ROLLOUT_SCHEMA = EpisodeSchema(
    name="rollout",
    fields={
        "obs": (np.dtype(np.uint8), FRAME_SHAPE),
        "action": (np.dtype(np.float32), (VARIABLE,)),
        "reward": (np.dtype(np.float32), ()),
        "done": (np.dtype(bool), ()),
    },
    length_key="done",
    meta_keys=("env",),
)
_EPISODE_RE = re.compile(r"^episode_(\d+)\.(npz|skipped)$")


def episode_path(folder: str | Path, index: int) -> Path:
    return Path(folder) / f"episode_{index:06d}.npz"


def skipped_marker(folder: str | Path, index: int) -> Path:
    """Empty file recording that episode `index` was collected but too short to keep."""
    return Path(folder) / f"episode_{index:06d}.skipped"


def finished_indices(folder: str | Path) -> tuple[set[int], set[int]]:
    """(saved, skipped) episode indices already in `folder`."""
    saved, skipped = set(), set()
    for p in Path(folder).iterdir():
        m = _EPISODE_RE.match(p.name)
        if m:
            (saved if m.group(2) == "npz" else skipped).add(int(m.group(1)))
    return saved, skipped


def save_rollout(path: str | Path, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
                 done: np.ndarray) -> None:
    save_episode(path, {"obs": obs, "action": action, "reward": reward, "done": done}, ROLLOUT_SCHEMA)


def encode_rollout(obs: np.ndarray, action: np.ndarray, reward: np.ndarray, done: np.ndarray) -> bytes:
    """The bytes save_rollout would write (for a worker on another machine to send back)."""
    arrays = {"obs": obs, "action": action, "reward": reward, "done": done}
    return encode_episode(ROLLOUT_SCHEMA.validate(arrays, "rollout"))


def run_rollouts_meta(logdir: str | Path) -> dict[str, Any] | None:
    """What stage 01 recorded about a run's `<logdir>/rollouts` (env, options, policy, seed); None if absent."""
    folder = Path(logdir) / "rollouts"
    return read_meta(folder, ROLLOUT_SCHEMA) if folder.is_dir() else None


def training_seeds(folder: str | Path) -> set[int]:
    """The env seeds of the episodes collected into `folder` (kept or too short): none may be a test seed."""
    meta = read_meta(folder, ROLLOUT_SCHEMA)
    if meta is None:
        return set()
    saved, skipped = finished_indices(folder)
    return {int(meta.get("seed", 0)) + i for i in saved | skipped}


def check_meta_matches(folder: str | Path, wanted: dict[str, Any]) -> None:
    """Refuse to add episodes to a folder collected with other settings (the data would mix)."""
    meta = read_meta(folder, ROLLOUT_SCHEMA)
    if meta is None:
        return
    for key, value in wanted.items():
        if key in meta and meta[key] != value:
            raise UserError(
                f"{folder} holds rollouts made with {key}={meta[key]!r}, not {value!r}; "
                "rerun with the same flags to continue it, or choose another --store_folder"
            )


class RolloutFolder(EpisodeFolder):
    """A stage-01 folder: episode files plus the env they were made for (from meta.json)."""

    def __init__(self, folder: str | Path, flag: str = "rollout folder") -> None:
        super().__init__(folder, ROLLOUT_SCHEMA, flag=flag)

    def require_env(self, env_name: str) -> None:
        if self.env_name is not None and self.env_name != env_name:
            raise DataError(f"{self.folder}: rollouts were made for env {self.env_name!r}, "
                            f"not {env_name!r}")
