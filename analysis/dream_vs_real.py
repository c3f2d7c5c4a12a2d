"""How far ahead can M imagine a real episode? Warm M up on real latents, then let it dream on alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from analysis.images import FONT, frame_grid, save_png
from analysis.loading import abs_error, decode, encode, load_models, load_real_episode
from analysis.sequences import rollout
from common.errors import UserError
from common.plot import line_chart
from common.recorder import save_video, side_by_side


def dream_vs_real(logdir: Path, out: Path, episode: int = 0, warmup: int = 10, steps: int = 100,
                  temperature: float = 0.0, every: int = 10, seed: int = 0, device: str = "cpu",
                  vae: Path | None = None, mdnrnn: Path | None = None, fps: float = 10.0) -> list[Path]:
    """Encode episode `episode`, teacher-force M on its first `warmup` latents with the episode's actions,
    then roll M open-loop for up to `steps` more steps with the same actions; compare with reality."""
    models = load_models(Path(logdir), device, vae_path=vae, mdnrnn_path=mdnrnn)
    data = load_real_episode(Path(logdir), episode)
    obs, actions = data["obs"], torch.from_numpy(data["action"])
    if len(obs) < warmup + 2:
        raise UserError(f"--episode {episode} has {len(obs)} steps; need at least --warmup + 2 = {warmup + 2}")
    mu, _ = encode(models.vae, obs)
    total = min(len(obs) - 1, warmup + steps)  # M is stepped for t < total and predicts z[1..total]
    generator = torch.Generator(device=mu.device).manual_seed(seed)
    dream = rollout(models.mdnrnn, mu[:warmup], actions[:total], temperature, generator, expected=True)
    one_step = rollout(models.mdnrnn, mu[:total], actions[:total], 0.0, expected=True)  # teacher-forced
    times = np.arange(warmup, total + 1)  # the steps M imagines open-loop
    predicted = dream.predicted[warmup - 1:]  # predicted[t - 1] is z at step t
    real_mu = mu[warmup:total + 1]
    mse = ((predicted - real_mu) ** 2).mean(-1).cpu().numpy()
    mse_one = ((one_step.predicted[warmup - 1:] - real_mu) ** 2).mean(-1).cpu().numpy()
    mse_still = ((mu[warmup - 1:warmup] - real_mu) ** 2).mean(-1).cpu().numpy()
    chart = out / "dream_vs_real_error.png"
    line_chart({"open-loop dream (after warm-up)": (times.tolist(), mse.tolist()),
                "one-step prediction (teacher-forced, expected z)": (times.tolist(), mse_one.tolist()),
                "no change (last warm-up latent)": (times.tolist(), mse_still.tolist())},
               chart, f"Latent prediction error, episode {episode} (warm-up {warmup} steps, tau {temperature:g})",
               "step of the real episode", "MSE(predicted z, encoded mu)", size=(820, 420))

    real = obs[warmup:total + 1]
    recon = decode(models.vae, real_mu)
    imagined = decode(models.vae, predicted)
    error = np.stack([abs_error(r, p) for r, p in zip(real, imagined)])
    pick = list(range(0, len(times), every))
    strip = frame_grid([("real", real[pick]), ("V reconstruction", recon[pick]), ("M dream (decoded)", imagined[pick]),
                        ("|real - dream| x2", error[pick])], columns=[f"t={times[i]}" for i in pick], cell=80,
                       title=f"Episode {episode}: M warmed up on steps 0-{warmup - 1}, then dreaming open-loop with "
                             f"the episode's actions (tau {temperature:g})")
    png = save_png(strip, out / "dream_vs_real.png")
    frames = [_labelled(side_by_side([r, c, p, e], height=96), int(t))
              for t, r, c, p, e in zip(times, real, recon, imagined, error)]
    gif = save_video(frames, out / "dream_vs_real.gif", fps)
    return [png, chart, gif]


def _labelled(panels: np.ndarray, step: int) -> np.ndarray:
    image = Image.new("RGB", (panels.shape[1], panels.shape[0] + 16), "white")
    image.paste(Image.fromarray(panels), (0, 16))
    draw = ImageDraw.Draw(image)
    width = (panels.shape[1] - 12) / 4
    for i, text in enumerate(["real", "V recon", "M dream", "|error|"]):
        draw.text((i * (width + 4) + width / 2, 2), text if i else f"{text} t={step}", fill="black", font=FONT,
                  anchor="mt")
    return np.asarray(image)
