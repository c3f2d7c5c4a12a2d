"""Will a controller trained in the dream transfer? Fixed policies scored in the dream and in the game.

A dream is only as good as its deaths. If holding RIGHT survives 1,000 dream steps but 165 real ones,
CMA-ES will find "hold RIGHT" in a few generations and the controller will lose to random play in the
game. This check scores reference policies that need no training, each constant action (Doom: always
LEFT / NONE / RIGHT; other envs: the centre and each face of the action box, or each discrete action)
and the stage-01 random policy, on the same seeds in the dream and in the real env, and reports the
dream/real ratio of their survival. A ratio far from 1 is a hole (>1) or an over-harsh dream (<1).

Necessary, not sufficient: a trained controller can find holes that no fixed policy shows, so when a
controller exists its own dream and real survival are reported as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.backend import LOCAL, Backend
from common.csvlog import write_csv
from common.errors import UserError
from common.plot import bar_chart
from common.stats import sample_std
from common.workers import WorkerError
from control.evaluate import Scores, evaluate_real
from control.world import WorldPaths
from data.rollouts import run_rollouts_meta
from envs.dream import WorldModel, rollout_policy, rollout_population
from envs.policies import STATE_POLICIES, constant_policy_name
from envs.registry import EnvSpec

TOLERANCE = 1.5  # a policy is calibrated when dream/real survival is within x1.5 either way
MAX_CONSTANTS = 9
DOOM_LABELS = {-1.0: "always LEFT", 0.0: "always NONE", 1.0: "always RIGHT"}
CALIBRATION_FIELDS = ["policy", "episodes", "temperature", "dream_length_mean", "dream_length_std", "real_length_mean",
                      "real_length_std", "length_ratio", "dream_return_mean", "real_return_mean", "return_ratio",
                      "calibrated"]


@dataclass(frozen=True)
class ReferencePolicy:
    label: str  # what the table shows
    policy: str  # an envs.policies name: 'sticky', 'constant:-1', ...


def reference_policies(spec: EnvSpec, data_policy: str) -> list[ReferencePolicy]:
    """Constant actions at the centre and on each face of the action box (each discrete action), + `data_policy`
    unless it reads the real env's state (bin packing's random_fit, random_mixed and baselines)."""
    low, high = np.asarray(spec.action_low, np.float64), np.asarray(spec.action_high, np.float64)
    if spec.action_kind in ("discrete", "binary"):
        constants = [np.eye(len(low))[i] for i in range(len(low))]
    else:
        mid = (low + high) / 2
        constants = [mid]
        for d in range(len(low)):
            for value in (low[d], high[d]):
                a = mid.copy()
                a[d] = value
                constants.append(a)
        if len(low) == 1:
            constants = [constants[1], constants[0], constants[2]]  # low, centre, high: left to right
    policies = []
    for a in constants[:MAX_CONSTANTS]:
        name = constant_policy_name(a)
        if spec.name == "doom":
            label = DOOM_LABELS.get(float(a[0]), name)
        else:
            label = "always " + (f"action {int(np.argmax(a))}" if spec.action_kind != "continuous"
                                 else "[" + ", ".join(f"{v:g}" for v in a) + "]")
        policies.append(ReferencePolicy(label, name))
    if data_policy not in STATE_POLICIES:  # a rule that reads the real env's state cannot play in the dream
        policies.append(ReferencePolicy(f"random ({data_policy})", data_policy))
    return policies


@dataclass
class CalibrationRow:
    label: str
    dream: Scores
    real: Scores | None
    trained: bool = False  # the controller's row, not a fixed policy's

    @property
    def ratio(self) -> float:
        """dream / real mean survival (episode length)."""
        if self.real is None or self.real.lengths.mean() == 0:
            return float("nan")
        return float(self.dream.lengths.mean() / self.real.lengths.mean())

    @property
    def return_ratio(self) -> float:
        if self.real is None or self.real.scores.mean() == 0:
            return float("nan")
        return float(self.dream.scores.mean() / self.real.scores.mean())

    @property
    def calibrated(self) -> bool:
        return math.isfinite(self.ratio) and 1 / TOLERANCE <= self.ratio <= TOLERANCE


@dataclass
class Calibration:
    rows: list[CalibrationRow]
    temperature: float
    max_steps: int
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    def fixed(self) -> list[CalibrationRow]:
        return [r for r in self.rows if not r.trained and r.real is not None]

    def verdict(self) -> str:
        """One line: calibrated, or which fixed policies the dream flatters (holes) or punishes."""
        fixed = self.fixed()
        if not fixed:
            return "no real-env episodes: dream survival only, no verdict"
        holes = [r for r in fixed if r.ratio > TOLERANCE]
        harsh = [r for r in fixed if r.ratio < 1 / TOLERANCE]
        worst = max(fixed, key=lambda r: abs(math.log(r.ratio)) if r.ratio > 0 else math.inf)
        if not holes and not harsh:
            return (f"calibrated: every fixed policy's dream survival is within x{TOLERANCE:g} of the game's "
                    f"(worst: {worst.label} x{worst.ratio:.2f})")
        parts = []
        if holes:
            parts.append("the dream flatters " + ", ".join(f"{r.label} (x{r.ratio:.2f})" for r in holes)
                         + ": a controller can learn to exploit that")
        if harsh:
            parts.append("the dream is too harsh on " + ", ".join(f"{r.label} (x{r.ratio:.2f})" for r in harsh))
        return "NOT calibrated: " + "; ".join(parts)

    def table(self) -> str:
        lines = [f"{'policy':<24} {'dream survival':>18} {'real survival':>18} {'dream/real':>10}"]
        for r in self.rows:
            real = "-" if r.real is None else f"{r.real.lengths.mean():.0f} ± {sample_std(r.real.lengths):.0f}"
            mark = "" if r.real is None else ("  ok" if r.calibrated else "  <-- off")
            lines.append(f"{r.label:<24} {r.dream.lengths.mean():>8.0f} ± {sample_std(r.dream.lengths):<7.0f} "
                         f"{real:>18} {r.ratio:>10.2f}{mark}")
        return "\n".join(lines)


def run_calibration(world: WorldModel, data_policy: str, temperature: float, max_steps: int, seeds: list[int],
                    real_env_kwargs: dict | None, workers: int | None = 1, worker_timeout: float = 600.0,
                    paths: WorldPaths | None = None, params: np.ndarray | None = None,
                    progress: bool = False, backend: Backend = LOCAL, z_input: str = "sample") -> Calibration:
    """Every reference policy (and the controller `params`, if given) in the dream, and in the game unless
    `real_env_kwargs` is None."""
    spec = world.spec
    rows = []
    for ref in reference_policies(spec, data_policy):
        returns, lengths = rollout_policy(world, ref.policy, seeds, temperature, max_steps)
        dream = Scores(f"{ref.label} (dream)", seeds, returns, lengths)
        real = None
        if real_env_kwargs is not None:
            real = _real(spec, real_env_kwargs, None, None, seeds, max_steps, workers, worker_timeout, ref.policy,
                         progress, backend)
        rows.append(CalibrationRow(ref.label, dream, real))
    if params is not None:
        returns, lengths = rollout_population(world, torch.as_tensor(params[None], dtype=torch.float32), seeds,
                                              temperature, max_steps)
        dream = Scores("controller (dream)", seeds, returns[0], lengths[0])
        real = None
        if real_env_kwargs is not None:
            real = _real(spec, real_env_kwargs, paths, params, seeds, max_steps, workers, worker_timeout,
                         data_policy, progress, backend, z_input)
        rows.append(CalibrationRow("trained controller", dream, real, trained=True))
    notes = []
    if data_policy in STATE_POLICIES:
        notes.append(f"note: the stage-01 policy {data_policy} reads the real env's state, which the dream does not "
                     "have, so it has no row; the constant actions and the controller are compared")
    return Calibration(rows, temperature, max_steps, notes)


def _real(spec: EnvSpec, env_kwargs: dict, paths: WorldPaths | None, params: np.ndarray | None, seeds: list[int],
          max_steps: int, workers: int | None, timeout: float, policy: str, progress: bool,
          backend: Backend, z_input: str = "sample") -> Scores:
    try:
        return evaluate_real(spec, env_kwargs, paths, params, seeds, max_steps, workers, timeout, policy,
                             progress=progress, backend=backend, z_input=z_input)
    except WorkerError as e:
        raise UserError(str(e)) from None


def write_calibration(result: Calibration, out: Path, title_extra: str = "") -> list[Path]:
    """calibration.csv (one row per policy) and calibration.png (dream vs real survival bars)."""
    out.mkdir(parents=True, exist_ok=True)
    table = out / "calibration.csv"
    rows = []
    for r in result.rows:
        real = r.real is not None
        rows.append({
            "policy": r.label, "episodes": len(r.dream.seeds), "temperature": f"{result.temperature:g}",
            "dream_length_mean": f"{r.dream.lengths.mean():.2f}",
            "dream_length_std": f"{sample_std(r.dream.lengths):.2f}",
            "real_length_mean": f"{r.real.lengths.mean():.2f}" if real else "",
            "real_length_std": f"{sample_std(r.real.lengths):.2f}" if real else "",
            "length_ratio": f"{r.ratio:.3f}", "dream_return_mean": f"{r.dream.scores.mean():.3f}",
            "real_return_mean": f"{r.real.scores.mean():.3f}" if real else "",
            "return_ratio": f"{r.return_ratio:.3f}", "calibrated": int(r.calibrated) if real else ""})
    write_csv(table, CALIBRATION_FIELDS, rows)
    png = out / "calibration.png"
    labels = [r.label.replace("always ", "") for r in result.rows]
    series = {f"dream (tau {result.temperature:g})": [float(r.dream.lengths.mean()) for r in result.rows],
              "real game": [float(r.real.lengths.mean()) if r.real is not None else float("nan")
                            for r in result.rows]}
    errors = {f"dream (tau {result.temperature:g})": [float(sample_std(r.dream.lengths)) for r in result.rows],
              "real game": [float(sample_std(r.real.lengths)) if r.real is not None else 0.0 for r in result.rows]}
    bar_chart(labels, series, png, f"Survival in the dream vs the game ({len(result.rows[0].dream.seeds)} "
              f"episodes each{title_extra})", "episode length (steps)", errors=errors,
              hline=(f"cap {result.max_steps}", float(result.max_steps)))
    return [table, png]


def data_policy_of(logdir: Path, spec: EnvSpec) -> str:
    """The policy stage 01 collected this run's episodes with (the env's default if unknown)."""
    meta = run_rollouts_meta(logdir)
    return (meta or {}).get("policy") or spec.default_policy


def default_check_episodes(spec: EnvSpec) -> int:
    """Stage 05's pre-flight check size: cheap for Doom (~30 s); 0 (off) where real episodes are slow."""
    return 32 if spec.name == "doom" else 0


def preflight(world: WorldModel, data_policy: str, temperature: float, max_steps: int, episodes: int,
              env_kwargs: dict, out: Path, workers: int | None, worker_timeout: float, log=print,
              backend: Backend = LOCAL) -> Calibration:
    """Stage 05, before a dream run: the fixed-policy check, its table and verdict, files in `out`."""
    seeds = list(range(episodes))
    result = run_calibration(world, data_policy, temperature, max_steps, seeds, env_kwargs, workers, worker_timeout,
                             backend=backend)
    log(f"dream calibration ({episodes} episodes per policy, tau {temperature:g}, done rule {world.done_mode}):")
    log(result.table())
    for note in result.notes:
        log(note)
    verdict = result.verdict()
    log(("warning: " if verdict.startswith("NOT") else "") + verdict)
    write_calibration(result, out, f", done {world.done_mode}")
    return result
