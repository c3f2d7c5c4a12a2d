#!/usr/bin/env python
"""Stage 06: score the trained controller over N episodes (real env by default, or the dream).

Example: python 06_test_controller.py --logdir runs/doom --episodes 100
Prints every episode's score, then mean ± std (the reference's 100-episode protocol; the sample std, ddof 1,
as in the Welch line). Episode i uses seed --seed + i, so `--random` scores the random-policy baseline on exactly
the same episodes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from common.backend import add_backend_flags, backend_from_args
from common.cli import (
    MAX_EPISODES,
    MAX_STEPS,
    MAX_WORKERS,
    ArgumentParser,
    dream_temperature,
    int_in,
    non_negative_int,
    positive_float,
    run_main,
)
from common.device import DEVICE_HELP, resolve_device
from common.errors import DataError, UserError
from common.folders import check_not_file, check_output_dir
from common.recorder import video_file
from common.seeds import TEST_SEED_BASE, scoring_seeds
from common.workers import WorkerError
from control.evaluate import (
    Scores,
    ScoresSource,
    baseline_label,
    compare_on_common_seeds,
    controller_done_mode,
    controller_z_input,
    evaluate_dream,
    evaluate_real,
    file_sha256,
    load_controller,
    load_scores,
    record_dream_episode,
    record_real_episode,
    save_scores,
)
from control.options import (
    add_done_flag,
    add_world_flags,
    check_env_kwargs,
    env_name,
    real_env_kwargs,
    warn_if_seen_in_training,
    world_paths,
)
from control.real import ENVS_PER_WORKER
from control.world import best_or_last, load_world
from envs.policies import parse_policy_name, policy_names
from envs.registry import get_spec

SCORES_DIR = "scores"  # <logdir>/scores/*.csv: per-episode scores of every stage-06 run


def policy_name(text: str) -> str:
    try:
        return parse_policy_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logdir", required=True, help="experiment folder (controller/, vae/, mdnrnn/, series/)")
    p.add_argument("--controller", default=None,
                   help="controller checkpoint (default: <logdir>/controller/best.pt, else last.pt)")
    p.add_argument("--episodes", type=int_in(1, MAX_EPISODES), default=100, help="episodes to score (reference: 100)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="episode i uses seed + i")
    p.add_argument("--dream", action="store_true", help="score in the dream (M as simulator) instead")
    p.add_argument("--temperature", type=dream_temperature, default=None,
                   help="dream temperature (default: the env's; 1.15 for doom)")
    p.add_argument("--random", action="store_true",
                   help="score the random policy instead of the controller (the baseline; same seeds)")
    p.add_argument("--random_policy", type=policy_name, default=None,
                   help=f"policy for --random: {policy_names()}, or constant:A (the same action "
                        "every step, e.g. constant:-1 = always LEFT in doom) (default: the env's stage-01 policy)")
    p.add_argument("--max_steps", type=int_in(1, MAX_STEPS), default=None,
                   help="episode cap (default: the env's; 2100 doom, 1000 carracing)")
    p.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=None,
                   help="real env: parallel workers, each with V, M, C on CPU and one thread (default: one per CPU "
                        "of this machine, or of the cluster with --backend ray)")
    p.add_argument("--worker_timeout", type=positive_float, default=600.0,
                   help="seconds one task (at most 4 x --envs_per_worker episodes) may take before its worker is "
                        "replaced")
    p.add_argument("--envs_per_worker", type=int_in(1, 64), default=ENVS_PER_WORKER,
                   help="real env: episodes each worker plays at once, with one V, C and M call a step for all of "
                        f"them (default: {ENVS_PER_WORKER}); scores do not depend on it")
    p.add_argument("--record", type=video_file, default=None, metavar="FILE.gif",
                   help="also play episode 0 once more in-process and save it (.gif, or .mp4 with imageio-ffmpeg): "
                        "real = full frame | 64x64 input | V's reconstruction; dream = decoded dream")
    p.add_argument("--render", action="store_true",
                   help="play episode 0 in a window (real env; needs a display, e.g. xvfb-run) instead of scoring")
    p.add_argument("--fps", type=positive_float, default=30.0, help="frames per second of --record")
    p.add_argument("--env", default=None, help="env name (default: from the rollouts' meta.json or M's checkpoint)")
    p.add_argument("--device", default="cpu", help=f"dream only; {DEVICE_HELP}")
    add_backend_flags(p)
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_done_flag(p, default=None)
    p.epilog = "--done defaults to the rule the controller was trained with (threshold for older controllers)."
    add_world_flags(p)
    return p


def main() -> None:
    args = build_parser().parse_args()
    backend = backend_from_args(args)
    logdir = check_not_file(args.logdir, "--logdir")
    try:
        scores_dir = check_output_dir(logdir / SCORES_DIR, "--logdir")
    except UserError as e:  # a run folder one may read but not write: score anyway, say so first
        print(f"warning: {e}; this run's scores will not be saved or compared")
        scores_dir = None
    paths = world_paths(args, logdir)
    spec = get_spec(env_name(args, logdir, paths))
    temperature = spec.dream_temperature if args.temperature is None else args.temperature
    seeds = scoring_seeds(args.episodes, args.seed)
    policy = args.random_policy or spec.default_policy
    env_kwargs = real_env_kwargs(args, logdir)
    if not args.dream:
        check_env_kwargs(args, spec)
    max_steps = args.max_steps or spec.episode_steps(env_kwargs)
    if args.dream and args.random:
        raise UserError("--random scores the real env only; drop --dream")
    if args.ensemble and not args.dream:
        raise UserError("--ensemble: shapes the dream, and the game is played with --mdnrnn alone; add --dream")
    if not args.dream:
        warn_if_seen_in_training(logdir, seeds)

    params, done_mode, z_input = None, args.done or "threshold", "sample"
    path = Path(args.controller) if args.controller else best_or_last(logdir / "controller")
    # (path, sha256) of the controller scored now, or (--random) of the one whose saved scores count
    current = (str(path), file_sha256(path)) if path.is_file() else None
    if not args.random:
        world = load_world(paths, "cpu", with_vae=not args.dream or args.record is not None)
        params = load_controller(path, spec.name, world.controller.num_params)
        done_mode = args.done or controller_done_mode(path)
        z_input = controller_z_input(path)
    source = ScoresSource("dream" if args.dream else "real", policy if args.random else "controller",
                          "" if args.random else str(path), "" if args.random else current[1],
                          spec.name, spec.options_to_record(env_kwargs), max_steps,
                          done_mode if args.dream else "", temperature if args.dream else None)

    if args.render:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise UserError("--render needs a display; run under `xvfb-run -a` or use --record FILE.gif")
        score, length = record_real_episode(spec, env_kwargs, paths, params, seeds[0], max_steps, policy, None,
                                            render_mode="human", z_input=z_input)
        print(f"episode 0 (seed {seeds[0]}): score {score:.1f}, {length} steps")
        return

    try:
        if args.dream:
            result = evaluate_dream(paths, params, seeds, temperature, max_steps, resolve_device(args.device),
                                    done_mode)
        else:
            result = evaluate_real(spec, env_kwargs, None if args.random else paths, params, seeds, max_steps,
                                   args.workers, args.worker_timeout, policy, progress=not args.no_progress,
                                   backend=backend, envs_per_worker=args.envs_per_worker, z_input=z_input)
    except WorkerError as e:
        raise UserError(str(e)) from None
    print_scores(result)
    if scores_dir is not None:
        compare_with_saved(scores_dir, result, args, policy, source, current)
    if args.record:
        if args.dream:
            score, length = record_dream_episode(paths, params, seeds[0], temperature, max_steps, Path(args.record),
                                                 args.fps, done_mode)
        else:
            score, length = record_real_episode(spec, env_kwargs, paths, params, seeds[0], max_steps, policy,
                                                Path(args.record), fps=args.fps, z_input=z_input)
        print(f"recorded episode 0 (seed {seeds[0]}, score {score:.1f}, {length} steps) to {args.record}")


def scores_file(random: bool, dream: bool, policy: str, temperature: float, done_mode: str = "threshold",
                controller: str | None = None, first_seed: int = TEST_SEED_BASE, logdir: Path | None = None,
                ensemble: int = 1) -> str:
    """File name under <logdir>/scores; a --controller other than the default is named after its folder (its
    path under `logdir`, e.g. iterate_round_1_controller, so two rounds keep their own scores), and after its
    file too unless that is best.pt (so two checkpoints of one run keep theirs). Scores from another --seed
    than the test seeds' get a file of their own, so they never replace the test scores; so do dream scores in an
    ensemble of K > 1 Ms."""
    name = "controller"
    if controller is not None:
        path = Path(controller).resolve()
        folder = path.parent.name
        root = logdir.resolve() if logdir is not None else None
        if root is not None and path.is_relative_to(root):
            folder = "_".join(path.parent.relative_to(root).parts) or folder
        name = f"controller_{folder}" + ("" if path.stem == "best" else f"_{path.stem}")
    seeds = "" if first_seed == TEST_SEED_BASE else f"_seed{first_seed}"
    if dream:
        members = f"_ensemble{ensemble}" if ensemble > 1 else ""
        return f"dream_{name}_tau{temperature:g}_{done_mode}{members}{seeds}.csv"
    policy_name = policy.replace(':', '_').replace(',', '_')
    return f"real_random_{policy_name}{seeds}.csv" if random else f"real_{name}{seeds}.csv"


def compare_with_saved(folder: Path, result: Scores, args: argparse.Namespace, policy: str, source: ScoresSource,
                       current_controller: tuple[str, str] | None) -> None:
    """Save this run's scores; in the real env, test controller vs random on the seeds both have scored, if
    both files come from the same settings (and the controller side from `current_controller`)."""
    try:
        save_scores(result, folder / scores_file(args.random, args.dream, policy, source.temperature or 0.0,
                                                 source.done or "threshold", args.controller, args.seed,
                                                 Path(args.logdir), 1 + len(args.ensemble)), source)
    except OSError as e:
        print(f"warning: could not save the scores under {folder} ({e})")
        return
    if args.dream:
        return
    other_file = folder / scores_file(not args.random, False, policy, 0.0, controller=args.controller,
                                      first_seed=args.seed, logdir=Path(args.logdir))
    rerun = f"rerun {'without' if args.random else 'with'} --random and this run's other flags"
    if not other_file.exists():
        print(f"({rerun} on the same seeds to test the difference)")
        return
    label = "controller (real)" if args.random else baseline_label(policy)
    try:
        other = load_scores(other_file, label)
    except DataError as e:
        print(f"not compared: {e}")
        return
    why_not = mismatch(other, source, current_controller)
    if why_not:
        print(f"not compared with {other_file}: {why_not}; {rerun} to compare")
        return
    controller, random = (other, result) if args.random else (result, other)
    comparison = compare_on_common_seeds(controller, random)
    if comparison is not None:
        print(f"same {comparison.n_a} seeds: {comparison.line()}")
        if args.random and current_controller is None:
            print(f"(the controller side is {other.source.controller}, sha256 {other.source.controller_sha256[:12]}, "
                  "which is no longer there to check)")


def mismatch(other: Scores, source: ScoresSource, current_controller: tuple[str, str] | None) -> str:
    """Why `other`'s scores cannot be set against this run's ('' when they can)."""
    if other.source is None:
        return "the file does not record the settings that produced it (written by an older version), so it " \
               "cannot be matched"
    differences = source.differences(other.source)
    if differences:
        return ", ".join(differences)
    if other.source.policy == "controller" and current_controller is not None:
        then, (path, sha256) = other.source, current_controller
        if then.controller_sha256 != sha256:
            return (f"it scored another controller ({then.controller} sha256 {then.controller_sha256[:12]} then, "
                    f"{path} sha256 {sha256[:12]} now)")
    return ""


def print_scores(result: Scores) -> None:
    for i, (seed, score, length) in enumerate(zip(result.seeds, result.scores, result.lengths)):
        refused = "" if result.invalid is None else f"  invalid actions {int(result.invalid[i])}"
        print(f"episode {i:4d}  seed {seed:7d}  score {score:9.1f}  steps {int(length):5d}{refused}")
    print(result.summary())


if __name__ == "__main__":
    run_main(main)
