"""The paper's Table 2: one controller *trained* in the dream at each temperature, then scored in the
dream (at its own tau) and in the real game, beside the random policy on the same test seeds.

Each tau trains in `<logdir>/temperature_table/tau_<tau>/` exactly as stage 05 --mode dream would
(same state file, so a rerun continues an interrupted training and skips a finished one). Scores are
saved next to each controller with the settings that produced them and reused only while the
controller's bytes and those settings are unchanged, so rerunning the command after a kill redoes only
what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.loading import require_logdir
from common.csvlog import write_csv
from common.errors import UserError
from common.plot import line_chart
from common.seeds import TEST_SEED_BASE, scoring_seeds
from common.stats import sample_std, welch
from common.workers import WorkerError
from control.evaluate import (
    Scores,
    ScoresSource,
    evaluate_dream,
    evaluate_real,
    file_sha256,
    load_controller,
    load_scores,
    save_scores,
)
from control.options import env_kwargs_of_run
from control.train import ControllerTrainConfig, train_controller
from control.world import WorldPaths, best_or_last, load_world
from envs.registry import EnvSpec

TABLE_DIR = "temperature_table"
# Ha & Schmidhuber (2018), Table 2 (Doom): tau -> (dream mean, dream std, real mean, real std)
PAPER_TABLE2 = {0.10: (2086, 140, 193, 58), 0.50: (2060, 277, 196, 50), 1.00: (1145, 690, 868, 511),
                1.15: (918, 546, 1092, 556), 1.30: (732, 269, 753, 139)}
FIELDS = ["temperature", "generations", "dream_mean", "dream_std", "real_mean", "real_std", "real_vs_random_p",
          "paper_dream_mean", "paper_dream_std", "paper_real_mean", "paper_real_std"]


@dataclass(frozen=True)
class TableTraining:
    """CMA-ES settings shared by every tau's controller (defaults: the CPU recipe's C)."""
    pop_size: int = 32
    num_rollouts: int = 16
    max_generations: int = 30
    eval_every: int = 10
    eval_episodes: int = 256
    seed: int = 0


@dataclass(frozen=True)
class TableScoring:
    dream_episodes: int = 100
    real_episodes: int = 100
    test_seed: int = TEST_SEED_BASE  # real episode i plays seed test_seed + i (apart from every training seed)
    max_steps: int | None = None
    workers: int = 1
    worker_timeout: float = 600.0


def tau_dir(logdir: Path, tau: float) -> Path:
    return logdir / TABLE_DIR / f"tau_{tau:g}"


def temperature_table(logdir: Path, out: Path, temperatures: tuple[float, ...], training: TableTraining,
                      scoring: TableScoring, device: str = "cpu", progress: bool = True) -> list[Path]:
    logdir = require_logdir(Path(logdir))
    paths = WorldPaths.from_logdir(logdir)
    world = load_world(paths, "cpu", with_vae=False)
    spec = world.spec
    env_kwargs = env_kwargs_of_run(logdir)
    cap = scoring.max_steps or spec.episode_steps(env_kwargs)
    real_seeds = scoring_seeds(scoring.real_episodes, scoring.test_seed)
    dream_seeds = list(range(scoring.dream_episodes))
    path, source = logdir / TABLE_DIR / "real_random.csv", ScoresSource("real", spec.default_policy, "", "",
                                                                        spec.name, env_kwargs, cap)
    random = (_reuse(path, source, real_seeds)
              or _keep(_real(spec, env_kwargs, None, None, real_seeds, cap, scoring, progress), path, source))
    random.label = "random"
    rows = []
    for tau in temperatures:
        folder = tau_dir(logdir, tau)
        config = ControllerTrainConfig(mode="dream", pop_size=training.pop_size, num_rollouts=training.num_rollouts,
                                       temperature=tau, max_steps=cap, max_generations=training.max_generations,
                                       eval_every=training.eval_every, eval_episodes=training.eval_episodes,
                                       seed=training.seed)
        print(f"tau {tau:g}: training in {folder}")
        result = train_controller(config, paths, folder, env_kwargs, progress=progress, device=device)
        checkpoint = best_or_last(folder)
        params = load_controller(checkpoint, spec.name, world.controller.num_params)
        sha = file_sha256(checkpoint)
        path, source = folder / "dream_scores.csv", ScoresSource("dream", "controller", str(checkpoint), sha,
                                                                   spec.name, env_kwargs, cap, config.done_mode, tau)
        dream = (_reuse(path, source, dream_seeds)
                 or _keep(evaluate_dream(paths, params, dream_seeds, tau, cap, device, config.done_mode), path, source))
        path, source = folder / "real_scores.csv", ScoresSource("real", "controller", str(checkpoint), sha,
                                                                  spec.name, env_kwargs, cap)
        real = (_reuse(path, source, real_seeds)
                or _keep(_real(spec, env_kwargs, paths, params, real_seeds, cap, scoring, progress), path, source))
        dream.label, real.label = f"dream tau {tau:g}", f"real tau {tau:g}"
        p = _welch_p(real, random)
        print(f"tau {tau:g}: {result.generations} generations | dream {_pm(dream)} | real {_pm(real)} "
              f"vs random {_pm(random)} (Welch p {p:.2g})")
        paper = PAPER_TABLE2.get(round(tau, 2), (float("nan"),) * 4)
        rows.append({"temperature": f"{tau:g}", "generations": result.generations,
                     "dream_mean": f"{dream.scores.mean():.1f}", "dream_std": f"{sample_std(dream.scores):.1f}",
                     "real_mean": f"{real.scores.mean():.1f}", "real_std": f"{sample_std(real.scores):.1f}",
                     "real_vs_random_p": f"{p:.3g}", "paper_dream_mean": f"{paper[0]:g}",
                     "paper_dream_std": f"{paper[1]:g}", "paper_real_mean": f"{paper[2]:g}",
                     "paper_real_std": f"{paper[3]:g}"})
    rows.sort(key=lambda r: float(r["temperature"]))  # the order given is the training order; the chart needs tau's
    out.mkdir(parents=True, exist_ok=True)
    table = out / "temperature_table.csv"
    write_csv(table, FIELDS, rows)
    taus = [float(r["temperature"]) for r in rows]

    def column(name: str) -> list[float]:
        return [float(r[name]) for r in rows]

    series = {"ours: dream": (taus, column("dream_mean")), "ours: real game": (taus, column("real_mean")),
              "paper: dream": (taus, column("paper_dream_mean")), "paper: real game": (taus, column("paper_real_mean")),
              f"random policy, real ({len(real_seeds)} episodes)": (taus, [float(random.scores.mean())] * len(taus))}
    figure = out / "temperature_table.png"
    line_chart(series, figure, f"One controller trained per dream temperature: mean score in the dream and in "
                               f"the game (cap {cap})", "dream temperature tau",
               "score (steps survived)" if spec.survival_reward else "score", size=(820, 440))
    _print_table(rows, random)
    return [figure, table]


def _real(spec: EnvSpec, env_kwargs: dict, paths: WorldPaths | None, params: np.ndarray | None, seeds: list[int],
          cap: int, scoring: TableScoring, progress: bool) -> Scores:
    try:
        return evaluate_real(spec, env_kwargs, paths, params, seeds, cap, scoring.workers, scoring.worker_timeout,
                             spec.default_policy, progress=progress)
    except WorkerError as e:
        raise UserError(f"{e}; rerun to continue (finished trainings and scores are kept)") from None


def _reuse(path: Path, source: ScoresSource, seeds: list[int]) -> Scores | None:
    """Saved scores made alike (same controller bytes, settings and seeds), else None."""
    if not path.exists():
        return None
    saved = load_scores(path, path.stem)
    return saved if saved.source == source and saved.seeds == seeds else None


def _keep(result: Scores, path: Path, source: ScoresSource) -> Scores:
    save_scores(result, path, source)
    return result


def _welch_p(a: Scores, b: Scores) -> float:
    return welch(a.scores, b.scores, a.label, b.label).p


def _pm(s: Scores) -> str:
    return f"{s.scores.mean():.1f} ± {sample_std(s.scores):.1f}"


def _print_table(rows: list[dict], random: Scores) -> None:
    print(f"\n{'tau':>5} {'gens':>5} {'dream':>15} {'real':>15} {'p vs random':>11} {'paper dream':>12} "
          f"{'paper real':>11}")
    for r in rows:
        print(f"{r['temperature']:>5} {r['generations']:>5} {r['dream_mean']:>7} ± {r['dream_std']:<6}"
              f"{r['real_mean']:>7} ± {r['real_std']:<6} {r['real_vs_random_p']:>11} {r['paper_dream_mean']:>12} "
              f"{r['paper_real_mean']:>11}")
    print(f"random policy, real: {_pm(random)} over {len(random.scores)} episodes")
