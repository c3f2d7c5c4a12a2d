"""Load the trained V and M (and real initial latents) from a run folder, checking they belong together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import DataError
from data.series import load_initial_z
from envs.dream import WorldModel
from envs.registry import get_spec
from models.loading import check_same_vae, load_mdnrnn, load_vae
from models.mask_reader import MASK_READER_FILE, load_mask_reader


@dataclass(frozen=True)
class WorldPaths:
    vae: Path
    mdnrnn: Path
    initial_z: Path

    @classmethod
    def from_logdir(cls, logdir: str | Path, vae: str | None = None, mdnrnn: str | None = None,
                    initial_z: str | None = None) -> WorldPaths:
        logdir = Path(logdir)
        return cls(
            vae=Path(vae) if vae else best_or_last(logdir / "vae"),
            mdnrnn=Path(mdnrnn) if mdnrnn else best_or_last(logdir / "mdnrnn"),
            initial_z=Path(initial_z) if initial_z else logdir / "series" / "initial_z.npz",
        )


def best_or_last(folder: Path) -> Path:
    """best.pt if it exists, else last.pt (the path named in errors when neither does)."""
    best = folder / "best.pt"
    return best if best.exists() or not (folder / "last.pt").exists() else folder / "last.pt"


def load_initial_latents(path: Path, z_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 03's initial_z.npz as float32 tensors, checked against M's z size."""
    arrays = load_initial_z(path)
    if arrays["mu"].shape[1] != z_size:
        raise DataError(f"{path}: initial latents have z size {arrays['mu'].shape[1]}, M has {z_size}")
    return (torch.from_numpy(arrays["mu"].astype(np.float32)), torch.from_numpy(arrays["logvar"].astype(np.float32)))


def load_world(paths: WorldPaths, device: torch.device | str = "cpu", with_vae: bool = True,
               done_mode: str = "threshold") -> WorldModel:
    """V (optional), M and initial latents, checked to be for the same env and z size."""
    mdnrnn, env = load_mdnrnn(paths.mdnrnn, device)
    if not env:
        raise DataError(f"{paths.mdnrnn}: checkpoint does not record its env")
    spec = get_spec(env)
    vae = None
    if with_vae:
        vae, identity = load_vae(paths.vae, device)
        if identity["env"] != env:
            raise DataError(f"{paths.vae}: VAE was trained for env {identity['env']!r}, M for {env!r}")
        if vae.z_size != mdnrnn.z_size:
            raise DataError(f"{paths.vae}: VAE z size {vae.z_size} does not match M's {mdnrnn.z_size}")
        check_same_vae(vae, paths.vae, mdnrnn, paths.mdnrnn)
    mu, logvar = load_initial_latents(paths.initial_z, mdnrnn.z_size)
    if mdnrnn.action_size != spec.action_dim:
        raise DataError(f"{paths.mdnrnn}: M takes {mdnrnn.action_size} action inputs, env {env!r} has "
                        f"{spec.action_dim}")
    reader = None
    if spec.frame_action_mask is not None:
        reader_path = paths.initial_z.parent / MASK_READER_FILE
        if not reader_path.exists():
            raise DataError(f"{reader_path}: no mask reader (env {env!r} has invalid actions); rerun "
                            "03_generate_rnn_data.py, which fits it")
        reader = load_mask_reader(reader_path, device)
        if reader.vae_sha256 and reader.vae_sha256 != getattr(mdnrnn, "vae_sha256", reader.vae_sha256):
            raise DataError(f"{reader_path}: fit on another VAE's latents than {paths.mdnrnn}; rerun stage 03")
    return WorldModel(spec, mdnrnn, mu.to(device), logvar.to(device), vae, done_mode, reader)
