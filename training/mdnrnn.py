"""Stage 04 as a library: train the MDN-RNN (M) on latent series streamed from disk, resumable mid-epoch.

Batching. Every episode is cut into windows of at most `seq_len` input steps that together cover all
of it: with a random phase `o` per episode and epoch, [0, o), [o, o + L), [o + L, o + 2L), ... Each
window starts from a zero LSTM state, so the single nn.LSTM call per batch needs no mid-sequence
resets; the window holding an episode's first step has the restart input 1 there (Doom), exactly
what the dream env feeds after a reset. Short windows are zero-padded and masked. Windows are
shuffled within a bounded buffer and grouped by length, so a batch is padded only to its own
longest window (~40 % less padding compute on Doom's ~300-step random-policy episodes).

Alignment, for input step t of an episode of T steps and skip_ahead K (default 1):
    inputs:  z[t] (resampled from mu/logvar every batch), action[t], restart[t] = (t == 0)
    targets: z[t + K] (masked when t + K >= T), done[t], reward[t] (masked only past the episode end)
done[t] says action t ended the episode, so the step whose z target does not exist (the last one)
still teaches the done head its positive example. z is drawn once per window, so the sample that is
the target at t is also the input at t + K, as in the reference.

Differences from the reference (spec section 3.2), on purpose: windows of one episode instead of a
stream of concatenated episodes whose LSTM state is carried between 500-step chunks; the z loss is
masked at episode ends instead of predicting the next episode's first frame.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from common.device import resolve_device
from common.errors import DataError, UserError
from data.episodes import split_by_episode
from data.loader import episodes
from data.series import SERIES_SCHEMA, SeriesFolder
from envs.registry import get_spec
from models.mdnrnn import MDNRNN, done_loss, gmm_nll, reward_loss
from training.trainer import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    LOSSES_CSV,
    NEW_MODEL_HINT,
    EpochTrainer,
    ProgressRecord,
    run_epochs,
)
from training.trainer import TrainSummary as BaseSummary

CSV_FIELDS = ["epoch", "step", "lr", "timesteps", "train_loss", "train_z", "train_done", "train_reward",
              "val_loss", "val_z", "val_done", "val_reward", "seconds", "timesteps_per_s"]
LOSS_PARTS = ("z", "done", "reward")
DEFAULT_SEQ_LEN = 500  # the reference's Doom max_seq_len
ENV_SEQ_LEN = {"carracing": 1000}  # the reference trains CarRacing on whole 1000-step episodes
BUFFER_BATCHES = 10  # windows shuffled together: this many batches' worth


# -- settings ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MDNTrainConfig:
    """Stage-04 settings; the CLI flags map one to one. Defaults are the paper's (spec section 3)."""

    input_folder: str
    savefolder: str
    epochs: int = 20
    extra_input_folders: tuple[str, ...] = ()  # more series of the same env and VAE (iterative training rounds)
    num_mixtures: int | None = None  # default: the env's (5)
    hidden: int | None = None  # default: the env's (doom 512, carracing 256)
    seq_len: int | None = None  # default: ENV_SEQ_LEN or DEFAULT_SEQ_LEN
    batch_size: int = 100
    lr: float = 1e-3
    min_lr: float = 1e-5
    lr_decay: float = 0.99999
    grad_clip: float = 1.0
    skip_ahead: int = 1
    predict_reward: bool | None = None  # default: the env's
    val_fraction: float = 0.05
    seed: int = 0
    num_threads: int | None = None
    device: str = "auto"
    new_model: bool = False
    checkpoint_every_steps: int = 0  # 0 = by time only
    checkpoint_every_minutes: float = 10.0
    progress: bool = True
    tensorboard: bool = False  # also write losses.csv rows as TensorBoard scalars

    def check(self) -> None:
        """Refuse impossible values (the CLI's flag types catch most of these first)."""
        rules = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.num_mixtures is None or self.num_mixtures >= 1,
             f"--num_mixtures must be >= 1, got {self.num_mixtures}"),
            (self.hidden is None or self.hidden >= 1, f"--hidden must be >= 1, got {self.hidden}"),
            (self.seq_len is None or self.seq_len >= 1, f"--seq_len must be >= 1, got {self.seq_len}"),
            (self.batch_size >= 1, f"--batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be > 0, got {self.lr}"),
            (0 <= self.min_lr <= self.lr, f"--min_lr must be in [0, --lr], got {self.min_lr}"),
            (0 < self.lr_decay <= 1, f"--lr_decay must be in (0, 1], got {self.lr_decay}"),
            (self.grad_clip >= 0 and math.isfinite(self.grad_clip), f"--grad_clip must be >= 0, got {self.grad_clip}"),
            (self.skip_ahead >= 1, f"--skip_ahead must be >= 1, got {self.skip_ahead}"),
            (0 <= self.val_fraction < 1, f"--val_fraction must be in [0, 1), got {self.val_fraction}"),
            (self.num_threads is None or self.num_threads >= 1, f"--num_threads must be >= 1, got {self.num_threads}"),
            (self.checkpoint_every_steps >= 0,
             f"--checkpoint_every_steps must be >= 0, got {self.checkpoint_every_steps}"),
            (self.checkpoint_every_minutes > 0,
             f"--checkpoint_every_minutes must be > 0, got {self.checkpoint_every_minutes}"),
        ]
        for ok, message in rules:
            if not ok:
                raise UserError(message)

    def data_identity(self, seq_len: int) -> dict[str, Any]:
        """Settings that decide each epoch's batch stream; a mid-run change would corrupt the resume."""
        return {"seq_len": seq_len, "skip_ahead": self.skip_ahead, "batch_size": self.batch_size,
                "val_fraction": self.val_fraction, "seed": self.seed}


