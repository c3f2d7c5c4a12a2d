"""Iterative training (paper §5) as a library: let the controller show M where its dream is wrong.

A controller trained in the dream goes where M is least sure, which random data hardly covers. Each
round plays the current controller in the real game (a share of episodes random, for coverage),
encodes those episodes with the same V, continues training M on all episodes so far, and trains a new
controller in the corrected dream. Rounds live in <logdir>/iterate/round_K/{rollouts, series, mdnrnn,
controller}; every step resumes (the stages' own resumption), so rerunning the command continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.atomic import atomic_path
from common.checkpoints import load_checkpoint
from common.csvlog import CsvLog, read_csv
from common.errors import UserError
from common.seeds import round_first_seed, scoring_seeds
from common.stats import sample_std
from control.calibration import data_policy_of, run_calibration, write_calibration
from control.collection import AgentPolicy
from control.evaluate import evaluate_real, load_controller
from control.options import env_kwargs_of_run
from control.train import ControllerTrainConfig, train_averaged
from control.world import WorldPaths, best_or_last, load_world
from data.collect import CollectConfig, generate
from data.encode import encode_rollouts
from data.rollouts import RolloutFolder
from envs.registry import EnvSpec, get_spec
from models.loading import load_vae
from training.mdnrnn import MDNTrainConfig, train_mdnrnn

SUMMARY_FIELDS = ["round", "episodes", "controller_episodes_mean_length", "mdnrnn_epochs", "mdnrnn_val_loss",
                  "dream_eval", "calibration", "real_mean", "real_std", "test_episodes"]


@dataclass(frozen=True)
class IterateConfig:
    rounds: int = 3
    episodes: int = 200  # real episodes collected per round
    explore: float = 0.3  # share of them played by the random policy
    mdnrnn_epochs: int = 10  # more epochs of M per round, over all data so far
    generations: int = 50  # CMA-ES generations per round's controller
    pop_size: int | None = None  # default: the previous controller's
    num_rollouts: int | None = None
    average_of: int | None = None  # CMA-ES runs averaged into each round's controller (default: the previous C's)
    eval_every: int = 10
    eval_episodes: int = 256
    calibration_episodes: int = 64
    test_episodes: int = 100  # real episodes (seeds 0..N-1) scoring each round's controller; 0 = skip
    seed: int = 0  # the run's training seed: moves the rounds' episode seeds as it moves stage 01's
    workers: int = 2
    worker_timeout: float = 600.0
    device: str = "cpu"
    progress: bool = True


def round_dir(logdir: Path, k: int) -> Path:
    return logdir / "iterate" / f"round_{k}"


def _controller_path(logdir: Path, k: int) -> Path:
    return best_or_last((logdir if k == 0 else round_dir(logdir, k)) / "controller")


def _mdnrnn_folder(logdir: Path, k: int) -> Path:
    return (logdir if k == 0 else round_dir(logdir, k)) / "mdnrnn"


def _load_previous_m(previous: Path) -> dict[str, Any]:
    source = previous / "last.pt"
    if not source.exists():
        raise UserError(f"{source}: no M checkpoint to continue from (run 04_train_mdnrnn.py first)")
    return load_checkpoint(source, "mdnrnn")


def _continue_from(previous: dict[str, Any], folder: Path) -> None:
    """Seed this round's M folder with the previous M's last.pt (optimizer included), unless already there.

    The best-loss record is dropped: this round validates on more episodes, so old and new losses differ.
    """
    target = folder / "last.pt"
    if target.exists():
        return  # a resumed round: stage 04 continues from it
    state = {**previous, "progress": {**previous.get("progress", {}), "best_loss": None, "best_epoch": 0}}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(state, tmp)


def collection_steps(rollouts_meta: dict[str, Any], spec: EnvSpec, env_kwargs: dict[str, Any]) -> int:
    """The step cap of a round's episodes: stage 01's, else (a run that did not record it) the env's own."""
    return int(rollouts_meta.get("max_steps") or spec.episode_steps(env_kwargs))


