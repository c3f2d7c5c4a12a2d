"""Stage 05 as a library: CMA-ES on the controller's parameters, in the dream or in the real env.

Fitness of a candidate is its mean return over `num_rollouts` episodes. All candidates of a generation
share the same `num_rollouts` scenario seeds (common random numbers): the ranking then compares
controllers on identical scenarios, which matters more to CMA-ES than the spread of scenarios within a
generation. (The reference shared each seed between pairs of candidates.) Seeds change every generation.

Every `eval_every` generations the CMA mean (what the reference evaluated and saved) is scored on fixed
seeds; `best.pt` keeps the best such mean. The CMA state is saved after every generation, so rerunning
the same command continues where a killed run stopped.

The state file is the commit point of a generation: it is written last and carries everything a resume
needs (the run's settings, time, best eval), so a kill between any two writes leaves the previous
generation committed and the rerun redoes the one that was cut short, writing the same files again.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from common.backend import LOCAL, Backend
from common.checkpoints import load_checkpoint, save_checkpoint
from common.csvlog import CsvLog, drop_rows_after, read_csv
from common.errors import DataError, UserError
from common.plot import line_chart
from common.scalars import ScalarMirror
from common.seeds import eval_seeds, generation_seeds
from common.stats import sample_std
from control.cmaes import CMAES
from control.evaluate import load_controller
from control.real import ENVS_PER_WORKER, agent_episodes, init_worker
from control.world import WorldPaths, best_or_last, load_world
from envs.dream import WorldModel, rollout_population
from models.loading import weights_sha256

STATE_FILE = "es_state.npz"
OLD_STATE_FILE = "es_state.pkl"  # pickled by versions before 2026-12; no longer loaded
LOG_FIELDS = ["generation", "seconds", "mean_fitness", "min_fitness", "max_fitness", "std_fitness",
              "sigma", "rms_stdev", "mean_length", "eval_score", "eval_std", "best_eval", "frames"]


@dataclass(frozen=True)
class ControllerTrainConfig:
    mode: str = "dream"
    pop_size: int = 64
    num_rollouts: int = 16
    sigma_init: float = 0.1
    temperature: float = 1.15
    done_mode: str = "threshold"  # envs.dream.DONE_MODES
    max_steps: int = 2100
    max_generations: int = 2000
    eval_every: int = 25
    eval_episodes: int = 1024
    target_return: float | None = None
    seed: int = 0
    workers: int | None = None  # real mode; None: one per CPU (of the Ray cluster with the ray backend)
    worker_timeout: float = 600.0
    envs_per_worker: int = ENVS_PER_WORKER  # real mode: episodes a worker plays at once (one V/M/C call a step)
    stop_after_negative: int = 0  # real mode: end a training episode after N steps of negative reward (0 = never)
    whole_episodes_from: int = 0  # with stop_after_negative: generations >= this play whole episodes (0 = never)
    init_controller: str | None = None  # a controller checkpoint whose parameters are the CMA mean at the start
    z_input: str = "sample"  # real mode: what C and M read from V (control.agent.Z_INPUTS)

    def identity(self) -> dict[str, Any]:
        """Settings a resumed run must share with the saved one."""
        identity = {"mode": self.mode, "pop_size": self.pop_size, "num_rollouts": self.num_rollouts,
                    "seed": self.seed}
        if self.stop_after_negative:  # recorded only when used, so runs from before the rule resume
            identity["stop_after_negative"] = self.stop_after_negative
        if self.whole_episodes_from:
            identity["whole_episodes_from"] = self.whole_episodes_from
        if self.z_input != "sample":  # likewise; stage 06 and play read it from the controller's checkpoint
            identity["z_input"] = self.z_input
        return identity

    def stops_early(self, generation: int) -> bool:
        """Whether this generation's training episodes may be cut by the early stop."""
        return bool(self.stop_after_negative) and not 0 < self.whole_episodes_from <= generation


