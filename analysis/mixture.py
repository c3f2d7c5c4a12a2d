"""Which mixture component does M trust, and when? pi over time for a real or a dreamed sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from analysis.images import component_heatmap, every, frame_grid, save_png, stack
from analysis.loading import decode, encode, load_models, load_real_episode
from analysis.sequences import rollout
from common.plot import line_chart


def mixture_weights(logdir: Path, out: Path, episode: int = 0, dream: bool = False, steps: int = 200,
                    temperature: float | None = None, frames: int = 10, seed: int = 0, device: str = "cpu",
                    vae: Path | None = None, mdnrnn: Path | None = None) -> list[Path]:
    """Real: M teacher-forced on the encoded episode. Dream: M from the episode's first latent, open-loop
    with the episode's actions at `temperature` (default: the env's dream temperature)."""
    models = load_models(Path(logdir), device, vae_path=vae, mdnrnn_path=mdnrnn)
    data = load_real_episode(Path(logdir), episode)
    obs, actions = data["obs"], torch.from_numpy(data["action"])
    total = min(len(obs) - 1, steps) if not dream else min(len(actions), steps)
    total = max(total, 1)
    mu, _ = encode(models.vae, obs[:total + 1])
    tau = models.spec.dream_temperature if temperature is None else temperature
    generator = torch.Generator(device=mu.device).manual_seed(seed)
    context = mu[:1] if dream else mu[:total]
    result = rollout(models.mdnrnn, context, actions[:total], tau, generator)
    weights = result.logpi.exp().cpu().numpy()  # (T, Z, K): weights for predicting step t + 1
    times = np.arange(1, total + 1)
    k = weights.shape[-1]
    mean = weights.mean(1)
    what = (f"dream from episode {episode}'s first frame, tau {tau:g}" if dream
            else f"real episode {episode}, teacher-forced")
    chart = Image.new("RGB", (900, 320), "white")
    line_chart({f"component {i}": (times.tolist(), mean[:, i].tolist()) for i in range(k)}, "",
               f"Mixture weights averaged over z dims ({what})", "step (predicted)", "mean weight pi",
               image=chart, box=(0, 0, 900, 320))
    heat = component_heatmap(weights, "Per z dimension: most likely component (colour) and its weight "
                                      "(saturation)", steps=times)
    shown = decode(models.vae, result.predicted) if dream else obs[1:total + 1]
    pick = every(total, frames)
    strip = frame_grid([("dream (decoded)" if dream else "real frame", shown[pick])],
                       columns=[f"t={times[i]}" for i in pick], cell=72,
                       title=f"Mixture weights of M over time: {what}")
    path = out / ("mixture_weights_dream.png" if dream else "mixture_weights.png")
    return [save_png(stack([strip, chart, heat]), path)]
