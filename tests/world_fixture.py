"""A tiny but real run folder (V, M, initial latents, rollout meta) for testing stages 05-06 quickly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.checkpoints import save_checkpoint
from data.episodes import write_meta
from models.loading import load_mdnrnn, weights_sha256
from models.mask_reader import MASK_READER_FILE, MaskReader, save_mask_reader
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE

Z_SIZE, HIDDEN = 8, 16


def make_tiny_world(logdir: Path, env: str = "doom", done_bias: float = -2.0, seed: int = 0,
                    policy: str = "sticky", env_kwargs: dict | None = None) -> Path:
    """Untrained V and M whose done head fires now and then, so dream episodes end at varied lengths.

    Bin packing also gets an untrained mask reader, and short episodes unless `env_kwargs` say otherwise.
    """
    torch.manual_seed(seed)
    action_size = {"doom": 1, "carracing": 3, "binpacking": 30}[env]
    vae = ConvVAE(Z_SIZE)
    mdnrnn = MDNRNN(Z_SIZE, action_size, HIDDEN, 5, predict_done=env == "doom", predict_reward=env == "binpacking")
    if env == "doom":
        with torch.no_grad():
            mdnrnn.head.bias[0] = done_bias
            mdnrnn.head.weight[0] *= 30  # make p(done) depend on the state (and so on the controller)
    save_checkpoint(logdir / "vae" / "best.pt", "vae", {"env": env, "z_size": Z_SIZE}, vae)
    save_checkpoint(logdir / "mdnrnn" / "best.pt", "mdnrnn", {**mdnrnn.config, "env": env}, mdnrnn,
                    extra={"vae_sha256": weights_sha256(vae.state_dict()), "data": {"skip_ahead": 1}})
    (logdir / "series").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.savez(logdir / "series" / "initial_z.npz", mu=rng.normal(size=(6, Z_SIZE)).astype(np.float16),
             logvar=np.full((6, Z_SIZE), -2.0, np.float16))
    (logdir / "rollouts").mkdir(parents=True, exist_ok=True)
    if env == "binpacking":
        save_mask_reader(logdir / "series" / MASK_READER_FILE, MaskReader(Z_SIZE, action_size, HIDDEN), {},
                         weights_sha256(vae.state_dict()))
        env_kwargs = {"preset": "b9_pp", "horizon": 20} if env_kwargs is None else env_kwargs
    write_meta(logdir / "rollouts", {"env": env, "env_kwargs": env_kwargs or {}, "policy": policy, "seed": 0})
    return logdir


def other_member(run: Path, seed: int, z_size: int | None = None) -> Path:
    """Another M for a tiny world's series (same V), as a second stage-04 seed would give."""
    first, env = load_mdnrnn(run / "mdnrnn" / "best.pt")
    torch.manual_seed(seed)
    member = MDNRNN(z_size or first.z_size, first.action_size, first.hidden_size, first.num_mixtures,
                    predict_done=first.predict_done)
    with torch.no_grad():
        member.head.bias[0] = -2.0
        member.head.weight[0] *= 30
    path = run / f"mdnrnn_m{seed}" / "best.pt"
    save_checkpoint(path, "mdnrnn", {**member.config, "env": env}, member,
                    extra={"vae_sha256": first.vae_sha256, "data": {"skip_ahead": 1}})
    return path