class DreamEvaluator:
    """Whole population x rollouts in one batched dream rollout."""

    def __init__(self, world: WorldModel, temperature: float, max_steps: int) -> None:
        self.world, self.temperature, self.max_steps = world, temperature, max_steps

    def __call__(self, params: np.ndarray, seeds: list[int],
                 may_stop_early: bool = True) -> tuple[np.ndarray, np.ndarray]:
        tensor = torch.as_tensor(params, dtype=torch.float32)
        return rollout_population(self.world, tensor, seeds, self.temperature, self.max_steps)

    def close(self) -> None:
        pass


class RealEvaluator:
    """Episodes on a pool of CPU workers holding V and M (local or Ray), each playing K envs at once.

    Episodes may stop early (`stop_after_negative`) where the caller allows it (training generations before
    `whole_episodes_from`); evaluations of the CMA mean always run whole.
    """

    def __init__(self, env: str, env_kwargs: dict, paths: WorldPaths, max_steps: int, workers: int | None,
                 timeout: float, backend: Backend = LOCAL, envs_per_worker: int = ENVS_PER_WORKER,
                 stop_after_negative: int = 0, z_input: str = "sample") -> None:
        self.max_steps, self.slots, self.stop_after_negative = max_steps, envs_per_worker, stop_after_negative
        self.pool = backend.pool(workers, init_worker,
                                 (env, env_kwargs, backend.ship(paths.vae), backend.ship(paths.mdnrnn),
                                  envs_per_worker, z_input),
                                 task_timeout=timeout)

    def __call__(self, params: np.ndarray, seeds: list[int],
                 may_stop_early: bool = True) -> tuple[np.ndarray, np.ndarray]:
        episodes = agent_episodes(self.pool, np.repeat(params, len(seeds), axis=0), list(seeds) * len(params),
                                  self.max_steps, self.slots, self.stop_after_negative if may_stop_early else 0)
        returns = np.array([e.score for e in episodes]).reshape(len(params), len(seeds))
        lengths = np.array([e.length for e in episodes], np.float64).reshape(len(params), len(seeds))
        return returns, lengths

    def close(self) -> None:
        self.pool.close()


@dataclass
class TrainResult:
    generations: int
    best_eval: float | None
    best_generation: int | None
    seconds: float
    stopped_early: bool


def _controller_record(world: WorldModel, config: ControllerTrainConfig, env: str,
                       x0: np.ndarray | None) -> dict[str, Any]:
    record = {"env": env, **world.controller.to_dict(), "num_params": world.controller.num_params,
              "z_size": world.mdnrnn.z_size, "hidden_size": world.mdnrnn.hidden_size,
              "temperature": config.temperature, "done_mode": config.done_mode, **config.identity()}
    if world.members:  # recorded only when used, so runs from before ensembles resume
        record["ensemble"] = 1 + len(world.members)
    if x0 is not None:  # likewise; the weights' hash, not the path, so a moved file still resumes
        record["init_from"] = weights_sha256({"params": torch.from_numpy(x0)})
    return record