def base_series_folder(m_state: dict[str, Any], logdir: Path) -> Path:
    """The series folder M trained on, as its checkpoint recorded it, else the run's own: a run whose M
    recorded a path relative to another working directory (or a run folder moved since) still continues.
    """
    recorded = m_state.get("extra", {}).get("series_folder")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    return logdir / "series"


def run_round(logdir: Path, k: int, cfg: IterateConfig, log: Any = print) -> dict[str, Any]:
    """Round k (1-based): collect with C_{k-1}, encode, continue M, train C_k, calibrate, score."""
    here = round_dir(logdir, k)
    vae_path = best_or_last(logdir / "vae")
    previous_c = _controller_path(logdir, k - 1)
    previous_m = _mdnrnn_folder(logdir, k - 1)
    if not previous_c.exists():
        raise UserError(f"{previous_c}: no controller to collect with; train one with 05_train_controller.py")
    c_state = load_checkpoint(previous_c, "controller")
    c_config = c_state.get("config", {})
    env_kwargs = env_kwargs_of_run(logdir)
    rollouts_meta = RolloutFolder(logdir / "rollouts").meta or {}
    env = rollouts_meta.get("env") or c_config.get("env")
    spec = get_spec(env)
    data_policy = data_policy_of(logdir, spec)

    log(f"round {k}: collecting {cfg.episodes} real episodes with {previous_c} ({cfg.explore:.0%} random)")
    agent = AgentPolicy(str(vae_path), str(best_or_last(previous_m)), str(previous_c), cfg.explore)
    steps = collection_steps(rollouts_meta, spec, env_kwargs)
    collect = CollectConfig(env=env, out_dir=str(here / "rollouts"), policy=data_policy,
                            seed=round_first_seed(k, cfg.seed), max_steps=steps, env_kwargs=env_kwargs, agent=agent)
    (here / "rollouts").mkdir(parents=True, exist_ok=True)
    summary = generate(collect, cfg.episodes, cfg.workers, cfg.worker_timeout, cfg.progress)
    log(f"round {k}: {summary.line()}")

    vae, identity = load_vae(vae_path, torch.device(cfg.device), env)
    rollouts = RolloutFolder(here / "rollouts")
    encoded = encode_rollouts(rollouts, vae, identity, here / "series", device=cfg.device, progress=cfg.progress)
    log(f"round {k}: series {encoded.line()}")

    state = _load_previous_m(previous_m)  # its settings are this round's too
    _continue_from(state, here / "mdnrnn")
    data = state.get("extra", {}).get("data", {})
    train = state.get("extra", {}).get("train", {})
    epochs_before = int(state.get("progress", {}).get("epoch", 0))
    # every round's M trains with the run's own series as its main folder, so any of them records it
    base_series = base_series_folder(state, logdir)
    m_config = MDNTrainConfig(
        input_folder=str(base_series), savefolder=str(here / "mdnrnn"),
        extra_input_folders=tuple(str(round_dir(logdir, j) / "series") for j in range(1, k + 1)),
        epochs=epochs_before + cfg.mdnrnn_epochs, hidden=state["config"].get("hidden_size"),
        num_mixtures=state["config"].get("num_mixtures"), predict_reward=state["config"].get("predict_reward"),
        seq_len=data.get("seq_len"),
        batch_size=data.get("batch_size", 100), val_fraction=data.get("val_fraction", 0.05),
        seed=data.get("seed", 0), skip_ahead=data.get("skip_ahead", 1), lr=train.get("lr", 1e-3),
        min_lr=train.get("min_lr", 1e-5), lr_decay=train.get("lr_decay", 0.99999),
        grad_clip=train.get("grad_clip", 1.0), device=cfg.device, progress=cfg.progress)
    m_summary = train_mdnrnn(m_config, log=log)
    log(f"round {k}: {m_summary.line()}")

    paths = WorldPaths(vae_path, best_or_last(here / "mdnrnn"), base_series / "initial_z.npz")
    c_train = ControllerTrainConfig(
        mode="dream", pop_size=cfg.pop_size or int(c_config.get("pop_size", 64)),
        num_rollouts=cfg.num_rollouts or int(c_config.get("num_rollouts", 16)),
        temperature=float(c_config.get("temperature", 1.15)), done_mode=c_config.get("done_mode", "threshold"),
        max_generations=cfg.generations, eval_every=cfg.eval_every, eval_episodes=cfg.eval_episodes,
        seed=int(c_config.get("seed", 0)) + k)
    world = load_world(paths, cfg.device, with_vae=False, done_mode=c_train.done_mode)
    seeds = list(range(cfg.calibration_episodes))
    verdict = ""
    if cfg.calibration_episodes:
        calibration = run_calibration(world, data_policy, c_train.temperature,
                                      c_train.max_steps, seeds, env_kwargs, cfg.workers, cfg.worker_timeout)
        write_calibration(calibration, here / "controller", f", round {k}")
        log(calibration.table())
        verdict = calibration.verdict()
        log(f"round {k}: {verdict}")
    runs = cfg.average_of or int(c_config.get("average_of", 1))
    c_result = train_averaged(c_train, runs, paths, here / "controller", env_kwargs, progress=cfg.progress,
                              device=cfg.device, log=log)
    log(f"round {k}: controller best dream eval {c_result.best_eval}")

    row: dict[str, Any] = {"round": k, "episodes": summary.saved_total, "mdnrnn_epochs": m_config.epochs,
                           "mdnrnn_val_loss": m_summary.progress.best_loss, "dream_eval": c_result.best_eval,
                           "calibration": verdict.split(":")[0]}
    lengths = [len_ for len_, played in _agent_episode_lengths(here / "rollouts", collect.seed, agent) if played]
    row["controller_episodes_mean_length"] = round(sum(lengths) / len(lengths), 1) if lengths else ""
    if cfg.test_episodes:
        params = load_controller(best_or_last(here / "controller"), world.spec.name, world.controller.num_params)
        test_seeds = scoring_seeds(cfg.test_episodes)
        real = evaluate_real(world.spec, env_kwargs, paths, params, test_seeds, c_train.max_steps, cfg.workers,
                             cfg.worker_timeout, data_policy, progress=cfg.progress)
        row.update(real_mean=round(float(real.scores.mean()), 1), real_std=round(sample_std(real.scores), 1),
                   test_episodes=cfg.test_episodes)
        log(f"round {k}: {real.summary()}")
    return row


def _agent_episode_lengths(folder: Path, first_seed: int, agent: AgentPolicy) -> list[tuple[int, bool]]:
    """(length, played by the controller) for each collected episode, from the same coin the workers used."""
    rollouts = RolloutFolder(folder)
    return [(int(length), agent.controller_plays(first_seed + int(path.stem.split("_")[-1])))
            for path, length in zip(rollouts.paths, rollouts.lengths())]


def iterate(logdir: Path, cfg: IterateConfig, log: Any = print) -> list[dict[str, Any]]:
    """Run rounds 1..cfg.rounds, skipping finished ones (a summary row exists); see the module doc."""
    summary_path = logdir / "iterate" / "rounds.csv"
    done = {int(r["round"]) for r in read_csv(summary_path)} if summary_path.exists() else set()
    csv = None  # created with the first finished round, so a refused start leaves no file behind
    rows = []
    for k in range(1, cfg.rounds + 1):
        if k in done:
            log(f"round {k}: finished before (see {summary_path})")
            continue
        row = run_round(logdir, k, cfg, log)
        csv = csv or CsvLog(summary_path, SUMMARY_FIELDS)
        csv.append(row)
        rows.append(row)
    return rows
