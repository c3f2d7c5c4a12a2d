"""V's view of the world: real frames vs their reconstructions, and frames dreamed from the prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from analysis.images import frame_grid, save_png
from analysis.loading import decode, encode, load_models, rollouts


def reconstructions(logdir: Path, out: Path, count: int = 8, seed: int = 0, device: str = "cpu",
                    vae: Path | None = None) -> list[Path]:
    """`count` frames drawn at random from the rollouts, V(mu) of each, and decode(z ~ N(0, I))."""
    models = load_models(logdir, device, with_mdnrnn=False, vae_path=vae)
    folder = rollouts(logdir)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(folder), size=count, replace=len(folder) < count)
    frames, labels = [], []
    for i in picks:
        obs = folder[int(i)]["obs"]
        t = int(rng.integers(len(obs)))
        frames.append(obs[t])
        labels.append(f"ep {i} t {t}")
    frames = np.stack(frames)
    mu, _ = encode(models.vae, frames)
    recon = decode(models.vae, mu)
    generator = torch.Generator().manual_seed(seed)
    prior = decode(models.vae, torch.randn(count, models.vae.z_size, generator=generator))
    mse = float((((frames.astype(np.float32) - recon.astype(np.float32)) / 255) ** 2).mean())
    image = frame_grid([("real frame", frames), ("V reconstruction\n(decode mu)", recon),
                        ("sample from prior\n(decode z~N(0,I))", prior)],
                       columns=labels, title=f"VAE: real vs reconstructed (pixel MSE {mse:.4f}) and prior samples")
    return [save_png(image, out / "reconstructions.png")]