def learning_rate(step: int, lr: float, min_lr: float, decay: float) -> float:
    """The reference schedule: (lr - min_lr) * decay**step + min_lr."""
    return (lr - min_lr) * decay**step + min_lr


# -- windows and batches -----------------------------------------------------------------------------
def window_ranges(length: int, seq_len: int, offset: int = 0) -> list[tuple[int, int]]:
    """Input-step ranges [start, stop) of at most seq_len steps that cover [0, length) exactly.

    `offset` in [0, seq_len) shifts the cuts: [0, offset) comes first (if offset > 0), then full
    windows from there; the last one may be short. Episodes of at most seq_len steps are one window.
    """
    if length <= seq_len:
        return [(0, length)]
    cuts = [0, *range(offset or seq_len, length, seq_len), length]
    return list(zip(cuts[:-1], cuts[1:]))


@dataclass
class Window:
    """One training sequence: inputs for steps [start, stop) of an episode, plus the z span its targets need."""

    mu: np.ndarray  # (n_span, Z) float16: steps [start, min(stop + K, T))
    logvar: np.ndarray
    action: np.ndarray  # (n, A): steps [start, stop)
    reward: np.ndarray  # (n,)
    done: np.ndarray  # (n,)
    first: bool  # start == 0: the window begins the episode

    def __len__(self) -> int:
        return len(self.action)


def cut_windows(episode: dict[str, np.ndarray], seq_len: int, skip_ahead: int, offset: int = 0) -> list[Window]:
    length = len(episode["done"])
    windows = []
    for start, stop in window_ranges(length, seq_len, offset):
        span = slice(start, min(stop + skip_ahead, length))
        windows.append(Window(mu=episode["mu"][span], logvar=episode["logvar"][span],
                              action=episode["action"][start:stop], reward=episode["reward"][start:stop],
                              done=episode["done"][start:stop], first=start == 0))
    return windows


