"""Flags that stages 05 and 06 share: where V, M and the initial latents are, and the real env's options."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import json_object
from control.world import WorldPaths
from data.rollouts import run_rollouts_meta, training_seeds
from envs.dream import DONE_MODES
from envs.registry import EnvSpec, get_spec
from models.loading import load_mdnrnn


def add_world_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vae", default=None, help="VAE checkpoint (default: <logdir>/vae/best.pt, else last.pt)")
    parser.add_argument("--mdnrnn", default=None,
                        help="MDN-RNN checkpoint (default: <logdir>/mdnrnn/best.pt, else last.pt)")
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="MDNRNN",
                        help="an ensemble dream: more Ms (checkpoints, or folders meaning their best.pt) trained on "
                             "the same series with other --seed values; each dream step a member drawn at random "
                             "per episode gives the next z and the end, while C reads --mdnrnn's state, the M it "
                             "plays the game with (default: none, the dream is --mdnrnn alone)")
    parser.add_argument("--initial_z", default=None,
                        help="initial latents for dream resets (default: <logdir>/series/initial_z.npz)")
    parser.add_argument("--env_kwargs", type=json_object, default=None,
                        help="JSON options for the real env (default: those the rollouts were collected with)")


def add_done_flag(parser: argparse.ArgumentParser, default: str | None = "threshold") -> None:
    parser.add_argument("--done", choices=sorted(DONE_MODES), default=default,
                        help="how the dream decides that an episode ends: "
                             + "; ".join(f"{k}: {v}" for k, v in DONE_MODES.items()))


def world_paths(args: argparse.Namespace, logdir: Path) -> WorldPaths:
    return WorldPaths.from_logdir(logdir, args.vae, args.mdnrnn, args.initial_z, args.ensemble)


def real_env_kwargs(args: argparse.Namespace, logdir: Path) -> dict:
    return args.env_kwargs if args.env_kwargs is not None else env_kwargs_of_run(logdir)


def check_env_kwargs(args: argparse.Namespace, spec: EnvSpec) -> None:
    """Build the env once with --env_kwargs, so a bad option is one line now, not an error in every worker
    (the run's recorded options were checked by stage 01)."""
    if args.env_kwargs is not None:
        spec.create(**args.env_kwargs).close()


def env_kwargs_of_run(logdir: Path) -> dict:
    """The real env's options the run's rollouts were collected with (e.g. doom's screen_flashes)."""
    meta = run_rollouts_meta(logdir)
    if not meta:
        return {}
    return get_spec(meta["env"]).options_of_run(dict(meta.get("env_kwargs", {})))


def warn_if_seen_in_training(logdir: Path, seeds: list[int]) -> None:
    """A score on a scenario stage 01 collected is not a test score; old runs collected from seed 0."""
    folder = logdir / "rollouts"
    seen = sorted(training_seeds(folder) & set(seeds)) if folder.is_dir() else []
    if seen:
        shown = ", ".join(map(str, seen[:5])) + (", ..." if len(seen) > 5 else "")
        print(f"warning: {len(seen)} of the {len(seeds)} seeds scored ({shown}) are also episodes of {folder}; "
              "a test score needs seeds no training episode used (--seed)")


def env_name(args: argparse.Namespace, logdir: Path, paths: WorldPaths) -> str:
    """The env of this run: --env, else the rollouts' meta.json, else what M was trained for."""
    if getattr(args, "env", None):
        return args.env
    meta = run_rollouts_meta(logdir)
    if meta:
        return meta["env"]
    return load_mdnrnn(paths.mdnrnn)[1]
