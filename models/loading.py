"""Trained V and M from their checkpoint files, and the check that they belong together.

M only understands the latents of the V that encoded its training series, so every M records a hash of
that V's weights and a loader refuses any other V.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from common.checkpoints import load_checkpoint, load_state_dict_checked
from common.errors import DataError
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE, VAEConfig


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """A hash of the weights alone, so the same VAE is recognised wherever its file lives."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_vae(path: str | Path, device: torch.device | str = "cpu", env: str | None = None,
             ) -> tuple[ConvVAE, dict[str, Any]]:
    """The VAE of a stage-02 checkpoint (refused if `env` is given and it was trained for another) and its
    identity: path, weights hash, env (None if unrecorded), z size and training progress."""
    path = Path(path)
    hint = "pass a VAE trained on these rollouts with --vae"
    state = load_checkpoint(path, "vae", expect=None if env is None else {"env": env}, hint=hint)
    config = state.get("config", {})
    if env is not None and "env" not in config:
        raise DataError(f"{path}: VAE checkpoint does not say which env it was trained on")
    try:
        vae = ConvVAE.from_config({k: config[k] for k in VAEConfig.__dataclass_fields__})
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: VAE checkpoint config {config!r} is unusable ({e})") from None
    load_state_dict_checked(vae, state, path)
    identity = {
        "path": str(path.resolve()),
        "sha256": weights_sha256(state["model"]),
        "env": config.get("env"),
        "z_size": vae.z_size,
        "progress": state.get("progress", {}),
    }
    return vae.to(device).eval(), identity


def load_mdnrnn(path: Path, device: torch.device | str = "cpu", env: str | None = None) -> tuple[MDNRNN, str]:
    """M of a stage-04 checkpoint and the env it was trained for ("" if unrecorded); only a next-step M."""
    state = load_checkpoint(path, "mdnrnn", expect={"env": env} if env else None)
    config = dict(state["config"])
    env_name = config.pop("env", "")
    try:
        model = MDNRNN.from_config(config)
    except TypeError as e:
        raise DataError(f"{path}: checkpoint config does not describe an MDN-RNN ({e})") from None
    load_state_dict_checked(model, state, path)
    model.vae_sha256 = state.get("extra", {}).get("vae_sha256")  # the V whose latents M learned from
    skip_ahead = state.get("extra", {}).get("data", {}).get("skip_ahead", 1)
    if skip_ahead != 1:
        raise DataError(f"{path}: M was trained with --skip_ahead {skip_ahead}; the dream and the controller "
                        "need a next-step model (--skip_ahead 1)")
    return model.to(device).eval(), env_name


def check_same_vae(vae: ConvVAE, vae_path: Path, mdnrnn: MDNRNN, mdnrnn_path: Path) -> None:
    """Refuse a V other than the one whose latents M was trained on."""
    trained_on = getattr(mdnrnn, "vae_sha256", None)
    if trained_on and trained_on != weights_sha256(vae.state_dict()):
        raise DataError(f"{vae_path}: not the VAE whose latents {mdnrnn_path} was trained on (retrained since?); "
                        "pass the matching --vae, or rerun stages 03-04 with this one")