@dataclass
class Batch:
    """Padded arrays of B windows, L = the longest window's input steps, K = skip_ahead.

    Input step i of row b is z_mu/z_logvar[b, i]; its z target is [b, i + K].
    """

    z_mu: np.ndarray  # (B, L + K, Z) float32, zero beyond each window's span
    z_logvar: np.ndarray  # (B, L + K, Z)
    action: np.ndarray  # (B, L, A)
    restart: np.ndarray  # (B, L) float32: 1 at step 0 of windows that start an episode
    done: np.ndarray  # (B, L) float32: done[t] targets
    reward: np.ndarray  # (B, L) float32: reward[t] targets
    step_mask: np.ndarray  # (B, L) bool: real input steps (done/reward targets exist)
    z_mask: np.ndarray  # (B, L) bool: real steps whose z[t + K] exists

    @property
    def timesteps(self) -> int:
        return int(self.step_mask.sum())

    def to_torch(self, device: torch.device) -> dict[str, torch.Tensor]:
        return {f.name: torch.from_numpy(getattr(self, f.name)).to(device, non_blocking=True) for f in fields(self)}


def collate(windows: Sequence[Window], skip_ahead: int) -> Batch:
    """Pad windows to the longest one; masks say which inputs and which z targets are real."""
    batch, steps = len(windows), max(len(w) for w in windows)
    z_size, action_size = windows[0].mu.shape[1], windows[0].action.shape[1]
    b = Batch(
        z_mu=np.zeros((batch, steps + skip_ahead, z_size), np.float32),
        z_logvar=np.zeros((batch, steps + skip_ahead, z_size), np.float32),
        action=np.zeros((batch, steps, action_size), np.float32),
        restart=np.zeros((batch, steps), np.float32),
        done=np.zeros((batch, steps), np.float32),
        reward=np.zeros((batch, steps), np.float32),
        step_mask=np.zeros((batch, steps), bool),
        z_mask=np.zeros((batch, steps), bool),
    )
    for row, w in enumerate(windows):
        n, span = len(w), len(w.mu)
        b.z_mu[row, :span] = w.mu
        b.z_logvar[row, :span] = w.logvar
        b.action[row, :n] = w.action
        b.restart[row, 0] = float(w.first)
        b.done[row, :n] = w.done
        b.reward[row, :n] = w.reward
        b.step_mask[row, :n] = True
        b.z_mask[row, :max(0, span - skip_ahead)] = True
    return b


def iter_batches(paths: Sequence[Path], batch_size: int, seq_len: int, skip_ahead: int, seed: int,
                 shuffle: bool = True, shapes: tuple[int, int] | None = None,
                 buffer_windows: int | None = None) -> Iterator[Batch]:
    """Batches of windows from the episodes in `paths`; the same arguments give the same stream.

    Shuffled: episode order, window phase and window order are drawn from `seed`, windows are mixed
    within a buffer of `buffer_windows` and grouped by length (less padding). Not shuffled: file
    order, phase 0, no grouping. Every input step of every episode appears exactly once.
    """
    rng = np.random.default_rng(seed)
    order = [paths[i] for i in rng.permutation(len(paths))] if shuffle else list(paths)
    buffer_windows = buffer_windows or BUFFER_BATCHES * batch_size
    pool: list[Window] = []

    def flush(final: bool) -> Iterator[Batch]:
        nonlocal pool
        if shuffle:
            pool = [pool[i] for i in rng.permutation(len(pool))]
            pool.sort(key=len, reverse=True)  # stable: equal lengths stay shuffled
        chunks = [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)]
        if not final and chunks and len(chunks[-1]) < batch_size:
            pool = chunks.pop()  # carried into the next buffer
        else:
            pool = []
        for i in (rng.permutation(len(chunks)) if shuffle else range(len(chunks))):
            yield collate(chunks[i], skip_ahead)

    for path, episode in zip(order, episodes(order, SERIES_SCHEMA)):
        if shapes is not None and (episode["mu"].shape[1], episode["action"].shape[1]) != shapes:
            raise DataError(f"{path}: z size {episode['mu'].shape[1]} / action size {episode['action'].shape[1]}"
                            f", but the folder's first file has {shapes[0]} / {shapes[1]}")
        length = len(episode["done"])
        offset = int(rng.integers(seq_len)) if shuffle and length > seq_len else 0
        pool.extend(cut_windows(episode, seq_len, skip_ahead, offset))
        if len(pool) >= buffer_windows:
            yield from flush(final=False)
    if pool:
        yield from flush(final=True)


