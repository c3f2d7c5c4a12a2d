#!/usr/bin/env python
"""The whole pipeline in one command: stages 01-06 (07 in some) with a preset recipe, timed, resumable as a whole.

Example: python run_all.py --env doom --preset paper --logdir runs/paper-doom --device auto
Each finished stage appends its wall time and throughput to <logdir>/timings.csv; rerun the same
command after an interruption and it skips the finished stages and continues the interrupted one.
"""

from __future__ import annotations

from pathlib import Path

from common.cli import ArgumentParser, int_in, run_main
from common.folders import ensure_writable_dir
from common.pipeline import ENVS, PRESETS, TIMINGS_CSV, run_pipeline, stages
from common.seeds import MAX_TRAINING_SEED


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", choices=sorted(ENVS), default="doom", help="which environment's recipe")
    p.add_argument("--preset", choices=PRESETS, default="paper",
                   help="paper = the reference's scale (10,000 episodes, V 10 epochs, M the reference's budget, "
                        "C pop 64 x 16 for 200 generations; hours, meant for a GPU box); cpu = the recipe for a "
                        "2-core machine (doom: `make cpu-recipe`, ending in a round of stage 07; carracing: about "
                        "2 h 30 min, `make carracing`); demo = doom, small (2,000 episodes, a small V and M, "
                        "C in the dream), ~20 minutes on a slow 2-core machine (`make demo`); tiny = every stage "
                        "in a minute or two, to check a machine")
    p.add_argument("--seed", type=int_in(0, MAX_TRAINING_SEED), default=0,
                   help="training seed of every stage (data, V, M, C, stage 07's episodes); the test episodes stay the "
                        "same")
    p.add_argument("--logdir", default=None, help="run folder (default: runs/<preset>-<env>)")
    p.add_argument("--device", default="auto", help="passed to stages 02-05: auto, cpu or cuda")
    p.add_argument("--dry_run", action="store_true", help="print the stage commands and stop")
    return p


def main() -> None:
    args = build_parser().parse_args()
    logdir = Path(args.logdir or f"runs/{args.preset}-{args.env}")
    if args.dry_run:
        for stage in stages(args.env, args.preset, args.seed):
            print(" ".join(stage.command(logdir, args.device)[1:]))
        return
    rows = run_pipeline(args.env, args.preset, ensure_writable_dir(logdir, "--logdir"), args.device,
                        seed=args.seed)
    total = sum(float(r["seconds"]) for r in rows)
    print(f"{logdir}: {len(rows)} stages run this time, {total:.0f} s; every stage's time is in "
          f"{logdir / TIMINGS_CSV}")


if __name__ == "__main__":
    run_main(main)
