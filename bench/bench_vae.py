#!/usr/bin/env python
"""Stage 02 costs, measured as ratios in one run on real Doom frames (not absolute claims).

    python bench/bench_vae.py        # 16 real Doom episodes; 3 x 2000 frames each way; RSS on 16 vs 160 episodes

(1) Training speed through the real pipeline (compressed files streamed, shuffled across episodes,
    checkpoints) against the same model, loss and Adam fed from a uint8 array already in memory.
    Runs alternate; median and best of each are reported (the best is the least disturbed by other
    load on the machine). The target is >= 85 %.
(2) Peak RSS of a full stage-02 epoch (a subprocess) on N episodes against 10 N episodes: the
    streaming reader should keep it flat, where loading every frame would grow 10x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.csvlog import read_csv  # noqa: E402
from data.collect import CollectConfig, generate  # noqa: E402
from data.episodes import write_meta  # noqa: E402
from data.rollouts import RolloutFolder, episode_path, save_rollout  # noqa: E402
from models.vae import ConvVAE, frames_to_tensor, vae_loss  # noqa: E402
from training.vae import VAETrainConfig, train_vae  # noqa: E402


def collect(folder: Path, episodes: int, max_steps: int) -> RolloutFolder:
    folder.mkdir(parents=True)
    generate(CollectConfig(env="doom", out_dir=str(folder), policy="sticky", max_steps=max_steps),
             episodes, workers=os.cpu_count() or 1, progress=False)
    return RolloutFolder(folder)


def pipeline_img_s(rollouts: Path, work: Path, frames: int, batch: int, device: str) -> float:
    """img/s of the epoch's training loop as stage 02 logs it (validation excluded)."""
    save = work / f"vae_{time.monotonic_ns()}"
    cfg = VAETrainConfig(input_folder=str(rollouts), savefolder=str(save), epochs=1, batch_size=batch,
                         max_frames=frames, val_max_frames=100, progress=False, device=device)
    train_vae(cfg, log=lambda *_: None)
    speed = float(read_csv(save / "losses.csv")[0]["img_per_s"])
    shutil.rmtree(save)
    return speed


def memory_img_s(frames: np.ndarray, batch: int, device: str) -> float:
    """The same training step fed from an in-memory uint8 array (fresh model, same seed, shuffled)."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    torch.manual_seed(0)
    model = ConvVAE(64).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    order = np.random.default_rng(0).permutation(len(frames))
    sums = torch.zeros(3, device=dev)
    start = time.perf_counter()
    for i in range(0, len(frames), batch):
        x = frames_to_tensor(frames[order[i:i + batch]], dev)
        recon, mu, logvar = model(x)
        loss, r, k = vae_loss(recon, x, mu, logvar, 0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums += torch.stack([loss, r, k]).detach() * len(x)
    sums.tolist()  # wait for the device, as the pipeline's epoch end does
    return len(frames) / (time.perf_counter() - start)


def peak_rss_mb(rollouts: Path, save: Path, batch: int, device: str) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one full stage-02 epoch in its own process."""
    cmd = [sys.executable, str(ROOT / "02_train_vae.py"), "--input_data_folder", str(rollouts),
           "--savefolder", str(save), "--epochs", "1", "--batch_size", str(batch), "--no_progress",
           "--device", device]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"stage 02 failed: {proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, seconds


def replicate(src: RolloutFolder, dest: Path, copies: int, steps: int) -> int:
    """`copies` x the episodes of `src`, each cut to `steps` steps; returns the frame count."""
    dest.mkdir(parents=True)
    write_meta(dest, src.meta)
    frames, index = 0, 0
    for _ in range(copies):
        for episode in src.iter_episodes():
            cut = {k: v[:steps] for k, v in episode.items()}
            save_rollout(episode_path(dest, index), **cut)
            frames += len(cut["obs"])
            index += 1
    return frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=16, help="real Doom episodes to collect (N)")
    p.add_argument("--max_steps", type=int, default=300, help="step cap per collected episode")
    p.add_argument("--frames", type=int, default=2000, help="frames per throughput run")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs of each throughput variant")
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--rss_steps", type=int, default=100, help="episode length in the RSS runs")
    p.add_argument("--skip_rss", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--num_threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.num_threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        rollouts = collect(tmp / "rollouts", args.episodes, args.max_steps)
        total = int(rollouts.lengths().sum())
        print(f"collected {len(rollouts)} doom episodes, {total} frames in {time.perf_counter() - t:.1f} s; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")

        train = np.concatenate([e["obs"] for e in rollouts.iter_episodes(keys=["obs"])])
        frames = train[: min(args.frames, len(train))]
        memory_img_s(frames[: 2 * args.batch_size], args.batch_size, args.device)  # warm up kernels
        mem, pipe = [], []
        for _ in range(args.repeats):
            mem.append(memory_img_s(frames, args.batch_size, args.device))
            pipe.append(pipeline_img_s(tmp / "rollouts", tmp, len(frames), args.batch_size, args.device))
        print(f"\n(1) VAE training, batch {args.batch_size}, {len(frames)} frames per run, {args.repeats} runs each")
        print(f"| {'feed':<38} | {'median img/s':>12} | {'best img/s':>10} | {'runs':<20} |")
        print(f"|{'-' * 40}|{'-' * 14}|{'-' * 12}|{'-' * 22}|")
        for name, runs in (("in-memory uint8 array", mem), ("stage 02 pipeline (files, streamed)", pipe)):
            print(f"| {name:<38} | {statistics.median(runs):12.0f} | {max(runs):10.0f} | "
                  f"{', '.join(f'{v:.0f}' for v in runs):<20} |")
        ratio_median = 100 * statistics.median(pipe) / statistics.median(mem)
        ratio_best = 100 * max(pipe) / max(mem)
        label = "pipeline / in-memory (target >= 85 %)"
        print(f"| {label:<38} | {ratio_median:11.1f}% | {ratio_best:9.1f}% | {'':<20} |")

        if args.skip_rss:
            return
        small, big = tmp / "small", tmp / "big"
        n_small = replicate(rollouts, small, 1, args.rss_steps)
        n_big = replicate(rollouts, big, 10, args.rss_steps)
        rss_small, sec_small = peak_rss_mb(small, tmp / "vae_small", args.batch_size, args.device)
        rss_big, sec_big = peak_rss_mb(big, tmp / "vae_big", args.batch_size, args.device)
        print("\n(2) peak RSS of one full stage-02 epoch (subprocess, default --buffer_episodes 16)")
        print(f"| {'episodes':>8} | {'frames':>7} | {'frames as uint8':>15} | {'peak RSS':>9} | {'wall':>6} |")
        print(f"|{'-' * 10}|{'-' * 9}|{'-' * 17}|{'-' * 11}|{'-' * 8}|")
        for n, fr, rss, sec in ((len(rollouts), n_small, rss_small, sec_small),
                                (10 * len(rollouts), n_big, rss_big, sec_big)):
            print(f"| {n:>8} | {fr:>7} | {fr * 64 * 64 * 3 / 2**20:>12.0f} MB | {rss:>6.0f} MB | {sec:>5.0f}s |")
        print(f"| ratio 10N / N: peak RSS x{rss_big / rss_small:.2f} (frames x{n_big / n_small:.1f})")


if __name__ == "__main__":
    main()