def train_controller(config: ControllerTrainConfig, paths: WorldPaths, out_dir: Path, env_kwargs: dict,
                     new_model: bool = False, progress: bool = True, device: str | torch.device = "cpu",
                     backend: Backend = LOCAL, tensorboard: bool = False) -> TrainResult:
    world = load_world(paths, device if config.mode == "dream" else "cpu", with_vae=config.mode == "real",
                       done_mode=config.done_mode)
    env = world.spec.name
    x0 = (None if config.init_controller is None
          else load_controller(Path(config.init_controller), env, world.controller.num_params))
    record = _controller_record(world, config, env, x0)
    state_path, last_path, best_path = out_dir / STATE_FILE, out_dir / "last.pt", out_dir / "best.pt"
    log_path = out_dir / "log.csv"
    if new_model:
        _discard_run(out_dir)

    best_eval, best_generation, seconds_before, frames = None, None, 0.0, 0
    if state_path.exists():
        es, saved = CMAES.load(state_path, world.controller.num_params)
        _check_same_run(state_path, saved.get("record"), record, es.generation)
        progress = saved.get("progress") or {}
        seconds_before = float(progress.get("seconds", 0.0))
        frames = int(progress.get("frames", 0))
        best_eval, best_generation = progress.get("best_eval"), progress.get("best_generation")
        drop_rows_after(log_path, "generation", es.generation)
    elif (out_dir / OLD_STATE_FILE).exists():
        raise DataError(f"{out_dir / OLD_STATE_FILE}: a CMA-ES state pickled by an older version, which is not "
                        "loaded (a pickle can run code); use --new_model to start over")
    else:
        es = CMAES(world.controller.num_params, config.sigma_init, config.pop_size, config.seed, x0)
    scalars = ScalarMirror(out_dir, "generation", next_step=es.generation + 1) if tensorboard else None
    log = CsvLog(log_path, LOG_FIELDS, mirror=scalars)

    bar = tqdm(total=config.max_generations, initial=es.generation, unit="gen", desc=f"CMA-ES ({config.mode})",
               disable=None if progress else True, dynamic_ncols=True)
    evaluator = _evaluator(config, world, paths, env_kwargs, backend)
    started = time.perf_counter()
    stopped_early = False
    try:
        while es.generation < config.max_generations:
            generation = es.generation + 1
            solutions = es.ask()
            returns, lengths = evaluator(solutions, generation_seeds(config.seed, generation, config.num_rollouts),
                                         may_stop_early=config.stops_early(generation))
            fitness = returns.mean(axis=1)
            frames += int(lengths.sum())
            es.tell(solutions, fitness)
            row: dict[str, Any] = {
                "generation": generation, "mean_fitness": float(fitness.mean()),
                "min_fitness": float(fitness.min()), "max_fitness": float(fitness.max()),
                "std_fitness": sample_std(fitness), "sigma": es.sigma, "rms_stdev": es.rms_stdev,
                "mean_length": float(lengths.mean()),
            }
            if generation % config.eval_every == 0 or generation == config.max_generations:
                scores, eval_lengths = evaluator(es.mean[None], eval_seeds(config.eval_episodes),
                                                 may_stop_early=False)
                frames += int(eval_lengths.sum())
                row["eval_score"], row["eval_std"] = float(scores.mean()), sample_std(scores)
                if best_eval is None or row["eval_score"] > best_eval:
                    best_eval, best_generation = row["eval_score"], generation
                    save_checkpoint(best_path, "controller", record, {"params": torch.as_tensor(es.mean)},
                                    progress={"generation": generation, "eval_score": best_eval,
                                              "eval_std": row["eval_std"], "eval_episodes": config.eval_episodes})
            seconds = seconds_before + time.perf_counter() - started
            row.update(seconds=seconds, best_eval="" if best_eval is None else best_eval, frames=frames)
            log.append(row)
            progress = {"generation": generation, "seconds": seconds, "best_eval": best_eval,
                        "best_generation": best_generation, "frames": frames}
            save_checkpoint(last_path, "controller", record, {"params": torch.as_tensor(es.mean)}, progress=progress)
            es.save(state_path, {"record": record, "progress": progress})  # the commit point: written last
            plot_progress(log_path, out_dir / "progress.png")
            bar.update(1)
            bar.set_postfix(mean=f"{row['mean_fitness']:.1f}", max=f"{row['max_fitness']:.1f}",
                            best_eval="-" if best_eval is None else f"{best_eval:.1f}", refresh=False)
            if config.target_return is not None and "eval_score" in row and row["eval_score"] >= config.target_return:
                stopped_early = True
                break
    finally:
        evaluator.close()
        bar.close()
        if scalars is not None:
            scalars.close()
    return TrainResult(es.generation, best_eval, best_generation,
                       seconds_before + time.perf_counter() - started, stopped_early)


def _discard_run(out_dir: Path) -> None:
    for name in (STATE_FILE, OLD_STATE_FILE, "last.pt", "best.pt", "log.csv", "progress.png"):
        (out_dir / name).unlink(missing_ok=True)


def run_folder(out_dir: Path, k: int) -> Path:
    """Where run k of an averaged controller trains (`train_averaged`)."""
    return out_dir / f"run_{k}"


