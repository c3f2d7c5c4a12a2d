"""Stage 03 as a library: encode every rollout episode into a latent series with a trained VAE.

Streaming and resumable: episodes are decoded ahead, in order, on `loader_workers` processes (or one
thread) while the current one is encoded, each series file is written atomically under the rollout's
file name, and a rerun skips the files already there. meta.json ties the folder to one VAE (by a hash
of its weights), so latents from two encoders never mix; initial_z.npz is rebuilt from all series files
at the end. For envs with invalid actions (bin packing) each series also holds the valid-action masks
of its frames, and the mask reader the dream uses (models/mask_reader.py) is fit on them at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from common.atomic import remove_stale_temp_files
from common.errors import UserError
from data.episodes import META_FILE, load_episode, read_meta, split_by_episode, write_meta
from data.loader import episodes
from data.rollouts import ROLLOUT_SCHEMA, RolloutFolder
from data.series import (
    INITIAL_Z_FILE,
    SERIES_SCHEMA,
    save_initial_z,
    save_series,
)
from envs.registry import get_spec
from models.mask_reader import MASK_READER_FILE, fit_mask_reader, save_mask_reader
from models.vae import ConvVAE, frames_to_tensor


def find_vae_checkpoint(vae_dir: str | Path) -> Path:
    """best.pt (lowest validation loss) if stage 02 wrote one, else last.pt."""
    for name in ("best.pt", "last.pt"):
        path = Path(vae_dir) / name
        if path.is_file():
            return path
    raise UserError(f"no VAE checkpoint (best.pt or last.pt) in {vae_dir}; "
                    "run 02_train_vae.py first or pass --vae")


@torch.inference_mode()
def encode_frames(vae: ConvVAE, obs: np.ndarray, batch_size: int = 100,
                  device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mu, logvar), each (T, Z) float32, of uint8 frames (T, 64, 64, 3), batch_size at a time.

    Chunks of ~100 frames are the CPU sweet spot: ~2x the throughput of single frames, while 1000-frame
    batches overflow the caches and get slower (shared/reference/ecosystem.md).
    """
    mus, logvars = [], []
    for start in range(0, len(obs), batch_size):
        mu, logvar = vae.encode(frames_to_tensor(obs[start:start + batch_size], device))
        mus.append(mu.float().cpu().numpy())
        logvars.append(logvar.float().cpu().numpy())
    return np.concatenate(mus), np.concatenate(logvars)


@dataclass
class EncodeSummary:
    new_episodes: int = 0
    existing_episodes: int = 0
    frames: int = 0
    seconds: float = 0.0
    mask_reader: dict[str, float] | None = None  # its held-out accuracy, when one was fit

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        reader = "" if self.mask_reader is None else (
            f" | mask reader: {100 * self.mask_reader['mask_accuracy']:.1f}% of held-out masks read right "
            f"({100 * self.mask_reader['action_accuracy']:.2f}% of actions)")
        return (f"episodes: {self.new_episodes} encoded, {self.existing_episodes} already there | "
                f"frames: {self.frames} | time: {self.seconds:.1f} s ({rate:.0f} img/s){reader}")


def prepare_series_folder(savefolder: Path, rollouts: RolloutFolder, vae_identity: dict[str, Any],
                          new: bool) -> None:
    """Check (or with `new`, clear) what the folder holds, then record this run's meta.json."""
    savefolder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(savefolder)
    if new:
        clear_series_folder(savefolder)
    meta = read_meta(savefolder, SERIES_SCHEMA)
    has_files = any(savefolder.glob("episode_*.npz"))
    if meta is None and has_files:
        raise UserError(f"{savefolder} holds series files but no {META_FILE}, so their VAE is unknown; "
                        "rerun with --new to re-encode, or choose another --savefolder")
    if meta is not None:
        theirs = meta["vae"]
        if theirs.get("sha256") != vae_identity["sha256"]:
            raise UserError(f"{savefolder} holds series encoded by another VAE ({theirs.get('path')}, "
                            f"progress {theirs.get('progress')}); rerun with --new to re-encode everything "
                            "with this one, or choose another --savefolder")
        if meta.get("rollouts_meta", {}) != rollouts.meta:
            raise UserError(f"{savefolder} holds series of other rollouts ({meta.get('rollouts')}); "
                            "rerun with --new to re-encode, or choose another --savefolder")
    write_meta(savefolder, {
        "env": vae_identity["env"] if rollouts.env_name is None else rollouts.env_name,
        "z_size": vae_identity["z_size"],
        "vae": vae_identity,
        "rollouts": str(rollouts.folder.resolve()),
        "rollouts_meta": rollouts.meta,
    })


