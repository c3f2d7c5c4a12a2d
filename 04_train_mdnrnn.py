#!/usr/bin/env python
"""Stage 04: train the MDN-RNN (M) on the latent series, streamed from disk with bounded memory.

Example: python 04_train_mdnrnn.py --logdir runs/doom --epochs 20 --num_mixtures 5
Rerun the same command to continue an interrupted run (mid-epoch too); --new_model starts over.
Writes <savefolder>/last.pt, best.pt (lowest validation loss) and losses.csv.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from common.cli import (
    ArgumentParser,
    add_training_flags,
    decay,
    float_in,
    fraction,
    int_in,
    non_negative_float,
    non_negative_int,
    positive_int,
    run_main,
)
from common.errors import UserError
from common.folders import check_output_dir
from training.mdnrnn import DEFAULT_SEQ_LEN, ENV_SEQ_LEN, MDNTrainConfig, train_mdnrnn


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logdir", default=None,
                   help="experiment folder holding series/ (required unless --input_data_folder and --savefolder)")
    p.add_argument("--input_data_folder", default=None, help="series from stage 03 (default: <logdir>/series)")
    p.add_argument("--extra_input_folders", nargs="+", default=(), metavar="FOLDER",
                   help="more series folders encoded by the same VAE to train on as well (e.g. the episodes of "
                        "iterative training rounds); each is split into train/validation episodes the same way")
    p.add_argument("--savefolder", default=None, help="where checkpoints and logs go (default: <logdir>/mdnrnn)")
    p.add_argument("--epochs", type=positive_int, default=20,
                   help="passes over the training episodes in total; a rerun continues up to this many (the paper "
                        "says 20, which is its CarRacing text; its Doom code ran 400 epochs of 61 steps, ~24k Adam "
                        "steps of 100 x 500 timesteps)")
    p.add_argument("--num_mixtures", type=int_in(1, 256), default=None,
                   help="Gaussians per z dimension (default: the env's; 5 as in the paper)")
    p.add_argument("--hidden", type=int_in(1, 8192), default=None,
                   help="LSTM size (default: the env's; doom 512, carracing 256)")
    p.add_argument("--seq_len", type=positive_int, default=None,
                   help=f"input steps per training sequence; longer episodes are cut into several (default: "
                        f"{DEFAULT_SEQ_LEN} as the reference's Doom M, "
                        + ", ".join(f"{k} {v}" for k, v in ENV_SEQ_LEN.items()) + " = whole episodes)")
    p.add_argument("--batch_size", type=positive_int, default=100, help="sequences per Adam step (paper: 100)")
    p.add_argument("--lr", type=float_in(0, 1, low_open=True), default=1e-3,
                   help="initial Adam learning rate (paper: 1e-3)")
    p.add_argument("--min_lr", type=non_negative_float, default=1e-5,
                   help="learning rate floor: lr(step) = (lr - min_lr) * lr_decay**step + min_lr (paper: 1e-5)")
    p.add_argument("--lr_decay", type=decay, default=0.99999,
                   help="per-step learning rate decay (paper's Doom M: 0.99999; 1 = constant)")
    p.add_argument("--grad_clip", type=non_negative_float, default=1.0,
                   help="clip each gradient entry to [-v, v] (by value, as the paper's code; 0 = off)")
    p.add_argument("--skip_ahead", type=positive_int, default=1,
                   help="train M to predict z[t + K] instead of z[t + 1] (done/reward targets stay at step t)")
    reward = p.add_mutually_exclusive_group()
    reward.add_argument("--predict_reward", dest="predict_reward", action="store_true", default=None,
                        help="add a reward head (MSE on reward[t]) (default: the env's; off for doom and carracing, "
                             "on for other Gymnasium envs)")
    reward.add_argument("--no_predict_reward", dest="predict_reward", action="store_false", default=argparse.SUPPRESS,
                        help="no reward head, whatever the env's default")
    p.add_argument("--val_fraction", type=fraction, default=0.05,
                   help="hold out every (1/val_fraction)-th episode for validation, at least one; "
                        "0 or a single-episode folder: no validation (best.pt by training loss)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seeds the initial weights, each epoch's batches and the z noise")
    add_training_flags(p, "last.pt, best.pt and losses.csv")
    return p


def main() -> None:
    args = build_parser().parse_args()
    if args.logdir is None and None in (args.input_data_folder, args.savefolder):
        raise UserError("give --logdir (e.g. runs/doom), or both --input_data_folder and --savefolder")
    logdir = Path(args.logdir) if args.logdir else None
    savefolder = check_output_dir(args.savefolder or os.path.join(logdir, "mdnrnn"),
                                  "--savefolder" if args.savefolder else "--logdir")
    config = MDNTrainConfig(
        input_folder=args.input_data_folder or os.path.join(logdir, "series"),
        extra_input_folders=tuple(args.extra_input_folders),
        savefolder=str(savefolder),
        epochs=args.epochs, num_mixtures=args.num_mixtures, hidden=args.hidden, seq_len=args.seq_len,
        batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr, lr_decay=args.lr_decay,
        grad_clip=args.grad_clip, skip_ahead=args.skip_ahead, predict_reward=args.predict_reward,
        val_fraction=args.val_fraction, seed=args.seed, num_threads=args.num_threads, device=args.device,
        new_model=args.new_model, checkpoint_every_steps=args.checkpoint_every_steps,
        checkpoint_every_minutes=args.checkpoint_every_minutes, progress=not args.no_progress,
        tensorboard=args.tensorboard,
    )
    print(train_mdnrnn(config).line(), flush=True)


if __name__ == "__main__":
    run_main(main)