def sample_z(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, drawn afresh every batch (the paper's augmentation)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def batch_losses(model: MDNRNN, batch: Batch, skip_ahead: int, device: torch.device,
                 generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Teacher-forced losses of one batch and, per part, how many entries they average over."""
    t = batch.to_torch(device)
    z = sample_z(t["z_mu"], t["z_logvar"], generator)
    steps = t["action"].shape[1]
    out, _ = model(z[:, :steps], t["action"], t["restart"])
    losses = {"z": gmm_nll(out.logpi, out.mu, out.logsigma, z[:, skip_ahead:skip_ahead + steps], t["z_mask"])}
    counts = {"z": int(batch.z_mask.sum())}
    if out.done_logit is not None:
        losses["done"] = done_loss(out.done_logit, t["done"], t["step_mask"])
        counts["done"] = batch.timesteps
    if out.reward is not None:
        losses["reward"] = reward_loss(out.reward, t["reward"], t["step_mask"])
        counts["reward"] = batch.timesteps
    losses["total"] = sum(losses[k] for k in LOSS_PARTS if k in losses)
    return losses, counts


def batch_seed(seed: int, *keys: int) -> int:
    """A reproducible seed for one batch's z noise, so a resumed epoch draws what the killed one would have."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


# -- data --------------------------------------------------------------------------------------------
@dataclass
class MDNData:
    """The series folder split by episode, and what the model must fit (env, sizes)."""

    env: str
    z_size: int
    action_size: int
    folder: SeriesFolder
    train: list[Path]
    val: list[Path]
    train_steps: int
    val_steps: int
    vae_sha256: str | None
    extra_folders: int = 0

    def line(self) -> str:
        val = f"{len(self.val)} validation episodes ({self.val_steps} steps)" if self.val else "no validation"
        more = f" (+ {self.extra_folders} more folders)" if self.extra_folders else ""
        return (f"{self.folder.folder}{more}: env {self.env}, z {self.z_size}, action {self.action_size}, "
                f"{len(self.train)} training episodes ({self.train_steps} steps), {val}")


def prepare_data(cfg: MDNTrainConfig) -> MDNData:
    """The series folder(s), each split by episode; extra folders must share the env, shapes and VAE."""
    folder = SeriesFolder(cfg.input_folder, flag="series folder")
    env = folder.env_name
    if env is None:
        raise DataError(f"{folder.folder}: no meta.json saying which env and VAE made these series; "
                        "make them with 03_generate_rnn_data.py")
    z_size, action_size = folder.first_episode_shapes()
    vae_sha256 = folder.meta.get("vae", {}).get("sha256")
    train: list[Path] = []
    val: list[Path] = []
    train_steps = val_steps = 0
    longest = 0
    for i, name in enumerate((cfg.input_folder, *cfg.extra_input_folders)):
        f = folder if i == 0 else SeriesFolder(name, flag="--extra_input_folders")
        if i and (f.env_name, f.meta.get("vae", {}).get("sha256")) != (env, vae_sha256):
            raise DataError(f"{f.folder}: series of env {f.env_name!r} from another VAE than {folder.folder}'s; "
                            "M can only learn one latent space")
        if i and f.first_episode_shapes() != (z_size, action_size):
            raise DataError(f"{f.folder}: z / action sizes {f.first_episode_shapes()} differ from "
                            f"{folder.folder}'s {(z_size, action_size)}")
        lengths = f.lengths()  # reads every file's small `done` array: a broken file fails now, not hours in
        train_idx, val_idx = split_by_episode(len(f), cfg.val_fraction)
        train += [f.paths[j] for j in train_idx]
        val += [f.paths[j] for j in val_idx]
        train_steps += int(lengths[train_idx].sum())
        val_steps += int(lengths[val_idx].sum())
        longest = max(longest, int(lengths[train_idx].max(initial=0)))
    if longest <= cfg.skip_ahead:
        raise UserError(f"--skip_ahead {cfg.skip_ahead}: no training episode is longer than that, "
                        "so there is no z target to learn from")
    return MDNData(env=env, z_size=z_size, action_size=action_size, folder=folder, train=train, val=val,
                   train_steps=train_steps, val_steps=val_steps, vae_sha256=vae_sha256,
                   extra_folders=len(cfg.extra_input_folders))


# -- progress and logging ----------------------------------------------------------------------------
@dataclass
class Progress(ProgressRecord):
    """Where training stands (epoch, batch, step (it drives the lr schedule) and these)."""

    epoch_timesteps: int = 0
    epoch_seconds: float = 0.0
    epoch_sums: dict[str, float] | None = None  # loss part -> sum of (batch mean * count)
    epoch_counts: dict[str, int] | None = None
    timesteps: int = 0
    seconds: float = 0.0
    best_loss: float | None = None  # validation loss (training loss without validation)
    best_epoch: int = 0

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = self.epoch_timesteps = 0
        self.epoch_seconds = 0.0
        self.epoch_sums = self.epoch_counts = None


class LossMeter:
    """Count-weighted means of each loss part over many batches; total = sum of the part means."""

    def __init__(self, sums: dict[str, float] | None = None, counts: dict[str, int] | None = None) -> None:
        self.sums = dict(sums or {})
        self.counts = dict(counts or {})

    def add(self, losses: dict[str, torch.Tensor], counts: dict[str, int]) -> None:
        for part, n in counts.items():
            self.sums[part] = self.sums.get(part, 0.0) + float(losses[part].detach()) * n
            self.counts[part] = self.counts.get(part, 0) + n

    def means(self) -> dict[str, float]:
        means = {p: self.sums[p] / self.counts[p] for p in self.sums if self.counts.get(p)}
        if means:
            means["total"] = sum(means.values())
        return means


class TrainSummary(BaseSummary):
    def line(self) -> str:
        p = self.progress
        best = f"best {_num(p.best_loss)} at epoch {p.best_epoch}"
        if self.finished_before:
            return (f"{self.savefolder}: already finished ({p.epoch} of {self.epochs} epochs done, {best}); "
                    "pass a larger --epochs to train further or --new_model to start over")
        row = self.last_row or {}
        speed = p.timesteps / p.seconds if p.seconds > 0 else 0.0
        parts = ", ".join(f"{k} {_num(row.get('train_' + k))}" for k in LOSS_PARTS if row.get("train_" + k) != "")
        return (f"{self.savefolder}: {p.epoch}/{self.epochs} epochs, {p.step} steps, {p.timesteps} timesteps, "
                f"{speed:.0f} timesteps/s | last epoch: train {_num(row.get('train_loss'))} ({parts}), "
                f"val {_num(row.get('val_loss'))} | {best} | {LAST_CHECKPOINT}, {BEST_CHECKPOINT}, {LOSSES_CSV}")


def _num(x: Any) -> str:
    return "-" if x is None or x == "" else f"{float(x):.4g}"


# -- training ----------------------------------------------------------------------------------------
class MDNTrainer(EpochTrainer):
    """One stage-04 run: the MDN-RNN, Adam and progress (resume, checkpoints, CSV: training/trainer.py)."""

    kind = "mdnrnn"
    progress_type = Progress

    def __init__(self, cfg: MDNTrainConfig, data: MDNData, device: torch.device, log: Any = print) -> None:
        super().__init__(cfg, data, device, log)
        spec = get_spec(data.env)
        self.seq_len = cfg.seq_len or ENV_SEQ_LEN.get(data.env, DEFAULT_SEQ_LEN)
        torch.manual_seed(cfg.seed)
        self.model = MDNRNN(
            z_size=data.z_size, action_size=data.action_size, hidden_size=cfg.hidden or spec.rnn_hidden,
            num_mixtures=cfg.num_mixtures or spec.num_mixtures, predict_done=spec.predict_done,
            predict_reward=spec.predict_reward if cfg.predict_reward is None else cfg.predict_reward,
        ).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    @property
    def config(self) -> dict[str, Any]:
        return {**self.model.config, "env": self.data.env}

    def extra(self) -> dict[str, Any]:
        return {"data": self.cfg.data_identity(self.seq_len), "vae_sha256": self.data.vae_sha256,
                "series_folder": str(Path(self.data.folder.folder).resolve()),
                "train": {"lr": self.cfg.lr, "min_lr": self.cfg.min_lr, "lr_decay": self.cfg.lr_decay,
                          "grad_clip": self.cfg.grad_clip}}

    def check_resumable(self, state: dict[str, Any]) -> None:
        extra = state.get("extra", {})
        theirs = extra.get("data", {})
        for key, value in self.cfg.data_identity(self.seq_len).items():
            if key in theirs and theirs[key] != value:
                raise DataError(f"{self.last_path}: was trained with --{key} {theirs[key]}, this run has "
                                f"--{key} {value}; rerun with the same value to continue, or {NEW_MODEL_HINT}")
        vae = extra.get("vae_sha256")
        if vae and self.data.vae_sha256 and vae != self.data.vae_sha256:
            raise DataError(f"{self.last_path}: was trained on series from another VAE than the one that made "
                            f"{self.data.folder.folder} (stage 03 was rerun); {NEW_MODEL_HINT}")

    def resumed(self) -> None:
        p = self.progress
        where = f"epoch {p.epoch + 1}" + (f" at batch {p.batch}" if p.batch else "")
        self.log(f"resuming from {self.last_path}: {where}, step {p.step}")

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        return iter_batches(self.data.train, self.cfg.batch_size, self.seq_len, self.cfg.skip_ahead,
                            seed=batch_seed(self.cfg.seed, epoch), shapes=(self.data.z_size, self.data.action_size))

    def set_lr(self) -> float:
        cfg = self.cfg
        lr = learning_rate(self.progress.step, cfg.lr, cfg.min_lr, cfg.lr_decay)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_epoch(self) -> None:
        """Train the running epoch to its end, checkpointing last.pt on the way (and on Ctrl-C)."""
        cfg, p = self.cfg, self.progress
        epoch = p.epoch + 1
        meter = LossMeter(p.epoch_sums, p.epoch_counts)
        bar = tqdm(total=self.data.train_steps, initial=p.epoch_timesteps, unit=" timesteps", unit_scale=True,
                   desc=f"epoch {epoch}/{cfg.epochs}", disable=None if cfg.progress else True, dynamic_ncols=True)
        last_save = time.monotonic()
        self.model.train()
        generator = torch.Generator(device=self.device)
        with bar, contextlib.closing(self.train_batches(epoch)) as stream:
            try:
                for index, batch in enumerate(stream):
                    if index < p.batch:
                        continue  # done before the run was interrupted
                    self.interrupts.check()
                    tick = time.perf_counter()
                    generator.manual_seed(batch_seed(cfg.seed, epoch, index))
                    self.set_lr()
                    losses, counts = batch_losses(self.model, batch, cfg.skip_ahead, self.device, generator)
                    self.optimizer.zero_grad(set_to_none=True)
                    losses["total"].backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_value_(self.model.parameters(), cfg.grad_clip)
                    self.optimizer.step()
                    meter.add(losses, counts)
                    p.batch += 1
                    p.step += 1
                    p.epoch_timesteps += batch.timesteps
                    p.timesteps += batch.timesteps
                    seconds = time.perf_counter() - tick
                    p.epoch_seconds += seconds
                    p.seconds += seconds
                    p.epoch_sums, p.epoch_counts = meter.sums, meter.counts
                    bar.update(batch.timesteps)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in meter.means().items()}, refresh=False)
                    now = time.monotonic()
                    if ((cfg.checkpoint_every_steps and p.step % cfg.checkpoint_every_steps == 0)
                            or now - last_save >= 60 * cfg.checkpoint_every_minutes):
                        self.save(self.last_path)
                        last_save = now
            except KeyboardInterrupt:
                self.save_if_behind()  # atomic; keeps every finished batch
                raise

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Losses over the held-out episodes, with the same z noise every epoch so epochs compare."""
        if not self.data.val:
            return {}
        self.model.eval()
        meter = LossMeter()
        generator = torch.Generator(device=self.device)
        batches = iter_batches(self.data.val, self.cfg.batch_size, self.seq_len, self.cfg.skip_ahead, seed=0,
                               shuffle=False, shapes=(self.data.z_size, self.data.action_size))
        with contextlib.closing(batches):
            for index, batch in enumerate(batches):
                self.interrupts.check()
                generator.manual_seed(batch_seed(self.cfg.seed, 0, index))  # training epochs count from 1
                meter.add(*batch_losses(self.model, batch, self.cfg.skip_ahead, self.device, generator))
        return meter.means()

    def end_epoch(self) -> dict[str, Any]:
        p = self.progress
        train = LossMeter(p.epoch_sums, p.epoch_counts).means()
        val = self.validate()
        row: dict[str, Any] = {
            "epoch": p.epoch + 1, "step": p.step, "timesteps": p.epoch_timesteps,
            "lr": learning_rate(max(p.step - 1, 0), self.cfg.lr, self.cfg.min_lr, self.cfg.lr_decay),
            "seconds": round(p.epoch_seconds, 2),
            "timesteps_per_s": round(p.epoch_timesteps / p.epoch_seconds, 1) if p.epoch_seconds > 0 else "",
        }
        for prefix, means in (("train", train), ("val", val)):
            row[f"{prefix}_loss"] = means.get("total", "")
            for part in LOSS_PARTS:
                row[f"{prefix}_{part}"] = means.get(part, "")
        self.log_row(CSV_FIELDS, row)
        p.next_epoch()
        score = val.get("total", train.get("total"))
        improved = score is not None and math.isfinite(score) and (p.best_loss is None or score < p.best_loss)
        if improved:
            p.best_loss, p.best_epoch = float(score), p.epoch
        if improved:  # best.pt before last.pt: a kill between them redoes the epoch and writes both
            self.save(self.best_path)
        self.save(self.last_path)
        parts = " ".join(f"{k} {_num(row['train_' + k])}" for k in LOSS_PARTS if row["train_" + k] != "")
        tqdm.write(f"epoch {p.epoch}/{self.cfg.epochs}: train {_num(row['train_loss'])} ({parts}) | "
                   f"val {_num(row['val_loss'])} | {_num(row['timesteps_per_s'])} timesteps/s"
                   + (" | best" if improved else ""))
        return row


def train_mdnrnn(cfg: MDNTrainConfig, log: Any = print) -> TrainSummary:
    """Stage 04 end to end: check inputs, resume or start, train to cfg.epochs; see the module doc."""
    cfg.check()
    device = resolve_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    data = prepare_data(cfg)
    trainer = MDNTrainer(cfg, data, device, log)

    def header() -> str:
        return (f"{data.line()} | model {trainer.config}, "
                f"{sum(p.numel() for p in trainer.model.parameters()):,} parameters | seq_len {trainer.seq_len}, "
                f"skip_ahead {cfg.skip_ahead} | device {device}")

    return run_epochs(trainer, TrainSummary(Path(cfg.savefolder), trainer.progress, cfg.epochs), header)