def clear_series_folder(savefolder: Path) -> None:
    """Remove only what stage 03 writes: series files, initial_z.npz, meta.json."""
    for path in savefolder.glob("episode_*.npz"):
        path.unlink()
    for name in (INITIAL_Z_FILE, META_FILE, MASK_READER_FILE):
        (savefolder / name).unlink(missing_ok=True)


def encode_rollouts(rollouts: RolloutFolder, vae: ConvVAE, vae_identity: dict[str, Any], savefolder: Path,
                    batch_size: int = 100, device: torch.device | str = "cpu", new: bool = False,
                    progress: bool = True, loader_workers: int = 0) -> EncodeSummary:
    """Encode every rollout not yet in `savefolder`, then rewrite initial_z.npz; see the module doc."""
    prepare_series_folder(savefolder, rollouts, vae_identity, new)
    todo = [p for p in rollouts.paths if not (savefolder / p.name).exists()]
    summary = EncodeSummary(existing_episodes=len(rollouts) - len(todo))
    lengths = dict(zip(rollouts.paths, rollouts.lengths())) if todo else {}
    spec = get_spec(rollouts.env_name) if rollouts.env_name else None
    read_mask = spec.frame_action_mask if spec is not None else None
    options = spec.options_of_run(rollouts.meta.get("env_kwargs", {})) if spec is not None else {}
    bar = tqdm(total=int(sum(lengths[p] for p in todo)), unit="img", desc="encode", unit_scale=True,
               disable=None if progress else True, dynamic_ncols=True)
    started = time.perf_counter()
    with bar:
        for path, episode in zip(todo, episodes(todo, ROLLOUT_SCHEMA, loader_workers, keep=False)):
            mu, logvar = encode_frames(vae, episode["obs"], batch_size, device)
            mask = read_mask(episode["obs"], options) if read_mask is not None else None
            save_series(savefolder / path.name, mu, logvar, episode["action"], episode["reward"], episode["done"],
                        mask)
            summary.new_episodes += 1
            summary.frames += len(mu)
            bar.update(len(mu))
    write_initial_z(savefolder, [p.name for p in rollouts.paths])
    if read_mask is not None and (todo or not (savefolder / MASK_READER_FILE).exists()):
        summary.mask_reader = write_mask_reader(savefolder, [p.name for p in rollouts.paths], vae_identity["sha256"])
    summary.seconds = time.perf_counter() - started
    return summary


def write_mask_reader(savefolder: Path, names: list[str], vae_sha256: str, val_fraction: float = 0.1
                      ) -> dict[str, float]:
    """Fit the mask reader on every series file (every 10th episode held out) and save it; returns its accuracy."""
    arrays: dict[str, list[np.ndarray]] = {"mu": [], "logvar": [], "action_mask": []}
    val_rows, offset = [], 0
    _, val_episodes = split_by_episode(len(names), val_fraction)
    held = set(val_episodes)
    for i, name in enumerate(names):
        episode = load_episode(savefolder / name, SERIES_SCHEMA, keys=list(arrays))
        for key in arrays:
            arrays[key].append(episode[key])
        if i in held:
            val_rows.append(np.arange(offset, offset + len(episode["mu"])))
        offset += len(episode["mu"])
    data = {k: np.concatenate(v) for k, v in arrays.items()}
    reader, stats = fit_mask_reader(data["mu"], data["logvar"], data["action_mask"],
                                    np.concatenate(val_rows) if val_rows else np.zeros(0, np.int64))
    save_mask_reader(savefolder / MASK_READER_FILE, reader, stats, vae_sha256)
    return stats


def write_initial_z(savefolder: Path, names: list[str]) -> Path:
    """Collect the first frame's posterior of each named series file into initial_z.npz (atomic)."""
    mus, logvars = [], []
    for name in names:
        episode = load_episode(savefolder / name, SERIES_SCHEMA, keys=["mu", "logvar"])
        mus.append(episode["mu"][0])
        logvars.append(episode["logvar"][0])
    return save_initial_z(savefolder, names, np.stack(mus), np.stack(logvars))
