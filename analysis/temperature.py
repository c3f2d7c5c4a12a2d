"""Dream score vs temperature for one trained controller, next to its real-env score.

Not the paper's Table 2: there a controller was *trained* in the dream at each temperature and then
scored in the dream and in the real env. Here one fixed controller (trained at one temperature) is scored
in the dream at each temperature, and once in the real env (its real score does not depend on tau).
The gap shows how much each temperature flatters or punishes that controller; Table 2 itself (one
training per temperature) is `analyze.py temperature-table` (analysis/temperature_table.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.loading import require_logdir
from common.cli import MAX_TEMPERATURE
from common.csvlog import write_csv
from common.errors import UserError
from common.plot import line_chart
from common.stats import sample_std
from common.workers import WorkerError
from control.evaluate import controller_z_input, evaluate_dream, evaluate_real, load_controller
from control.options import env_kwargs_of_run
from control.world import WorldPaths, best_or_last, load_world

PAPER_TEMPERATURES = (0.1, 0.5, 1.0, 1.15, 1.3)


def temperature(logdir: Path, out: Path, temperatures: tuple[float, ...] = PAPER_TEMPERATURES,
                dream_episodes: int = 32, real_episodes: int = 16, max_steps: int | None = None, seed: int = 0,
                workers: int = 1, worker_timeout: float = 600.0, device: str = "cpu",
                progress: bool = True, vae: Path | None = None, mdnrnn: Path | None = None) -> list[Path]:
    logdir = require_logdir(Path(logdir))
    paths = WorldPaths.from_logdir(logdir, vae and str(vae), mdnrnn and str(mdnrnn))
    world = load_world(paths, "cpu", with_vae=False)
    spec = world.spec
    controller = best_or_last(logdir / "controller")
    params = load_controller(controller, spec.name, world.controller.num_params)
    cap = max_steps or spec.episode_steps(env_kwargs_of_run(logdir))
    rows = []
    for tau in temperatures:
        dream = evaluate_dream(paths, params, [seed + i for i in range(dream_episodes)], tau, cap, device)
        rows.append((tau, dream.scores.mean(), sample_std(dream.scores)))
        print(f"dream tau {tau:g}: {dream.scores.mean():.1f} ± {sample_std(dream.scores):.1f} "
              f"over {dream_episodes} episodes")
    real_mean = real_std = float("nan")
    if real_episodes:
        try:
            real = evaluate_real(spec, env_kwargs_of_run(logdir), paths, params,
                                 [seed + i for i in range(real_episodes)], cap, workers,
                                 worker_timeout, spec.default_policy, progress=progress,
                                 z_input=controller_z_input(controller))
        except WorkerError as e:
            raise UserError(str(e)) from None
        real_mean, real_std = float(real.scores.mean()), sample_std(real.scores)
    print(f"\n{'tau':>6} {'dream mean':>11} {'dream std':>10} {'real mean':>10} {'real std':>9}")
    for tau, mean, std in rows:
        print(f"{tau:6g} {mean:11.1f} {std:10.1f} {real_mean:10.1f} {real_std:9.1f}")
    out.mkdir(parents=True, exist_ok=True)
    taus = [r[0] for r in rows]
    series = {f"dream mean ({dream_episodes} episodes)": (taus, [r[1] for r in rows]),
              "dream mean - std": (taus, [r[1] - r[2] for r in rows]),
              "dream mean + std": (taus, [r[1] + r[2] for r in rows])}
    if real_episodes:
        series[f"real env mean ({real_episodes} episodes, tau-independent)"] = (taus, [real_mean] * len(taus))
    line_chart(series, out / "temperature.png",
                       f"One controller scored in the dream at each temperature vs in the real env (cap {cap} "
                       "steps)", "dream temperature tau", "score (steps survived)" if spec.survival_reward
                       else "score", size=(820, 440))
    table = out / "temperature.csv"
    write_csv(table, ["temperature", "dream_mean", "dream_std", "real_mean", "real_std"],
              [{"temperature": f"{t:g}", "dream_mean": f"{m:.3f}", "dream_std": f"{s:.3f}",
                "real_mean": f"{real_mean:.3f}", "real_std": f"{real_std:.3f}"} for t, m, s in rows])
    return [out / "temperature.png", table]


def parse_temperatures(text: str) -> tuple[float, ...]:
    """'0.1,0.5,1' -> (0.1, 0.5, 1.0); each in [0, MAX_TEMPERATURE]."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v <= MAX_TEMPERATURE for v in values):
        raise argparse.ArgumentTypeError(f"temperatures must be in [0, {MAX_TEMPERATURE:g}], got {text!r}")
    return values

