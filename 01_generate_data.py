#!/usr/bin/env python
"""Stage 01: random-policy rollouts from a real environment, one .npz per episode, in parallel.

Example: python 01_generate_data.py doom --total_episodes 2000 --workers 8 --logdir runs/doom
Rerun the same command to continue an interrupted run; finished episodes are never redone.
"""

from __future__ import annotations

import os

from common.backend import add_backend_flags, backend_from_args
from common.cli import (
    MAX_EPISODES,
    MAX_STEPS,
    MAX_WORKERS,
    ArgumentParser,
    default_logdir,
    int_in,
    json_object,
    non_negative_int,
    positive_float,
    run_main,
)
from common.errors import UserError
from common.folders import check_output_dir, ensure_writable_dir
from common.seeds import TRAINING_DATA_SEED
from common.workers import WorkerError
from data.collect import DEFAULT_MAX_STEPS, CollectConfig, generate
from envs.policies import POLICIES, STATE_POLICIES
from envs.registry import get_spec, known_env_names


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("env", help=f"environment: {known_env_names()}")
    p.add_argument("--total_episodes", type=int_in(1, MAX_EPISODES), default=10000,
                   help="episodes the folder should hold when done (the paper used 10,000)")
    p.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=None,
                   help="parallel workers, one single-threaded env each (default: one per CPU of this machine, "
                        "or of the whole cluster with --backend ray)")
    p.add_argument("--logdir", default=None, help="experiment folder (default: runs/<env>)")
    p.add_argument("--store_folder", default=None,
                   help="where episode files go (default: <logdir>/rollouts)")
    p.add_argument("--policy", choices=sorted(POLICIES) + list(STATE_POLICIES), default=None,
                   help="random policy: sticky = uniform action held 1-10 steps (reference Doom), "
                        "sticky_mixed = per episode either that or holds of 20-80 steps (reaches the "
                        "walls: better data for small runs), brownian = smoothly wandering actions, "
                        "uniform = a new sample every step; binpacking: random_valid = a uniformly random "
                        "valid level, or a baseline: best_fit, sum_of_squares (textbook), sum_of_squares_awslabs "
                        "(as awslabs coded it), sum_of_squares_orl (exact fit first), new_bag, or for data "
                        "random_fit (never a new bag while one fits) and random_mixed (per episode random_valid "
                        "or random_fit) "
                        "(default: the env's; sticky for doom, brownian for carracing, random_valid for binpacking)")
    p.add_argument("--seed", type=non_negative_int, default=TRAINING_DATA_SEED,
                   help="episode i uses env seed seed + i, so results do not depend on --workers (default "
                        f"{TRAINING_DATA_SEED:,}: training scenarios apart from the test seeds 0.. that stage 06 "
                        "scores)")
    p.add_argument("--max_steps", type=int_in(1, MAX_STEPS), default=None,
                   help="cap on steps per episode (default: the env's; 2100 doom, 1000 carracing, the horizon "
                        "for binpacking)")
    p.add_argument("--min_length", type=int_in(0, MAX_STEPS), default=0,
                   help="drop episodes shorter than this many steps (the reference used 100 for doom)")
    p.add_argument("--env_kwargs", type=json_object, default={},
                   help='JSON options for the env constructor, e.g. \'{"resolution": "640x480"}\' or '
                        '\'{"screen_flashes": false}\' (the hit flash, on by default) for doom, or Gymnasium '
                        "make() kwargs for other envs; recorded in the folder's meta.json with the defaults "
                        "filled in, and used again by stages 05-07 for the real env")
    p.add_argument("--episode_timeout", type=positive_float, default=600.0,
                   help="seconds one episode may take before its worker is killed and replaced")
    add_backend_flags(p)
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main() -> None:
    args = build_parser().parse_args()
    backend = backend_from_args(args)
    spec = get_spec(args.env)
    logdir = args.logdir or default_logdir(args.env)
    out_flag = "--store_folder" if args.store_folder else "--logdir"
    out_dir = check_output_dir(args.store_folder or os.path.join(logdir, "rollouts"), out_flag)
    config = CollectConfig(
        env=args.env, out_dir=str(out_dir), policy=args.policy or spec.default_policy,
        seed=args.seed, max_steps=args.max_steps or spec.episode_steps(args.env_kwargs) or DEFAULT_MAX_STEPS,
        min_length=args.min_length, env_kwargs=spec.options_to_record(args.env_kwargs),
    )
    spec.create(**args.env_kwargs).close()  # a bad env option fails here, not in every worker
    ensure_writable_dir(out_dir, out_flag)  # only now: a refused command leaves no empty folders behind
    try:
        summary = generate(config, args.total_episodes, args.workers, args.episode_timeout,
                           progress=not args.no_progress, backend=backend)
    except WorkerError as e:
        raise UserError(f"{e}; finished episodes in {out_dir} are kept, rerun to continue") from None
    print(f"{out_dir}: {summary.line()}")


if __name__ == "__main__":
    run_main(main)