def train_averaged(config: ControllerTrainConfig, runs: int, paths: WorldPaths, out_dir: Path, env_kwargs: dict,
                   new_model: bool = False, progress: bool = True, device: str | torch.device = "cpu",
                   backend: Backend = LOCAL, tensorboard: bool = False, log: Any = print) -> TrainResult:
    """`runs` independent CMA-ES searches (seeds seed, seed+1, ..., each in out_dir/run_k), then out_dir/best.pt
    holds the mean of their best CMA means, scored on the runs' evaluation seeds. One run is `train_controller`.

    Why: linear controllers trained in one dream from other seeds come out nearly orthogonal (cosine ~0.03 over
    Doom's 1,088 weights). They share the few directions the dream rewards and differ in many it ignores, which
    still move the action in the game, whose latents the dream only approximates. Their mean keeps what they
    share and shrinks the rest. Measured on Doom (docs/notebook.md): +102 in the game on one world (A1), none on
    another (R8), so it is an option to try, not a default.
    A rerun continues unfinished runs and re-averages only when a run has changed.
    """
    if new_model:  # run folders this average will not use belong to an older one (one run trains at the top)
        for folder in out_dir.glob("run_*"):
            if folder.is_dir() and folder.name[4:].isdigit() and (runs == 1 or int(folder.name[4:]) >= runs):
                shutil.rmtree(folder)
    if runs == 1:
        if not new_model and run_folder(out_dir, 0).is_dir():
            raise UserError(f"{out_dir}: holds an averaged controller ({run_folder(out_dir, 0).name}/ ...); "
                            "use --average_of as it was trained, or --new_model to start over")
        return train_controller(config, paths, out_dir, env_kwargs, new_model, progress, device, backend,
                                tensorboard)
    if new_model:
        _discard_run(out_dir)
    elif (out_dir / STATE_FILE).exists():
        raise UserError(f"{out_dir}: holds a single CMA-ES run ({STATE_FILE}); use --average_of 1 to continue it, "
                        "or --new_model to start over")
    results, sources = [], []
    for k in range(runs):
        seed = config.seed + k
        log(f"run {k + 1} of {runs} (seed {seed}): {run_folder(out_dir, k)}")
        result = train_controller(replace(config, seed=seed), paths, run_folder(out_dir, k), env_kwargs, new_model,
                                  progress, device, backend, tensorboard)
        results.append(result)
        sources.append({"seed": seed, "generations": result.generations, "best_eval": result.best_eval,
                        "best_generation": result.best_generation})
    best_path = out_dir / "best.pt"
    started = time.perf_counter()  # the runs count their own time (resumes included); this is the mean's
    if best_path.exists() and not new_model:
        saved = load_checkpoint(best_path, "controller")
        if saved.get("progress", {}).get("runs") == json.loads(json.dumps(sources)):
            log(f"{best_path}: the average of these {runs} runs, as before")
            return _averaged_result(saved["progress"].get("eval_score"), results, time.perf_counter() - started)
    states = [load_checkpoint(best_or_last(run_folder(out_dir, k)), "controller") for k in range(runs)]
    mean = torch.stack([s["model"]["params"].double() for s in states]).mean(dim=0)
    world = load_world(paths, device if config.mode == "dream" else "cpu", with_vae=config.mode == "real",
                       done_mode=config.done_mode)
    evaluator = _evaluator(config, world, paths, env_kwargs, backend)
    try:
        scores, _ = evaluator(mean.numpy()[None], eval_seeds(config.eval_episodes), may_stop_early=False)
    finally:
        evaluator.close()
    record = {**states[0]["config"], "seed": config.seed, "average_of": runs}
    save_checkpoint(best_path, "controller", record, {"params": mean.float()},
                    progress={"eval_score": float(scores.mean()), "eval_std": sample_std(scores),
                              "eval_episodes": config.eval_episodes, "runs": sources})
    runs_evals = ", ".join("-" if r.best_eval is None else f"{r.best_eval:.1f}" for r in results)
    log(f"{best_path}: the mean of {runs} runs' best CMA means scores {float(scores.mean()):.1f} on the "
        f"evaluation seeds (the runs' own: {runs_evals})")
    return _averaged_result(float(scores.mean()), results, time.perf_counter() - started)


