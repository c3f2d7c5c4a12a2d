#!/usr/bin/env python
"""What did the world model learn? Pictures and numbers from a trained run folder.

Example: python analyze.py dream-vs-real --logdir runs/doom --episode 3 .
Each sub-command writes PNG/GIF files to --out (default <logdir>/figures); `all` runs every analysis
whose inputs exist. `python analyze.py <what> --help` explains each analysis's flags.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from common.cli import (
    MAX_EPISODES,
    MAX_STEPS,
    MAX_WORKERS,
    ArgumentParser,
    dream_temperature,
    int_in,
    non_negative_int,
    positive_float,
    positive_int,
    run_main,
)
from common.device import DEVICE_HELP, resolve_device
from common.errors import UserError
from common.folders import ensure_writable_dir, require_dir

ANALYSES = ["reconstructions", "latents", "dream-vs-real", "mixture-weights", "committed", "training", "temperature",
            "calibration"]


def build_parser() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    common = ArgumentParser(add_help=False)
    common.add_argument("--logdir", required=True, help="run folder (rollouts/, vae/, series/, mdnrnn/, controller/)")
    common.add_argument("--out", default=None, help="folder for the figures (default: <logdir>/figures)")
    common.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed for frame picks and sampling (temperature-table: CMA-ES's seed)")
    common.add_argument("--device", default="cpu", help=DEVICE_HELP)
    common.add_argument("--vae", default=None, help="VAE checkpoint (default: <logdir>/vae/best.pt, else last.pt); "
                                                    "use the one stage 03 encoded M's training data with")
    common.add_argument("--mdnrnn", default=None, help="MDN-RNN checkpoint (default: <logdir>/mdnrnn/best.pt, "
                                                       "else last.pt)")

    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="what", required=True, metavar="<what>", parser_class=ArgumentParser)
    subs = {}

    def add(name: str, help_text: str) -> ArgumentParser:
        subs[name] = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        return subs[name]

    def episode_flag(s: ArgumentParser) -> None:
        s.add_argument("--episode", type=non_negative_int, default=0,
                       help="real episode: position in the sorted rollouts/ folder")

    def worker_flags(s: ArgumentParser) -> None:
        s.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=os.cpu_count() or 1,
                       help="real-env worker processes")
        s.add_argument("--worker_timeout", type=positive_float, default=600.0,
                       help="seconds one task of real episodes may take before its worker is replaced")
        s.add_argument("--no_progress", action="store_true", help="no progress bars")

    s = add("reconstructions", "real frames vs V's reconstructions, plus frames decoded from z ~ N(0, I) "
                               "-> reconstructions.png")
    s.add_argument("--count", type=int_in(1, 256), default=8, help="frames (columns) to show")

    s = add("latents", "which of z's dimensions V uses: per dimension, the mean posterior std and the spread of mu "
                       "over frames of the rollouts -> latents.png/.csv")
    s.add_argument("--frames", type=int_in(1, 100_000), default=1000, help="frames drawn from the rollouts")

    s = add("dream-vs-real", "warm M up on a real episode, then let it dream open-loop with the episode's actions; "
                             "real | V recon | dream | error -> dream_vs_real.png/.gif, latent error curve -> "
                             "dream_vs_real_error.png")
    episode_flag(s)
    s.add_argument("--warmup", type=positive_int, default=10, help="real latents fed to M before it dreams alone")
    s.add_argument("--steps", type=positive_int, default=100, help="open-loop steps after the warm-up (capped by "
                                                                  "the episode's length)")
    s.add_argument("--temperature", type=dream_temperature, default=0.0,
                   help="sampling temperature of the dream; 0 = M's expected next z (pi-weighted mean of the "
                        "component means): deterministic, M's best guess under squared error, so the error curve "
                        "measures the model rather than sampling noise")
    s.add_argument("--every", type=positive_int, default=10, help="PNG strip shows every n-th step")
    s.add_argument("--fps", type=positive_float, default=10.0, help="frames per second of the GIF")

    s = add("mixture-weights", "M's mixture weights pi over time (mean per component, and per z dim as a heat "
                               "map) under the frames -> mixture_weights.png (or mixture_weights_dream.png)")
    episode_flag(s)
    s.add_argument("--dream", action="store_true",
                   help="dream open-loop from the episode's first frame (with its actions) instead of "
                        "teacher-forcing M on the real episode")
    s.add_argument("--steps", type=positive_int, default=200, help="steps to show (capped by the episode)")
    s.add_argument("--temperature", type=dream_temperature, default=None,
                   help="--dream sampling temperature (default: the env's, 1.15 for doom); the weights shown are "
                        "M's own (tau 1)")
    s.add_argument("--frames", type=positive_int, default=10, help="frames shown above the charts")

    s = add("committed", "'committed' dreams: force one mixture component for every step and z dim, one row "
                         "per component, same start and noise -> committed.png (+ committed.gif)")
    episode_flag(s)
    s.add_argument("--steps", type=positive_int, default=60, help="dream steps")
    s.add_argument("--every", type=positive_int, default=6, help="show every n-th step")
    s.add_argument("--temperature", type=dream_temperature, default=1.0,
                   help="scales each component's sigma by sqrt(tau); 0 = the component's mean")
    s.add_argument("--actions", choices=["noop", "episode"], default="noop",
                   help="noop: action 0 every step; episode: the episode's own actions (then 0)")
    s.add_argument("--gif", action="store_true", help="also write committed.gif (all rows side by side)")

    s = add("training", "loss curves of V and M and CMA-ES progress of C from their CSV logs -> training_*.png")
    s.add_argument("--compare", type=Path, nargs="+", default=[], metavar="RUN",
                   help="other CarRacing run folders (e.g. a second training seed) whose CMA-ES curves join "
                        "--logdir's on the chart against the reference")

    s = add("temperature", "score the controller in the dream at each temperature and once in the real env "
                           "-> temperature.png/.csv. Unlike the paper's Table 2 (one controller trained per "
                           "temperature), this scores one fixed controller; the real score does not depend on tau")
    from analysis.temperature import PAPER_TEMPERATURES, parse_temperatures

    s.add_argument("--temperatures", type=parse_temperatures, default=PAPER_TEMPERATURES,
                   help="comma-separated dream temperatures (default: the paper's Table 2, 0.1,0.5,1,1.15,1.3)")
    s.add_argument("--dream_episodes", type=int_in(1, MAX_EPISODES), default=32, help="dream episodes per temperature")
    s.add_argument("--real_episodes", type=int_in(0, MAX_EPISODES), default=16, help="real-env episodes (0 = skip)")
    s.add_argument("--max_steps", type=int_in(1, MAX_STEPS), default=None,
                   help="episode cap (default: the env's; 2100 doom)")
    worker_flags(s)

    s = add("temperature-table", "the paper's Table 2: train one controller in the dream per temperature (stage 05 "
                                 "--mode dream, resumable), score each in the dream and in the real game beside the "
                                 "random policy -> temperature_table.png/.csv; trains, so `all` leaves it out")
    s.add_argument("--temperatures", type=parse_temperatures, default=PAPER_TEMPERATURES,
                   help="comma-separated dream temperatures (default: the paper's 0.1,0.5,1,1.15,1.3)")
    s.add_argument("--pop_size", type=int_in(2, 1024), default=32, help="CMA-ES population of each training")
    s.add_argument("--num_rollouts", type=int_in(1, 1024), default=16, help="dream episodes per candidate")
    s.add_argument("--max_generations", type=int_in(1, 100_000), default=30, help="generations per temperature")
    s.add_argument("--eval_every", type=positive_int, default=10,
                   help="evaluate the CMA mean in the dream every N generations; best.pt keeps the best")
    s.add_argument("--eval_episodes", type=int_in(1, MAX_EPISODES), default=256, help="dream episodes per evaluation")
    s.add_argument("--dream_episodes", type=int_in(2, MAX_EPISODES), default=100,
                   help="dream episodes scoring each trained controller at its own temperature")
    s.add_argument("--real_episodes", type=int_in(2, MAX_EPISODES), default=100,
                   help="real episodes per controller and for the random policy, on seeds --test_seed + i")
    s.add_argument("--test_seed", type=non_negative_int, default=0, help="first real test seed")
    s.add_argument("--max_steps", type=int_in(1, MAX_STEPS), default=None,
                   help="episode cap (default: the env's; 2100 doom)")
    worker_flags(s)

    s = add("calibration", "will a dream-trained controller transfer? Survival of fixed policies (each constant "
                           "action; the stage-01 random policy) and of the trained controller, if any, in the dream "
                           "and in the real env on the same seeds, with the dream/real ratio and a verdict "
                           "-> calibration.csv/.png")
    s.add_argument("--episodes", type=int_in(1, MAX_EPISODES), default=64,
                   help="episodes per policy, in the dream and real")
    s.add_argument("--temperature", type=dream_temperature, default=None,
                   help="dream temperature (default: the env's, 1.15 for doom)")
    s.add_argument("--max_steps", type=int_in(1, MAX_STEPS), default=None,
                   help="episode cap (default: the env's; 2100 doom)")
    s.add_argument("--dream_only", action="store_true", help="skip the real env (no ratios, no verdict)")
    from control.options import add_done_flag

    add_done_flag(s, default=None)
    s.add_argument("--no_controller", action="store_true", help="fixed policies only, even if a controller exists")
    worker_flags(s)

    s = add("all", "every analysis whose inputs exist, with default settings")
    s.add_argument("--skip", default="", help="comma-separated analyses to leave out, e.g. temperature")
    return p, subs


def run(what: str, args: argparse.Namespace) -> list[Path]:
    logdir, out, device = Path(args.logdir), Path(args.out), resolve_device(args.device)
    models = {"vae": Path(args.vae) if args.vae else None, "mdnrnn": Path(args.mdnrnn) if args.mdnrnn else None}
    if what == "reconstructions":
        from analysis.reconstructions import reconstructions
        return reconstructions(logdir, out, args.count, args.seed, device, vae=models["vae"])
    if what == "latents":
        from analysis.latents import latents
        return latents(logdir, out, args.frames, args.seed, device, vae=models["vae"])
    if what == "dream-vs-real":
        from analysis.dream_vs_real import dream_vs_real
        return dream_vs_real(logdir, out, args.episode, args.warmup, args.steps, args.temperature, args.every,
                             args.seed, device, fps=args.fps, **models)
    if what == "mixture-weights":
        from analysis.mixture import mixture_weights
        return mixture_weights(logdir, out, args.episode, args.dream, args.steps, args.temperature, args.frames,
                               args.seed, device, **models)
    if what == "committed":
        from analysis.committed import committed
        return committed(logdir, out, args.episode, args.steps, args.every, args.temperature, args.actions,
                         args.seed, device, gif=args.gif, **models)
    if what == "training":
        from analysis.training import training
        return training(logdir, out, getattr(args, "compare", []))
    if what == "calibration":
        from analysis.calibration import calibration
        return calibration(logdir, out, args.episodes, args.temperature, args.max_steps, args.seed, args.workers,
                           args.worker_timeout, device, progress=not args.no_progress, real=not args.dream_only,
                           controller=not args.no_controller, done_mode=args.done, **models)
    if what == "temperature-table":
        from analysis.temperature_table import TableScoring, TableTraining, temperature_table
        training = TableTraining(args.pop_size, args.num_rollouts, args.max_generations, args.eval_every,
                                 args.eval_episodes, args.seed)
        scoring = TableScoring(args.dream_episodes, args.real_episodes, args.test_seed, args.max_steps, args.workers,
                               args.worker_timeout)
        return temperature_table(logdir, out, args.temperatures, training, scoring, device,
                                 progress=not args.no_progress)
    from analysis.temperature import temperature
    return temperature(logdir, out, args.temperatures, args.dream_episodes, args.real_episodes, args.max_steps,
                       args.seed, args.workers, args.worker_timeout, device, progress=not args.no_progress,
                       **models)


def main() -> None:
    parser, subs = build_parser()
    args = parser.parse_args()
    logdir = require_dir(args.logdir, "--logdir")
    args.out = str(ensure_writable_dir(Path(args.out) if args.out else logdir / "figures", "--out"))
    if args.what != "all":
        for path in run(args.what, args):
            print(f"wrote {path}")
        return
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(ANALYSES)
    if unknown:
        raise UserError(f"--skip {args.skip}: unknown analyses {sorted(unknown)}; choose from {ANALYSES}")
    done = 0
    for what in ANALYSES:
        if what in skip:
            continue
        sub_args = subs[what].parse_args(["--logdir", args.logdir])
        for name in ("out", "seed", "device", "vae", "mdnrnn"):
            setattr(sub_args, name, getattr(args, name))
        try:
            paths = run(what, sub_args)
        except UserError as e:
            print(f"{what}: skipped ({e})")
            continue
        done += 1
        for path in paths:
            print(f"wrote {path}")
    if not done:
        raise UserError(f"--logdir {logdir}: no analysis had its inputs")


if __name__ == "__main__":
    run_main(main)
