#!/usr/bin/env python
"""Stage 02: train the ConvVAE (V) on the rollout frames, streamed from disk with bounded memory.

Example: python 02_train_vae.py --logdir runs/doom --epochs 10
Rerun the same command to continue an interrupted run (mid-epoch too); --new_model starts over.
Writes <savefolder>/last.pt, best.pt (lowest validation loss), losses.csv and recon_epoch<N>.png.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.cli import (
    ArgumentParser,
    add_training_flags,
    default_logdir,
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
from training.vae import VAETrainConfig, train_vae


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logdir", default=None,
                   help="experiment folder (default: runs/<env>, or the parent of --input_data_folder)")
    p.add_argument("--input_data_folder", default=None, help="rollouts to train on (default: <logdir>/rollouts)")
    p.add_argument("--savefolder", default=None, help="where checkpoints and logs go (default: <logdir>/vae)")
    p.add_argument("--env", default=None,
                   help="env the rollouts come from (default: the folder's meta.json); sets the default z size")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="epochs in total; a rerun continues up to this many (the paper's code: 10)")
    p.add_argument("--batch_size", type=positive_int, default=100, help="frames per Adam step (paper: 100)")
    p.add_argument("--lr", type=float_in(0, 1, low_open=True), default=1e-4, help="Adam learning rate (paper: 1e-4)")
    p.add_argument("--kl_tolerance", type=non_negative_float, default=0.5,
                   help="per-frame KL floor, in nats per latent dimension (paper: 0.5)")
    p.add_argument("--z_size", type=int_in(1, 1024), default=None,
                   help="latent size (default: the env's; doom 64, carracing 32)")
    p.add_argument("--max_frames", type=positive_int, default=None,
                   help="train on at most this many frames per epoch (default: all)")
    p.add_argument("--val_fraction", type=fraction, default=0.05,
                   help="hold out every (1/val_fraction)-th episode for validation, at least one; "
                        "0 or a single-episode folder validates on the training frames")
    p.add_argument("--val_max_frames", type=positive_int, default=10000,
                   help="validate on at most about this many frames (every k-th frame of the held-out episodes)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seeds the initial weights and each epoch's shuffle")
    p.add_argument("--buffer_episodes", type=positive_int, default=16,
                   help="episodes held in memory and shuffled together; memory does not grow with the folder")
    p.add_argument("--loader_workers", type=int_in(0, 64), default=None,
                   help="processes that decode and shuffle frames (0 = one thread in this process); the "
                        "batches are the same for any number (default: on a GPU, the cores but one, up to 8; "
                        "on a CPU 0, as the model needs the cores)")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast of the forward pass (for GPUs with bf16; the loss stays float32)")
    add_training_flags(p, "last.pt, best.pt, losses.csv and the PNGs")
    return p


def main() -> None:
    args = build_parser().parse_args()
    if args.logdir is None and args.input_data_folder is None and args.env is None:
        raise UserError("say which data to train on: --logdir (e.g. runs/doom), --input_data_folder or --env")
    if args.logdir is not None:
        logdir = Path(args.logdir)
    elif args.input_data_folder is not None:
        logdir = Path(args.input_data_folder).parent
    else:
        logdir = default_logdir(args.env)
    savefolder = check_output_dir(args.savefolder or os.path.join(logdir, "vae"),
                                  "--savefolder" if args.savefolder else "--logdir")
    config = VAETrainConfig(
        input_folder=args.input_data_folder or os.path.join(logdir, "rollouts"),
        savefolder=str(savefolder),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, kl_tolerance=args.kl_tolerance,
        env=args.env, z_size=args.z_size, max_frames=args.max_frames, val_fraction=args.val_fraction,
        val_max_frames=args.val_max_frames, seed=args.seed, buffer_episodes=args.buffer_episodes,
        loader_workers=args.loader_workers, amp=args.amp,
        num_threads=args.num_threads, device=args.device, new_model=args.new_model,
        checkpoint_every_steps=args.checkpoint_every_steps, checkpoint_every_minutes=args.checkpoint_every_minutes,
        progress=not args.no_progress, tensorboard=args.tensorboard,
    )
    print(train_vae(config).line(), flush=True)


if __name__ == "__main__":
    run_main(main)
