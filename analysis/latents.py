"""Which of z's dimensions V uses: a used dimension has a narrow posterior that moves with the frame; an
unused one stays near the prior N(0, 1) whatever the frame, so a *sample* of z carries pure noise there.

That noise is what C reads when it acts on a sample (the reference); `05_train_controller.py --z_input mean`
feeds C and M V's mean instead (docs/notebook_carracing.md, Z1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.loading import encode, load_models, rollouts
from common.csvlog import write_csv
from common.plot import bar_chart

USED_BELOW = 0.5  # a dimension counts as used when its posterior std averages below this over the frames


def latents(logdir: Path, out: Path, frames: int = 1000, seed: int = 0, device: str = "cpu",
            vae: Path | None = None) -> list[Path]:
    """Per dimension over `frames` random frames of the rollouts: mean posterior std and the std of mu."""
    models = load_models(logdir, device, with_mdnrnn=False, vae_path=vae)
    folder = rollouts(logdir)
    rng = np.random.default_rng(seed)
    episodes = min(len(folder), -(-frames // 10))  # ~10 frames an episode: many scenes, few files to read
    picks = sorted(rng.choice(len(folder), size=episodes, replace=False).tolist())
    per_episode = -(-frames // len(picks))
    chosen = []
    for i in picks:
        obs = folder[int(i)]["obs"]
        steps = rng.choice(len(obs), size=min(per_episode, len(obs)), replace=False)
        chosen.append(obs[np.sort(steps)])
    batch = np.concatenate(chosen)[:frames]
    mu, logvar = encode(models.vae, batch)
    posterior_std = np.exp(logvar.cpu().double().numpy() / 2).mean(axis=0)
    mu_std = mu.cpu().double().numpy().std(axis=0)
    used = posterior_std < USED_BELOW
    rows = [{"dim": d, "posterior_std": f"{s:.4f}", "mu_std": f"{m:.4f}", "used": int(u)}
            for d, (s, m, u) in enumerate(zip(posterior_std, mu_std, used, strict=True))]
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "latents.csv", out / "latents.png"
    write_csv(csv_path, ["dim", "posterior_std", "mu_std", "used"], rows)
    z = len(rows)
    bar_chart([str(d) for d in range(z)], {"posterior std (mean over frames)": posterior_std.tolist(),
                                          "std of mu across frames": mu_std.tolist()},
              png_path, f"V's latents over {len(batch)} frames: {int(used.sum())} of {z} dimensions used "
                        f"(posterior std < {USED_BELOW:g})", "std", size=(max(760, 24 * z + 120), 420),
              hline=("prior std", 1.0))
    print(f"V uses {int(used.sum())} of its {z} dimensions over {len(batch)} frames (mean posterior std < "
          f"{USED_BELOW:g}): {', '.join(str(d) for d in np.flatnonzero(used))}")
    if not used.all():
        print(f"a sample of z is prior noise in the other {int((~used).sum())}; stage 05 --z_input mean feeds C "
              "and M the posterior mean instead (in the game)")
    return [csv_path, png_path]
