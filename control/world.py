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
from models.mdnrnn import MDNRNN


@dataclass(frozen=True)
class WorldPaths:
    vae: Path
    mdnrnn: Path
    initial_z: Path
    members: tuple[Path, ...] = ()  # an ensemble dream's other Ms (envs.dream)

    @classmethod
    def from_logdir(cls, logdir: str | Path, vae: str | None = None, mdnrnn: str | None = None,
                    initial_z: str | None = None, members: list[str] | tuple[str, ...] = ()) -> WorldPaths:
        logdir = Path(logdir)
        return cls(
            vae=Path(vae) if vae else best_or_last(logdir / "vae"),
            mdnrnn=Path(mdnrnn) if mdnrnn else best_or_last(logdir / "mdnrnn"),
            initial_z=Path(initial_z) if initial_z else logdir / "series" / "initial_z.npz",
            members=tuple(_checkpoint_of(Path(m)) for m in members),
        )


def _checkpoint_of(path: Path) -> Path:
    """A member given as a folder means its best.pt (else last.pt)."""
    return best_or_last(path) if path.is_dir() else path


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
    members = tuple(_load_member(path, paths.mdnrnn, mdnrnn, env, device) for path in paths.members)
    return WorldModel(spec, mdnrnn, mu.to(device), logvar.to(device), vae, done_mode, reader, members)


def _load_member(path: Path, first_path: Path, first: MDNRNN, env: str, device: torch.device | str) -> MDNRNN:
    """An ensemble member: another M of the same env, trained on latents of the same V."""
    member, member_env = load_mdnrnn(path, device)
    if member_env != env:
        raise DataError(f"{path}: ensemble member was trained for env {member_env!r}, {first_path} for {env!r}")
    for name in ("z_size", "action_size", "predict_done", "predict_reward"):
        if getattr(member, name) != getattr(first, name):
            raise DataError(f"{path}: ensemble member has {name} {getattr(member, name)}, {first_path} has "
                            f"{getattr(first, name)}")
    ours, theirs = getattr(member, "vae_sha256", None), getattr(first, "vae_sha256", None)
    if ours and theirs and ours != theirs:
        raise DataError(f"{path}: ensemble member was trained on another VAE's latents than {first_path}")
    return member
