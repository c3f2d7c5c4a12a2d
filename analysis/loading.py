"""Read what the analyses need from a run folder (V, M, episodes), with one-line errors for bad input."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import DataError, UserError
from control.world import best_or_last
from data.encode import encode_frames
from data.rollouts import RolloutFolder
from envs.registry import EnvSpec, get_spec
from models.loading import load_mdnrnn, load_vae, weights_sha256
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE, tensor_to_frames


def require_logdir(logdir: Path) -> Path:
    if not logdir.is_dir():
        raise UserError(f"--logdir {logdir}: no such folder")
    return logdir


@dataclass
class Models:
    spec: EnvSpec
    vae: ConvVAE
    mdnrnn: MDNRNN | None


def load_models(logdir: Path, device: torch.device | str = "cpu", with_mdnrnn: bool = True,
                vae_path: Path | None = None, mdnrnn_path: Path | None = None) -> Models:
    """V (and M), checked to belong to the same env and z size (default: <logdir>/vae, <logdir>/mdnrnn)."""
    vae_path = vae_path or best_or_last(logdir / "vae")
    vae, identity = load_vae(vae_path, device)
    env = identity["env"]
    mdnrnn = None
    if with_mdnrnn:
        warn_if_other_vae(logdir, vae, vae_path)
        path = mdnrnn_path or best_or_last(logdir / "mdnrnn")
        mdnrnn, m_env = load_mdnrnn(path, device)
        if env and m_env and env != m_env:
            raise DataError(f"{path}: M was trained for env {m_env!r}, V for {env!r}")
        if mdnrnn.z_size != vae.z_size:
            raise DataError(f"{path}: M's z size {mdnrnn.z_size} does not match V's {vae.z_size}")
        env = env or m_env
    if not env:
        raise DataError(f"{logdir / 'vae'}: checkpoint does not record its env")
    return Models(get_spec(env), vae, mdnrnn)


def warn_if_other_vae(logdir: Path, vae: ConvVAE, vae_path: Path) -> None:
    """M learnt the latent space of the VAE that encoded series/; another VAE makes its predictions look wrong."""
    meta = logdir / "series" / "meta.json"
    try:
        recorded = json.loads(meta.read_text()).get("vae", {})
    except (OSError, ValueError, AttributeError):
        return
    if recorded.get("sha256") and recorded["sha256"] != weights_sha256(vae.state_dict()):
        epoch = recorded.get("progress", {}).get("epoch", "?")
        print(f"warning: {vae_path} is not the VAE that encoded M's training data ({recorded.get('path')}, "
              f"epoch {epoch}); M's predictions are decoded and compared in another latent space "
              "(pass --vae with the VAE stage 03 used)", file=sys.stderr)


def rollouts(logdir: Path) -> RolloutFolder:
    folder = logdir / "rollouts"
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (run 01_generate_data.py first)")
    result = RolloutFolder(folder)
    if len(result) == 0:
        raise UserError(f"{folder}: holds no episodes")
    return result


def load_real_episode(logdir: Path, index: int) -> dict[str, np.ndarray]:
    """Episode `index` (position in the rollout folder's sorted list) with obs and action."""
    folder = rollouts(logdir)
    if not 0 <= index < len(folder):
        raise UserError(f"--episode {index}: {folder.folder} has episodes 0..{len(folder) - 1}")
    return folder[index]


def encode(vae: ConvVAE, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mu, logvar) of uint8 frames as float32 tensors on V's device."""
    device = next(vae.parameters()).device
    mu, logvar = encode_frames(vae, frames, device=device)
    return torch.from_numpy(mu).to(device), torch.from_numpy(logvar).to(device)


@torch.inference_mode()
def decode(vae: ConvVAE, z: torch.Tensor, batch_size: int = 100) -> np.ndarray:
    """Latents (N, Z) -> uint8 frames (N, 64, 64, 3)."""
    device = next(vae.parameters()).device
    frames = []
    for start in range(0, len(z), batch_size):
        x = vae.decode(z[start:start + batch_size].to(device).float())
        frames.append(tensor_to_frames(x))
    return np.concatenate(frames) if frames else np.zeros((0, 64, 64, 3), np.uint8)


def abs_error(real: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """|real - predicted| per pixel, averaged over colour, as a grey frame (x2 so small errors show)."""
    diff = np.abs(real.astype(np.int16) - predicted.astype(np.int16)).mean(-1) * 2
    grey = np.clip(diff, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
