#!/usr/bin/env python
"""Stage 07: iterative training (paper §5): the controller's real episodes correct M, then a new controller.

Example: python 07_iterative_training.py --logdir runs/doom --rounds 3 --episodes 200
Needs a finished run (stages 01-05). Round K plays the current controller in the real game (a share of
episodes random), encodes them with the same V, trains M further on all episodes so far, checks the new
dream's calibration, trains a new controller in it and scores it on real seeds 0..N-1. Everything lands
in <logdir>/iterate/round_K/; a summary row per round in <logdir>/iterate/rounds.csv. Rerun the same
command to continue; raise --rounds for more.
"""

from __future__ import annotations

import os

from common.cli import (
    MAX_EPISODES,
    MAX_WORKERS,
    ArgumentParser,
    fraction,
    int_in,
    positive_float,
    positive_int,
    run_main,
)
from common.device import DEVICE_HELP, resolve_device
from common.errors import UserError
from common.folders import check_output_dir, require_dir
from common.seeds import MAX_TRAINING_SEED
from common.workers import WorkerError
from control.iterate import IterateConfig, iterate


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--logdir", required=True, help="finished run: rollouts/, vae/, series/, mdnrnn/, controller/")
    p.add_argument("--rounds", type=positive_int, default=3, help="rounds in total; a rerun continues up to this")
    p.add_argument("--episodes", type=int_in(1, MAX_EPISODES), default=200, help="real episodes collected per round")
    p.add_argument("--explore", type=fraction, default=0.3,
                   help="share of each round's episodes played by the run's random policy instead of the "
                        "controller (coverage of what the controller avoids)")
    p.add_argument("--mdnrnn_epochs", type=positive_int, default=10,
                   help="further epochs of M per round over all episodes so far (M's own batch settings)")
    p.add_argument("--generations", type=positive_int, default=50, help="CMA-ES generations per round")
    p.add_argument("--pop_size", type=int_in(2, 100_000), default=None,
                   help="CMA-ES population (default: the previous controller's)")
    p.add_argument("--num_rollouts", type=int_in(1, 100_000), default=None,
                   help="dream episodes per candidate (default: the previous controller's)")
    p.add_argument("--average_of", type=int_in(1, 64), default=None,
                   help="independent CMA-ES runs whose mean is each round's controller (05_train_controller.py "
                        "--average_of; default: the previous controller's)")
    p.add_argument("--eval_every", type=positive_int, default=10, help="score the CMA mean every N generations")
    p.add_argument("--eval_episodes", type=int_in(1, MAX_EPISODES), default=256, help="dream episodes per evaluation")
    p.add_argument("--calibration_episodes", type=int_in(0, MAX_EPISODES), default=64,
                   help="episodes per fixed policy for each round's calibration check (0 = skip)")
    p.add_argument("--test_episodes", type=int_in(0, MAX_EPISODES), default=100,
                   help="real episodes (seeds 0..N-1) scoring each round's controller (0 = skip)")
    p.add_argument("--seed", type=int_in(0, MAX_TRAINING_SEED), default=0,
                   help="the run's training seed (run_all.py's --seed): round K's episode i plays seed "
                        "K x 10,000,000 + 10,000 x seed + i, apart from every other run's; C's CMA seed stays "
                        "the run's C seed + K")
    p.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=os.cpu_count() or 1,
                   help="real-env worker processes (V, M, C on CPU, one thread each)")
    p.add_argument("--worker_timeout", type=positive_float, default=600.0,
                   help="seconds one real episode may take before its worker is replaced")
    p.add_argument("--device", default="cpu", help=f"M training and the dream; {DEVICE_HELP}")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def main() -> None:
    args = build_parser().parse_args()
    logdir = require_dir(args.logdir, "--logdir")
    check_output_dir(logdir / "iterate", "--logdir")
    config = IterateConfig(
        rounds=args.rounds, episodes=args.episodes, explore=args.explore, mdnrnn_epochs=args.mdnrnn_epochs,
        generations=args.generations, pop_size=args.pop_size, num_rollouts=args.num_rollouts,
        average_of=args.average_of,
        eval_every=args.eval_every, eval_episodes=args.eval_episodes, calibration_episodes=args.calibration_episodes,
        test_episodes=args.test_episodes, seed=args.seed, workers=args.workers,
        worker_timeout=args.worker_timeout, device=str(resolve_device(args.device)), progress=not args.no_progress)
    try:
        rows = iterate(logdir, config)
    except WorkerError as e:
        raise UserError(f"{e}; rerun to continue") from None
    for row in rows:
        real = f"{row['real_mean']} ± {row['real_std']}" if row.get("real_mean") != "" and "real_mean" in row else "-"
        check = f", {row['calibration']}" if row["calibration"] else ""
        print(f"round {row['round']}: M {row['mdnrnn_epochs']} epochs, dream eval {row['dream_eval']}, "
              f"real {real}{check}")
    print(f"{logdir / 'iterate' / 'rounds.csv'}: {args.rounds} rounds")


if __name__ == "__main__":
    run_main(main)
