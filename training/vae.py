"""Stage 02 as a library: train the ConvVAE on rollout frames streamed from disk, resumable mid-epoch.

Memory: frames come from `data.loader.frame_batches`, which holds a bounded number of episode buffers
(decoded and shuffled in `--loader_workers` processes), so a 10,000-episode folder costs what a
10-episode one does (the reference loaded everything: ~125 GB).
Validation uses whole held-out episodes, because neighbouring frames of one episode are near copies.

Resume: `last.pt` holds weights, Adam state and a `Progress` record. Each epoch's shuffle is seeded by
(seed, epoch), so a run killed mid-epoch replays the same frame stream and skips what it already
trained on; a paper-scale epoch (3 M frames, hours on a CPU) is never lost.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from common.atomic import atomic_path
from common.device import resolve_device
from common.errors import UserError
from data.episodes import split_by_episode
from data.loader import default_loader_workers, frame_batches
from data.rollouts import RolloutFolder
from envs.registry import get_spec
from models.vae import ConvVAE, frames_to_tensor, tensor_to_frames, vae_loss
from training.trainer import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    LOSSES_CSV,
    EpochTrainer,
    ProgressRecord,
    run_epochs,
)
from training.trainer import TrainSummary as BaseSummary

CSV_FIELDS = ["epoch", "step", "frames", "train_loss", "train_recon", "train_kl",
              "val_loss", "val_recon", "val_kl", "seconds", "img_per_s"]
GRID_COLUMNS = 8


@dataclass(frozen=True)
class VAETrainConfig:
    """Stage-02 settings; the CLI flags map one to one. Defaults are the paper's."""

    input_folder: str
    savefolder: str
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-4
    kl_tolerance: float = 0.5
    env: str | None = None  # default: the rollout folder's meta.json
    z_size: int | None = None  # default: the env's (doom 64, carracing 32)
    max_frames: int | None = None  # cap on frames per epoch
    val_fraction: float = 0.05
    val_max_frames: int = 10_000
    seed: int = 0
    buffer_episodes: int = 16
    loader_workers: int | None = None  # None: data.loader.default_loader_workers(device)
    amp: bool = False  # bf16 autocast of the forward pass
    tensorboard: bool = False  # also write losses.csv rows as TensorBoard scalars
    num_threads: int | None = None
    device: str = "auto"
    new_model: bool = False
    checkpoint_every_steps: int = 0  # 0 = only by time
    checkpoint_every_minutes: float = 10.0
    progress: bool = True

    def check(self) -> None:
        """Refuse impossible values (the CLI's flag types catch most of these first)."""
        rules = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be > 0, got {self.lr}"),
            (self.kl_tolerance >= 0 and math.isfinite(self.kl_tolerance),
             f"--kl_tolerance must be >= 0, got {self.kl_tolerance}"),
            (self.z_size is None or self.z_size >= 1, f"--z_size must be >= 1, got {self.z_size}"),
            (self.max_frames is None or self.max_frames >= 1, f"--max_frames must be >= 1, got {self.max_frames}"),
            (0 <= self.val_fraction < 1, f"--val_fraction must be in [0, 1), got {self.val_fraction}"),
            (self.val_max_frames >= 1, f"--val_max_frames must be >= 1, got {self.val_max_frames}"),
            (self.buffer_episodes >= 1, f"--buffer_episodes must be >= 1, got {self.buffer_episodes}"),
            (self.loader_workers is None or self.loader_workers >= 0,
             f"--loader_workers must be >= 0, got {self.loader_workers}"),
            (self.num_threads is None or self.num_threads >= 1, f"--num_threads must be >= 1, got {self.num_threads}"),
            (self.checkpoint_every_steps >= 0,
             f"--checkpoint_every_steps must be >= 0, got {self.checkpoint_every_steps}"),
            (self.checkpoint_every_minutes > 0,
             f"--checkpoint_every_minutes must be > 0, got {self.checkpoint_every_minutes}"),
        ]
        for ok, message in rules:
            if not ok:
                raise UserError(message)


