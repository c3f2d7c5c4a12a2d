"""The latent-series format written by stage 03 and read by stages 04-05.

One compressed `.npz` per episode, with the same file name as the rollout it was encoded from
(`episode_<index>.npz`), holding the VAE posterior of every frame instead of the frame:

| key      | shape   | dtype   | meaning                                                                |
|----------|---------|---------|------------------------------------------------------------------------|
| `mu`     | (T, Z)  | float16 | posterior mean of frame t (the frame on which action[t] was taken)     |
| `logvar` | (T, Z)  | float16 | posterior log-variance of frame t                                      |
| `action` | (T, A)  | float32 | copied from the rollout                                                |
| `reward` | (T,)    | float32 | copied from the rollout: reward received after action[t]               |
| `done`   | (T,)    | bool    | copied from the rollout: action[t] ended the episode by termination    |
| `action_mask` | (T, A) | uint8 | only for envs with one (bin packing): the valid actions on frame t     |

The posterior is stored rather than a sample so that stage 04 can draw a fresh z = mu + exp(logvar/2)*eps
every batch (the paper's augmentation); float16 as in the reference: 256 bytes a step for Z=64,
against 12 KB for the frame. `initial_z.npz` in the same folder holds, for each episode in file-name
order, the posterior of its first frame: `mu` (N, Z) and `logvar` (N, Z) float16 plus `episode` (N,)
str file names; the dream env draws its reset states from it. `meta.json` records the env, z size,
the source rollout folder (and its meta.json) and the identity of the VAE that made the series (checkpoint
path, step and a SHA-256 of its weights), so a rerun with another VAE is refused instead of
silently mixing latents from two encoders.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from common.errors import DataError
from data.episodes import VARIABLE, EpisodeFolder, EpisodeSchema, load_episode, save_episode

SERIES_SCHEMA = EpisodeSchema(
    name="series",
    fields={
        "mu": (np.dtype(np.float16), (VARIABLE,)),
        "logvar": (np.dtype(np.float16), (VARIABLE,)),
        "action": (np.dtype(np.float32), (VARIABLE,)),
        "reward": (np.dtype(np.float32), ()),
        "done": (np.dtype(bool), ()),
        "action_mask": (np.dtype(np.uint8), (VARIABLE,)),
    },
    length_key="done",
    optional=("action_mask",),
    meta_keys=("env", "vae"),
)
INITIAL_Z_FILE = "initial_z.npz"
FLOAT16_MAX = float(np.finfo(np.float16).max)


def to_float16(x: np.ndarray) -> np.ndarray:
    """Cast to float16, clipping to its range so an extreme value becomes large, never inf."""
    return np.clip(x, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


def save_series(path: str | Path, mu: np.ndarray, logvar: np.ndarray, action: np.ndarray,
                reward: np.ndarray, done: np.ndarray, action_mask: np.ndarray | None = None) -> None:
    arrays = {"mu": to_float16(mu), "logvar": to_float16(logvar), "action": action, "reward": reward, "done": done}
    if action_mask is not None:
        arrays["action_mask"] = action_mask.astype(np.uint8)
    save_episode(path, arrays, SERIES_SCHEMA)


def save_initial_z(folder: str | Path, names: list[str], mu: np.ndarray, logvar: np.ndarray) -> Path:
    path = Path(folder) / INITIAL_Z_FILE
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mu=to_float16(mu), logvar=to_float16(logvar), episode=np.array(names, dtype=str))
    return path


def load_initial_z(folder_or_file: str | Path) -> dict[str, np.ndarray]:
    """mu (N, Z), logvar (N, Z) float16 and, when present, episode (N,) names; DataError if unusable."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / INITIAL_Z_FILE
    if path.is_file() and not zipfile.is_zipfile(path):  # else np.load's advice is about pickles
        raise DataError(f"{path}: not an .npz file (expected stage 03's initial_z.npz)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files if k in ("mu", "logvar", "episode")}
            mu, logvar = arrays["mu"], arrays["logvar"]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (stage 03 writes it after encoding every episode)") from None
    except KeyError as e:
        raise DataError(f"{path}: no {e} array, so not an initial_z file (stage 03 writes mu and logvar)") from None
    except Exception as e:  # corrupt zip, pickled data...
        raise DataError(f"{path}: corrupt or not an initial_z file ({type(e).__name__}: {e})") from None
    if mu.ndim != 2 or mu.shape != logvar.shape or not len(mu) or len(arrays.get("episode", mu)) != len(mu):
        raise DataError(f"{path}: mu {mu.shape} and logvar {logvar.shape} do not form an (N, Z) initial_z file")
    return arrays


class SeriesFolder(EpisodeFolder):
    """A stage-03 folder: latent series files (initial_z.npz excluded) plus meta.json."""

    def __init__(self, folder: str | Path, flag: str = "series folder") -> None:
        if Path(folder).is_dir() and not _episode_files(folder):
            raise DataError(f"{flag} {folder}: no series files (episode *.npz) in it; "
                            "run 03_generate_rnn_data.py first")
        super().__init__(folder, SERIES_SCHEMA, flag=flag)
        self.paths = [p for p in self.paths if p.name != INITIAL_Z_FILE]

    def first_episode_shapes(self) -> tuple[int, int]:
        """(z_size, action_size) read from the first file (validated)."""
        episode = load_episode(self.paths[0], SERIES_SCHEMA)
        return episode["mu"].shape[1], episode["action"].shape[1]


def _episode_files(folder: str | Path) -> list[Path]:
    return [p for p in Path(folder).glob("*.npz") if p.name != INITIAL_Z_FILE and not p.name.startswith(".")]
