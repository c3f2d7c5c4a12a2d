#!/usr/bin/env python
"""Stage 03: encode every rollout episode with the trained VAE into a latent series (mu, logvar per frame).

Example: python 03_generate_rnn_data.py --logdir runs/doom
Rerun the same command to continue an interrupted run; encoded episodes are never redone.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.cli import (
    ArgumentParser,
    int_in,
    positive_int,
    run_main,
)
from common.device import DEVICE_HELP, resolve_device
from common.errors import UserError
from common.folders import ensure_writable_dir
from data.encode import encode_rollouts, find_vae_checkpoint
from data.loader import default_loader_workers
from data.rollouts import RolloutFolder
from models.loading import load_vae


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logdir", default=None,
                   help="experiment folder holding rollouts/ and vae/ (required unless all paths are given)")
    p.add_argument("--input_data_folder", default=None, help="rollout folder (default: <logdir>/rollouts)")
    p.add_argument("--vae", default=None,
                   help="VAE checkpoint (default: <logdir>/vae/best.pt, else <logdir>/vae/last.pt)")
    p.add_argument("--savefolder", default=None, help="where series files go (default: <logdir>/series)")
    p.add_argument("--batch_size", type=positive_int, default=100, help="frames per encoder call")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--new", action="store_true",
                   help="delete the series already in --savefolder and encode everything again "
                        "(needed after retraining the VAE)")
    p.add_argument("--loader_workers", type=int_in(0, 64), default=None,
                   help="processes that decode episodes ahead, in order (0 = one thread in this process) "
                        "(default: on a GPU, the cores but one, up to 8; on a CPU 0)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main() -> None:
    args = build_parser().parse_args()
    if args.logdir is None and None in (args.input_data_folder, args.vae, args.savefolder):
        raise UserError("give --logdir, or all of --input_data_folder, --vae and --savefolder")
    logdir = Path(args.logdir) if args.logdir else None
    device = resolve_device(args.device)
    rollouts = RolloutFolder(args.input_data_folder or logdir / "rollouts",
                             flag="--input_data_folder" if args.input_data_folder else "--logdir rollout folder")
    vae_path = Path(args.vae) if args.vae else find_vae_checkpoint(logdir / "vae")
    vae, identity = load_vae(vae_path, device, rollouts.env_name)
    savefolder = ensure_writable_dir(args.savefolder or os.path.join(logdir, "series"),
                                     "--savefolder" if args.savefolder else "--logdir")
    workers = default_loader_workers(device) if args.loader_workers is None else args.loader_workers
    summary = encode_rollouts(rollouts, vae, identity, savefolder, args.batch_size, device, args.new,
                              progress=not args.no_progress, loader_workers=workers)
    print(f"{savefolder}: {summary.line()} | VAE {vae_path} | initial_z.npz: {len(rollouts)} episodes")


if __name__ == "__main__":
    run_main(main)