@dataclass
class Progress(ProgressRecord):
    """Where training stands (epoch, batch, step and these); a rerun continues exactly here."""

    epoch_frames: int = 0  # frames done in the running epoch (what a resume skips)
    epoch_seconds: float = 0.0  # training time in the running epoch
    epoch_loss: float = 0.0  # sums over the running epoch's frames, for its csv averages
    epoch_recon: float = 0.0
    epoch_kl: float = 0.0
    frames: int = 0  # frames trained on, all epochs
    seconds: float = 0.0  # training time, all epochs
    best_val_loss: float | None = None
    best_epoch: int = 0
    seed: int = 0  # the shuffle seed the epochs were streamed with
    train_episodes: int = 0

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = self.epoch_frames = 0
        self.epoch_seconds = self.epoch_loss = self.epoch_recon = self.epoch_kl = 0.0


@dataclass
class VAEData:
    """The rollout folder split by episode into training and validation sets."""

    env: str
    z_size: int
    train: RolloutFolder
    val: RolloutFolder
    val_is_train: bool  # a single-episode folder validates on its training frames
    val_stride: int  # validation uses every val_stride-th frame, to stay under val_max_frames

    @property
    def train_frames(self) -> int:
        return int(self.train.lengths().sum())

    @property
    def val_frames(self) -> int:
        return int(sum(-(-int(n) // self.val_stride) for n in self.val.lengths()))

    def line(self) -> str:
        val = ("validation on the training episode (only 1 episode)" if self.val_is_train else
               f"{len(self.val)} validation episode{'s' * (len(self.val) > 1)} ({self.val_frames} frames"
               + (f", one frame in {self.val_stride}" if self.val_stride > 1 else "") + ")")
        return (f"{self.train.folder}: env {self.env}, {len(self.train)} training episodes "
                f"({self.train_frames} frames), {val}")


class TrainSummary(BaseSummary):
    def line(self) -> str:
        p = self.progress
        if self.finished_before:
            return (f"{self.savefolder}: already finished ({p.epoch} of {self.epochs} epochs done, best "
                    f"val loss {_num(p.best_val_loss)} at epoch {p.best_epoch}); pass a larger --epochs to "
                    "train further or --new_model to start over")
        speed = p.frames / p.seconds if p.seconds > 0 else 0.0
        row = self.last_row or {}
        return (f"{self.savefolder}: {p.epoch}/{self.epochs} epochs, {p.step} steps, {p.frames} frames, "
                f"{speed:.0f} img/s | last epoch: train {_num(row.get('train_loss'))} "
                f"(recon {_num(row.get('train_recon'))}, kl {_num(row.get('train_kl'))}), val "
                f"{_num(row.get('val_loss'))} (recon {_num(row.get('val_recon'))}, kl {_num(row.get('val_kl'))})"
                f" | best val {_num(p.best_val_loss)} at epoch {p.best_epoch} | "
                f"{LAST_CHECKPOINT}, {BEST_CHECKPOINT}, {LOSSES_CSV}")


def _num(x: Any) -> str:
    return "-" if x is None or x == "" else f"{float(x):.2f}"


# -- data --------------------------------------------------------------------------------------------
def subset(folder: RolloutFolder, indices: Sequence[int]) -> RolloutFolder:
    """A view of some episodes of `folder` (same reader, fewer files); lengths are not re-read."""
    lengths = folder.lengths()
    view = copy.copy(folder)
    view.paths = [folder.paths[i] for i in indices]
    view._lengths = lengths[list(indices)]
    return view


def prepare_data(cfg: VAETrainConfig) -> VAEData:
    """Open and split the rollout folder; settle env and z size. Raises UserError on bad input."""
    folder = RolloutFolder(cfg.input_folder, flag="rollout folder")
    env = cfg.env
    if env is None:
        env = folder.env_name
        if env is None:
            raise UserError(f"{folder.folder} has no meta.json saying which env made it; pass --env")
    else:
        folder.require_env(env)
    z_size = cfg.z_size or get_spec(env).z_size
    folder.lengths()  # reads every file's small `done` array: a broken file fails here, not hours in
    train_idx, val_idx = split_by_episode(len(folder), cfg.val_fraction)
    train = subset(folder, train_idx)
    val = subset(folder, val_idx) if val_idx else train
    total_val = int(val.lengths().sum())
    return VAEData(env=env, z_size=z_size, train=train, val=val, val_is_train=not val_idx,
                   val_stride=max(1, -(-total_val // cfg.val_max_frames)))


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a rerun of epoch e streams the same frames in the same order."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def capped(batches: Iterator[np.ndarray], limit: int | None) -> Iterator[np.ndarray]:
    """Stop after `limit` frames (cutting the last batch short); no limit if None."""
    if limit is None:
        yield from batches
        return
    left = limit
    try:
        for batch in batches:
            if left <= 0:
                return
            yield batch[:left]
            left -= len(batch)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the loader's read-ahead thread now, not at garbage collection


def skip_frames(batches: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """Drop the first `count` frames of the stream now (eagerly); return the rest of it."""
    while count > 0:
        batch = next(batches, None)
        if batch is None:
            return iter(())
        if len(batch) > count:
            return itertools.chain([batch[count:]], batches)
        count -= len(batch)
    return batches


# -- outputs -----------------------------------------------------------------------------------------
def save_recon_grid(path: str | Path, originals: np.ndarray, recons: np.ndarray) -> None:
    """PNG: originals on the top row, their reconstructions below (uint8 (N, 64, 64, 3) each)."""
    image = np.concatenate([np.concatenate(list(originals), axis=1), np.concatenate(list(recons), axis=1)])
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


# -- training ----------------------------------------------------------------------------------------
class VAETrainer(EpochTrainer):
    """One stage-02 run: the ConvVAE, Adam and progress (resume, checkpoints, CSV: training/trainer.py)."""

    kind = "vae"
    progress_type = Progress

    def __init__(self, cfg: VAETrainConfig, data: VAEData, device: torch.device,
                 log: Any = print) -> None:
        super().__init__(cfg, data, device, log)
        torch.manual_seed(cfg.seed)
        self.model = ConvVAE(data.z_size).to(device)
        # On a GPU, convolutions run fastest on channels-last tensors, which is how frames are stored.
        self.channels_last = torch.device(device).type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loader_workers = (default_loader_workers(device) if cfg.loader_workers is None
                               else cfg.loader_workers)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.progress = Progress(seed=cfg.seed, train_episodes=len(data.train))

    @property
    def config(self) -> dict[str, Any]:
        return {"env": self.data.env, **self.model.config}

    def extra(self) -> dict[str, Any]:
        return {"lr": self.cfg.lr, "kl_tolerance": self.cfg.kl_tolerance, "batch_size": self.cfg.batch_size,
                "input_folder": str(self.data.train.folder)}

    def other_outputs(self) -> list[Path]:
        return sorted(self.folder.glob("recon_epoch*.png"))

    def resumed(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr  # the flag wins: a rerun may lower the learning rate
        p = self.progress
        where = f"epoch {p.epoch + 1}" + (f" at batch {p.batch} ({p.epoch_frames} frames done)" if p.batch else "")
        self.log(f"resuming from {self.last_path}: {where}, step {p.step}")
        if p.seed != self.cfg.seed:
            self.log(f"note: continuing with the checkpoint's shuffle seed {p.seed} (--seed {self.cfg.seed} "
                     "applies with --new_model)")
        if p.batch and p.train_episodes != len(self.data.train):
            self.log(f"note: the folder now has {len(self.data.train)} training episodes (checkpoint: "
                     f"{p.train_episodes}); the rest of this epoch streams the new set")

    def epoch_frames_total(self) -> int:
        total = self.data.train_frames
        return total if self.cfg.max_frames is None else min(total, self.cfg.max_frames)

    def epoch_batches(self, epoch: int) -> Iterator[torch.Tensor]:
        """The training stream of `epoch` (1-based): shuffled across episodes, capped at max_frames.

        The same for any number of loader workers, so a resume with another --loader_workers is exact.
        """
        train = self.data.train
        batches = frame_batches(train.paths, train.schema, self.cfg.batch_size, key="obs", shuffle=True,
                                buffer_episodes=self.cfg.buffer_episodes, seed=epoch_seed(self.progress.seed, epoch),
                                workers=self.loader_workers, pin_memory=torch.device(self.device).type == "cuda",
                                keep=False)
        return capped(batches, self.cfg.max_frames)

    def train_epoch(self) -> None:
        """Train the running epoch to its end, checkpointing last.pt on the way."""
        cfg, p = self.cfg, self.progress
        epoch = p.epoch + 1
        bar = tqdm(total=self.epoch_frames_total(), initial=p.epoch_frames, unit="img", unit_scale=True,
                   desc=f"epoch {epoch}/{cfg.epochs}", disable=None if cfg.progress else True, dynamic_ncols=True)
        sums = torch.zeros(3, device=self.device)  # loss, recon, kl summed over frames since the last flush
        last_save = last_show = time.monotonic()
        self.model.train()
        with contextlib.closing(self.epoch_batches(epoch)) as stream:
            try:
                batches = skip_frames(stream, p.epoch_frames)
                tick = time.perf_counter()
                for batch in batches:
                    self.interrupts.check()
                    # reparameterization noise from (seed, step): a resumed run draws what an unbroken one did
                    torch.manual_seed(epoch_seed(p.seed, 1_000_000 + p.step))
                    x = frames_to_tensor(batch, self.device, channels_last=self.channels_last)
                    with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=cfg.amp):
                        recon, mu, logvar = self.model(x)
                    loss, recon_loss, kl = vae_loss(recon.float(), x, mu.float(), logvar.float(), cfg.kl_tolerance)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    n = len(batch)
                    sums += torch.stack([loss, recon_loss, kl]).detach() * n
                    p.batch += 1
                    p.step += 1
                    p.epoch_frames += n
                    p.frames += n
                    now = time.perf_counter()
                    p.epoch_seconds += now - tick
                    p.seconds += now - tick
                    tick = now
                    bar.update(n)
                    wall = time.monotonic()
                    if wall - last_show >= 1.0:
                        self._flush(sums)
                        bar.set_postfix(self._postfix(), refresh=False)
                        last_show = wall
                    steps_due = cfg.checkpoint_every_steps and p.step - self._saved_step >= cfg.checkpoint_every_steps
                    if steps_due or wall - last_save >= cfg.checkpoint_every_minutes * 60:
                        self._flush(sums)
                        self.save(self.last_path)
                        last_save = time.monotonic()
                        tick += last_save - wall  # checkpoint time is not training time
            except (KeyboardInterrupt, UserError):
                self._flush(sums)
                self.save_if_behind()
                bar.close()
                raise
        self._flush(sums)
        bar.close()

    def _flush(self, sums: torch.Tensor) -> None:
        loss, recon, kl = sums.tolist()
        p = self.progress
        p.epoch_loss += loss
        p.epoch_recon += recon
        p.epoch_kl += kl
        sums.zero_()

    def _postfix(self) -> dict[str, str]:
        p = self.progress
        n = max(p.epoch_frames, 1)
        return {"loss": f"{p.epoch_loss / n:.2f}", "recon": f"{p.epoch_recon / n:.2f}",
                "kl": f"{p.epoch_kl / n:.2f}", "img/s": f"{p.epoch_frames / max(p.epoch_seconds, 1e-9):.0f}"}

    @torch.no_grad()
    def evaluate(self) -> tuple[dict[str, float], np.ndarray]:
        """Mean loss parts over the fixed validation frames, plus GRID_COLUMNS of them for the PNG.

        The reparameterization noise is seeded, so epochs are compared on the same draw.
        """
        data, bs = self.data, self.cfg.batch_size
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        total = data.val_frames
        picks = set(np.linspace(0, total - 1, min(GRID_COLUMNS, total)).round().astype(int).tolist())
        grid, sums, count, offset = [], torch.zeros(3, device=self.device), 0, 0
        self.model.eval()
        for episode in data.val.iter_episodes(keys=["obs"]):
            frames = episode["obs"][::data.val_stride]
            grid.extend(frames[i - offset] for i in sorted(picks) if offset <= i < offset + len(frames))
            offset += len(frames)
            for start in range(0, len(frames), bs):
                self.interrupts.check()
                chunk = frames[start:start + bs]
                x = frames_to_tensor(chunk, self.device)
                recon, mu, logvar = self.model(x, generator=generator)
                parts = vae_loss(recon, x, mu, logvar, self.cfg.kl_tolerance)
                sums += torch.stack(parts) * len(chunk)
                count += len(chunk)
        self.model.train()
        loss, recon, kl = (sums / max(count, 1)).tolist()
        return {"val_loss": loss, "val_recon": recon, "val_kl": kl}, np.stack(grid)

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        """Decode the posterior mean: the reconstruction without sampling noise."""
        self.model.eval()
        mu, _ = self.model.encode(frames_to_tensor(frames, self.device))
        out = tensor_to_frames(self.model.decode(mu))
        self.model.train()
        return out

    def end_epoch(self) -> dict[str, Any]:
        """Validate, write the PNG and csv row, then best.pt and last.pt (the csv row goes first: a kill
        before last.pt is written leaves a row that the resume trims)."""
        p = self.progress
        epoch = p.epoch + 1
        val, grid = self.evaluate()
        save_recon_grid(self.folder / f"recon_epoch{epoch:03d}.png", grid, self.reconstruct(grid))
        n = max(p.epoch_frames, 1)
        row = {"epoch": epoch, "step": p.step, "frames": p.frames, "train_loss": p.epoch_loss / n,
               "train_recon": p.epoch_recon / n, "train_kl": p.epoch_kl / n, **val,
               "seconds": p.epoch_seconds, "img_per_s": p.epoch_frames / max(p.epoch_seconds, 1e-9)}
        self.log_row(CSV_FIELDS, row)
        improved = p.best_val_loss is None or val["val_loss"] < p.best_val_loss
        p.next_epoch()
        if improved:
            p.best_val_loss, p.best_epoch = val["val_loss"], epoch
            self.save(self.best_path)
        self.save(self.last_path)
        self.log(f"epoch {epoch}/{self.cfg.epochs}: train {row['train_loss']:.2f} (recon {row['train_recon']:.2f}, "
                 f"kl {row['train_kl']:.2f}) | val {val['val_loss']:.2f} (recon {val['val_recon']:.2f}, "
                 f"kl {val['val_kl']:.2f}){' best' if improved else ''} | {row['img_per_s']:.0f} img/s, "
                 f"{row['seconds']:.0f} s")
        return row


def train_vae(cfg: VAETrainConfig, log: Any = print) -> TrainSummary:
    """Run (or continue) stage 02 up to cfg.epochs; outputs go to cfg.savefolder."""
    cfg.check()
    device = resolve_device(cfg.device)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    data = prepare_data(cfg)
    trainer = VAETrainer(cfg, data, device, log=log)

    def header() -> str:
        return (f"{data.line()}; z {data.z_size}, batch {cfg.batch_size}, lr {cfg.lr:g}, device {device}, "
                f"torch threads {torch.get_num_threads()}, loader workers {trainer.loader_workers}"
                + (", bf16 autocast" if cfg.amp else ""))

    return run_epochs(trainer, TrainSummary(Path(cfg.savefolder), trainer.progress, cfg.epochs), header)
