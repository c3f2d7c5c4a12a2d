"""'Committed' dreams: what each mixture component means, by forcing M to always use that one."""

from __future__ import annotations

from pathlib import Path

import torch

from analysis.images import frame_grid, save_png
from analysis.loading import decode, encode, load_models, load_real_episode
from analysis.sequences import Rollout, rollout
from common.errors import UserError
from common.recorder import save_video, side_by_side
from envs.controller import canonical_actions
from models.mdnrnn import MDNRNN


def committed_dream(mdnrnn: MDNRNN, z0: torch.Tensor, actions: torch.Tensor, component: int | None, tau: float,
                    seed: int = 0) -> Rollout:
    """Dream from latent z0 (Z,) with `actions` (N, A), sampling every step and z-dimension from mixture
    component `component` only (None = M's own choice, the ordinary dream). The same seed gives every
    component the same noise, so rows differ only by the component."""
    generator = torch.Generator(device=z0.device).manual_seed(seed)
    return rollout(mdnrnn, z0[None], actions, tau, generator, component=component)


def committed(logdir: Path, out: Path, episode: int = 0, steps: int = 60, every: int = 6, temperature: float = 1.0,
              actions: str = "noop", seed: int = 0, device: str = "cpu", vae: Path | None = None,
              mdnrnn: Path | None = None, gif: bool = False) -> list[Path]:
    """One row per component k (plus M's free choice) from the first frame of episode `episode`."""
    logdir = Path(logdir)
    models = load_models(logdir, device, vae_path=vae, mdnrnn_path=mdnrnn)
    data = load_real_episode(logdir, episode)
    mu, _ = encode(models.vae, data["obs"][:1])
    spec, m = models.spec, models.mdnrnn
    if actions == "noop":
        acts = canonical_actions(spec, torch.zeros(steps, spec.action_dim))
    elif actions == "episode":
        recorded = torch.from_numpy(data["action"][:steps])
        acts = torch.cat([recorded, canonical_actions(spec, torch.zeros(steps - len(recorded), spec.action_dim))])
    else:
        raise UserError(f"--actions {actions}: choose noop or episode")
    rows, videos = [], []
    pick = list(range(0, steps + 1, every))
    for k in [None, *range(m.num_mixtures)]:
        result = committed_dream(m, mu[0], acts, k, temperature, seed)
        if k is not None and not bool((result.components == k).all()):
            raise AssertionError(f"component {k} was not used throughout")  # a bug, not bad input
        frames = decode(models.vae, torch.cat([mu[:1], result.predicted]))
        label = "free (M picks\ncomponents)" if k is None else f"component {k}\nonly"
        rows.append((label, frames[pick]))
        videos.append(frames)
    title = (f"Committed dreams from episode {episode}'s first frame: {steps} steps, {actions} actions, "
             f"tau {temperature:g}, same noise per row")
    paths = [save_png(frame_grid(rows, columns=[f"t={t}" for t in pick], cell=72, title=title),
                      out / "committed.png")]
    if gif:
        paths.append(save_video([side_by_side([v[t] for v in videos], height=96) for t in range(steps + 1)],
                                out / "committed.gif", 10.0))
    return paths

