#!/usr/bin/env python
"""Stage 05: train the linear controller C by CMA-ES, in the dream (M as simulator) or in the real env.

Example: python 05_train_controller.py --logdir runs/doom --mode dream --pop_size 64 --num_rollouts 16
Rerun the same command to continue; --new_model starts over.
"""

from __future__ import annotations

from common.backend import add_backend_flags, backend_from_args
from common.cli import (
    MAX_EPISODES,
    MAX_STEPS,
    MAX_WORKERS,
    ArgumentParser,
    add_tensorboard_flag,
    dream_temperature,
    finite_float,
    float_in,
    int_in,
    non_negative_int,
    positive_float,
    positive_int,
    run_main,
)
from common.device import DEVICE_HELP, resolve_device
from common.errors import UserError
from common.folders import check_not_file, check_output_dir, ensure_writable_dir
from common.scalars import require_tensorboard
from common.workers import WorkerError
from control.agent import Z_INPUTS
from control.calibration import data_policy_of, default_check_episodes, preflight
from control.options import add_done_flag, add_world_flags, check_env_kwargs, real_env_kwargs, world_paths
from control.real import ENVS_PER_WORKER
from control.train import OLD_STATE_FILE, STATE_FILE, ControllerTrainConfig, run_folder, train_averaged
from control.world import load_world
from envs.registry import get_spec
from models.loading import load_mdnrnn

MAX_BATCH = 1_000_000  # episodes per generation (the dream holds them all at once); the paper's: 64 x 16


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logdir", required=True, help="experiment folder holding vae/, mdnrnn/, series/")
    p.add_argument("--savefolder", default=None, help="where CMA state, checkpoints and logs go "
                                                      "(default: <logdir>/controller)")
    p.add_argument("--mode", choices=["dream", "real"], default="dream",
                   help="dream: all candidates x rollouts in one batched dream rollout; real: episodes in the "
                        "real env on CPU workers, local or on a Ray cluster (the CarRacing path)")
    p.add_argument("--pop_size", type=int_in(2, 100_000), default=64, help="CMA-ES population size (paper: 64)")
    p.add_argument("--num_rollouts", type=int_in(1, 100_000), default=16,
                   help="episodes per candidate; fitness is their mean return (paper: 16)")
    p.add_argument("--sigma_init", type=float_in(0, 10, low_open=True), default=0.1,
                   help="initial CMA-ES step size (paper: 0.1)")
    p.add_argument("--temperature", type=dream_temperature, default=None,
                   help="dream temperature tau (default: the env's; 1.15 for doom as in the paper)")
    add_done_flag(p)
    p.add_argument("--max_steps", type=int_in(1, MAX_STEPS), default=None,
                   help="episode cap in steps (default: the env's; 2100 doom, 1000 carracing)")
    p.add_argument("--max_generations", type=positive_int, default=2000, help="stop after this many generations")
    p.add_argument("--eval_every", type=positive_int, default=25,
                   help="score the CMA mean on fixed seeds every N generations (and at the last)")
    p.add_argument("--eval_episodes", type=int_in(1, MAX_EPISODES), default=None,
                   help="episodes per evaluation (default: 1024 in the dream as the reference, 100 real)")
    p.add_argument("--target_return", type=finite_float, default=None, help="stop once an evaluation reaches this")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seeds CMA-ES and the rollout scenarios")
    p.add_argument("--average_of", type=int_in(1, 64), default=1,
                   help="train this many independent CMA-ES runs (seeds S, S+1, ..., each in <savefolder>/run_K) "
                        "and save the mean of their best CMA means as best.pt, a controller acting on what the runs "
                        "share; costs that many times the training. On Doom it helped on one world and not on "
                        "another (docs/notebook.md, A1 and R8) (default: 1)")
    p.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=None,
                   help="real mode (and the dream's pre-flight check): workers, each with V, M, C on CPU and one "
                        "torch thread (default: one per CPU of this machine, or of the cluster with --backend ray)")
    p.add_argument("--worker_timeout", type=positive_float, default=600.0,
                   help="real mode: seconds one task (at most 4 x --envs_per_worker episodes) may take before its "
                        "worker is replaced")
    p.add_argument("--envs_per_worker", type=int_in(1, 64), default=ENVS_PER_WORKER,
                   help="real mode: episodes each worker plays at once, with one V, C and M call a step for all "
                        f"of them (default: {ENVS_PER_WORKER}); scores do not depend on it")
    p.add_argument("--stop_after_negative", type=int_in(0, MAX_STEPS), default=0,
                   help="real mode: end a training episode after N consecutive steps of negative reward "
                        "(CarRacing: off the track or stalled; AttentionAgent used 20); evaluations of the CMA "
                        "mean and stage 06 always play whole episodes (default: 0 = never)")
    p.add_argument("--whole_episodes_from", type=non_negative_int, default=0,
                   help="with --stop_after_negative: generations from G on play whole training episodes (the early "
                        "stop makes the first generations cheap, but it never rewards finding the track again); "
                        "may be set or moved when resuming, for generations not yet played (default: 0 = never)")
    p.add_argument("--init_controller", default=None, metavar="CONTROLLER",
                   help="start the CMA-ES mean at this controller's parameters instead of zero, e.g. to go on "
                        "training a dream-trained C in the game (--mode real); it must act on this run's V and M "
                        "(default: zero, as the paper)")
    p.add_argument("--z_input", choices=sorted(Z_INPUTS), default="sample",
                   help="real mode: what C and M read from V each step; "
                        + "; ".join(f"{k}: {v}" for k, v in Z_INPUTS.items())
                        + ". Saved with the controller, so stage 06 plays it the same way (default: sample)")
    p.add_argument("--device", default="cpu", help=f"dream mode: where the batched dream runs; {DEVICE_HELP}")
    p.add_argument("--calibration_episodes", type=int_in(0, MAX_EPISODES), default=None,
                   help="dream mode, new runs: first score fixed policies (each constant action, the stage-01 "
                        "policy) this many episodes each in the dream and the real env and warn if the dream "
                        "flatters one (analyze.py calibration); 0 = skip (default: 32 for doom, else 0)")
    add_backend_flags(p)
    add_tensorboard_flag(p)
    p.add_argument("--new_model", action="store_true", help="discard saved CMA state and start over")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_world_flags(p)
    return p