def _averaged_result(eval_score: float | None, results: list[TrainResult], seconds: float) -> TrainResult:
    return TrainResult(min(r.generations for r in results), eval_score, None,
                       sum(r.seconds for r in results) + seconds, any(r.stopped_early for r in results))


def _evaluator(config: ControllerTrainConfig, world: WorldModel, paths: WorldPaths, env_kwargs: dict,
               backend: Backend) -> Any:
    if config.mode == "dream":
        return DreamEvaluator(world, config.temperature, config.max_steps)
    return RealEvaluator(world.spec.name, env_kwargs, paths, config.max_steps, config.workers, config.worker_timeout,
                         backend, config.envs_per_worker, config.stop_after_negative, config.z_input)


# Settings a record holds only when they differ from these defaults (so runs saved before them still resume);
# a resume compares them both ways, with the default standing in for a missing entry.
_RECORDED_WHEN_USED: dict[str, Any] = {"stop_after_negative": 0, "ensemble": 1, "init_from": None,
                                        "z_input": "sample"}


def _check_same_run(path: Path, saved: Any, record: dict[str, Any], generation: int) -> None:
    """A resume must use the settings the saved run was trained with (compared as JSON, as saved).

    The one exception is `whole_episodes_from`, which may change as long as the generations already played
    (1..generation) keep the rule they were played with: it only decides how later generations play.
    """
    expected = json.loads(json.dumps(record))
    if not isinstance(saved, dict):
        raise DataError(f"{path}: has no record of the run's settings; use --new_model to start over")

    def first_whole(settings: dict[str, Any]) -> int:
        return min(settings.get("whole_episodes_from") or generation + 1, generation + 1)

    # two of _RECORDED_WHEN_USED have messages of their own; the loop below checks every recorded setting
    if saved.get("ensemble", 1) != expected.get("ensemble", 1):
        raise DataError(f"{path}: the saved run trained in a dream of {saved.get('ensemble', 1)} M(s), this run "
                        f"has {expected.get('ensemble', 1)} (--ensemble); use --new_model to start over")
    if saved.get("init_from") != expected.get("init_from"):
        def start(settings: dict[str, Any]) -> str:
            return f"the controller {settings['init_from']}" if settings.get("init_from") else "zero"
        raise DataError(f"{path}: the saved run started its CMA mean from {start(saved)}, this run from "
                        f"{start(expected)} (--init_controller); use --new_model to start over")
    for key in [*expected, *(k for k in _RECORDED_WHEN_USED if k not in expected)]:
        if key == "whole_episodes_from":
            continue
        default = _RECORDED_WHEN_USED.get(key)
        was, wants = saved.get(key, default), expected.get(key, default)
        if was != wants:
            raise DataError(f"{path}: the saved run has {key}={was!r}, this run needs {key}={wants!r}; "
                            "use --new_model to start over")
    if first_whole(saved) != first_whole(expected):
        raise DataError(f"{path}: generations 1-{generation} were played with whole_episodes_from="
                        f"{saved.get('whole_episodes_from', 0)}; --whole_episodes_from may only change generations "
                        f"not yet played (> {generation}), or use --new_model to start over")


def plot_progress(log_path: Path, png_path: Path) -> None:
    rows = read_csv(log_path)
    if not rows:
        return
    gens = [float(r["generation"]) for r in rows]
    series = {name: (gens, [float(r[key]) for r in rows])
              for name, key in (("mean fitness", "mean_fitness"), ("max fitness", "max_fitness"))}
    evals = [(float(r["generation"]), float(r["eval_score"])) for r in rows if r.get("eval_score")]
    if evals:
        series["eval (CMA mean)"] = ([g for g, _ in evals], [s for _, s in evals])
    line_chart(series, png_path, "controller training (CMA-ES)", "generation", "return")