def main() -> None:
    args = build_parser().parse_args()
    backend = backend_from_args(args)
    if args.tensorboard:
        require_tensorboard()
    logdir = check_not_file(args.logdir, "--logdir")
    paths = world_paths(args, logdir)
    out_flag = "--savefolder" if args.savefolder else "--logdir"
    out_dir = check_output_dir(args.savefolder or logdir / "controller", out_flag)  # created once M loads
    _, env = load_mdnrnn(paths.mdnrnn)
    spec = get_spec(env)
    check_env_kwargs(args, spec)
    temperature = spec.dream_temperature if args.temperature is None else args.temperature
    if args.whole_episodes_from and not args.stop_after_negative:
        raise UserError(f"--whole_episodes_from {args.whole_episodes_from}: only means something with "
                        "--stop_after_negative N (without it every training episode plays whole)")
    if args.ensemble and args.mode != "dream":
        raise UserError(f"--ensemble: shapes the dream, and --mode {args.mode} trains in the game with --mdnrnn "
                        "alone")
    if args.z_input != "sample" and args.mode != "real":
        raise UserError(f"--z_input {args.z_input}: what C reads from V in the game (--mode real); in the dream C "
                        "reads M's samples")
    if args.pop_size * args.num_rollouts > MAX_BATCH:
        raise UserError(f"--pop_size {args.pop_size} x --num_rollouts {args.num_rollouts} = "
                        f"{args.pop_size * args.num_rollouts:,} episodes per generation; at most {MAX_BATCH:,} "
                        "(the dream plays them as one batch)")
    config = ControllerTrainConfig(
        mode=args.mode, pop_size=args.pop_size, num_rollouts=args.num_rollouts, sigma_init=args.sigma_init,
        temperature=temperature, done_mode=args.done,
        max_steps=args.max_steps or spec.episode_steps(real_env_kwargs(args, logdir)),
        max_generations=args.max_generations, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes or (1024 if args.mode == "dream" else 100),
        target_return=args.target_return, seed=args.seed, workers=args.workers,
        worker_timeout=args.worker_timeout, envs_per_worker=args.envs_per_worker,
        stop_after_negative=args.stop_after_negative, whole_episodes_from=args.whole_episodes_from,
        init_controller=args.init_controller, z_input=args.z_input,
    )
    episodes = default_check_episodes(spec) if args.calibration_episodes is None else args.calibration_episodes
    ensure_writable_dir(out_dir, out_flag)
    first_run = out_dir if args.average_of == 1 else run_folder(out_dir, 0)
    fresh = args.new_model or not any((first_run / name).exists() for name in (STATE_FILE, OLD_STATE_FILE))
    if args.mode == "dream" and episodes and fresh:
        world = load_world(paths, resolve_device(args.device), with_vae=False, done_mode=args.done)
        preflight(world, data_policy_of(logdir, spec), temperature, config.max_steps, episodes,
                  real_env_kwargs(args, logdir), out_dir, args.workers, args.worker_timeout, backend=backend)
    try:
        result = train_averaged(config, args.average_of, paths, out_dir, real_env_kwargs(args, logdir),
                                args.new_model, progress=not args.no_progress, device=resolve_device(args.device),
                                backend=backend, tensorboard=args.tensorboard)
    except WorkerError as e:
        raise UserError(f"{e}; the last finished generation is saved, rerun to continue") from None
    what = "best eval of the CMA mean" if args.average_of == 1 else f"eval of the mean of {args.average_of} runs"
    if result.best_eval is None:
        best = "none yet"
    else:
        best = f"{result.best_eval:.1f}" + (f" (generation {result.best_generation})" if args.average_of == 1 else "")
    why = "target return reached" if result.stopped_early else f"{result.generations} generations done"
    print(f"{out_dir}: {why} | {what}: {best} | time: {result.seconds:.1f} s")


if __name__ == "__main__":
    run_main(main)
