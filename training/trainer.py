"""What stages 02 (V) and 04 (M) share: resume from last.pt, checkpoints, the CSV log, best.pt.

A stage subclasses EpochTrainer and fills in its model (`kind`, `config`, `extra`), its epoch
(`train_epoch`) and its end of epoch (`end_epoch`, which validates and returns the CSV row); the base
class owns where training stands and how it survives a kill:

- `last.pt` holds weights, optimizer and the Progress record, so a rerun continues at the saved step;
  a checkpoint for another model or data is refused with a hint to start over;
- the CSV log is trimmed to the epochs last.pt covers (a kill between the row and the checkpoint);
- `best.pt` (weights for use, no optimizer) follows the best validation loss;
- on the way out (Ctrl-C, a corrupt file), the steps trained since the last checkpoint are saved; Ctrl-C
  is held until the loops reach a safe point (`self.interrupts.check()`), so that state is never torn.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from common.atomic import remove_stale_temp_files
from common.checkpoints import load_checkpoint, load_state_dict_checked, save_checkpoint
from common.csvlog import CsvLog, drop_rows_after
from common.errors import DataError, UserError
from common.folders import ensure_writable_dir
from common.scalars import ScalarMirror, require_tensorboard
from training.interrupts import DeferredInterrupt

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOSSES_CSV = "losses.csv"
NEW_MODEL_HINT = "use --new_model to start over (or another --savefolder)"


@dataclass
class ProgressRecord:
    """Fields every stage keeps; a stage's Progress adds its own. Stored in every checkpoint."""

    epoch: int = 0  # finished epochs; the running epoch is epoch + 1
    batch: int = 0  # batches done in the running epoch
    step: int = 0  # optimizer steps, all epochs

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProgressRecord:
        """Older checkpoints may lack newer fields; those keep their defaults."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class TrainSummary:
    """What a run did; each stage words its own `line()`."""

    savefolder: Path
    progress: Any
    epochs: int
    last_row: dict[str, Any] | None = None
    finished_before: bool = False

    def line(self) -> str:
        raise NotImplementedError


class EpochTrainer:
    """One run of a stage: model, optimizer and progress, resumed from last.pt unless told to start over."""

    kind: str  # checkpoint kind ("vae", "mdnrnn")
    progress_type: type[ProgressRecord]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def __init__(self, cfg: Any, data: Any, device: torch.device, log: Any = print) -> None:
        self.cfg, self.data, self.device, self.log = cfg, data, device, log
        self.folder = Path(cfg.savefolder)
        self.last_path = self.folder / LAST_CHECKPOINT
        self.best_path = self.folder / BEST_CHECKPOINT
        self.csv_path = self.folder / LOSSES_CSV
        self.progress = self.progress_type()
        self._saved_step = 0  # the step last.pt holds
        self.scalars: ScalarMirror | None = None  # --tensorboard
        self.interrupts = DeferredInterrupt()  # call .check() where a Ctrl-C may stop the run

    # -- filled in by each stage --------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (model shape, env)."""
        raise NotImplementedError

    def extra(self) -> dict[str, Any]:
        """More to store in checkpoints (training settings, where the data came from)."""
        return {}

    def other_outputs(self) -> list[Path]:
        """Files besides last.pt, best.pt and the CSV that starting over removes."""
        return []

    def check_resumable(self, state: dict[str, Any]) -> None:
        """Refuse (DataError) a last.pt made from other data; called before anything is loaded."""

    def resumed(self) -> None:
        """After last.pt is loaded into a run that has epochs left: settle and report."""

    def train_epoch(self) -> None:
        raise NotImplementedError

    def end_epoch(self) -> dict[str, Any]:
        """Validate, log the CSV row, move progress to the next epoch, save; return the row."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------------
    def log_row(self, fields: list[str], row: dict[str, Any]) -> None:
        """The epoch's CSV row (and its TensorBoard scalars with --tensorboard)."""
        CsvLog(self.csv_path, fields, mirror=self.scalars).append(row)

    @property
    def finished(self) -> bool:
        return self.progress.epoch >= self.cfg.epochs

    def start_or_resume(self) -> None:
        """Load last.pt (refusing one made for another model or data), or clean up for a fresh start."""
        remove_stale_temp_files(self.folder)
        if self.cfg.new_model or not self.last_path.exists():
            for stale in [self.last_path, self.best_path, self.csv_path, *self.other_outputs()]:
                stale.unlink(missing_ok=True)
            return
        try:
            state = load_checkpoint(self.last_path, self.kind, expect=self.config, hint=NEW_MODEL_HINT)
        except DataError as e:
            raise DataError(str(e) if "--new_model" in str(e) else f"{e}; {NEW_MODEL_HINT}") from None
        self.check_resumable(state)
        load_state_dict_checked(self.model, state, self.last_path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{self.last_path}: optimizer state does not fit ({e}); {NEW_MODEL_HINT}") from None
        self.progress = self.progress_type.from_dict(state.get("progress", {}))
        self._saved_step = self.progress.step
        try:
            drop_rows_after(self.csv_path, "epoch", self.progress.epoch)
        except (ValueError, TypeError, csv.Error, UnicodeDecodeError):
            raise DataError(f"{self.csv_path}: not a losses file of this stage; {NEW_MODEL_HINT}") from None
        if not self.finished:
            self.resumed()

    def save(self, path: Path) -> None:
        optimizer = self.optimizer if path == self.last_path else None  # best.pt is for use, not resuming
        save_checkpoint(path, self.kind, self.config, self.model, optimizer, asdict(self.progress), self.extra())
        if path == self.last_path:
            self._saved_step = self.progress.step

    def save_if_behind(self) -> None:
        """On the way out (Ctrl-C, a corrupt file): keep the steps trained since the last checkpoint."""
        if self.progress.step != self._saved_step and not self.interrupts.torn:
            self.save(self.last_path)


def run_epochs(trainer: EpochTrainer, summary: TrainSummary, header: Any) -> TrainSummary:
    """Resume or start, then train to cfg.epochs; `header()` gives the line logged before training."""
    if getattr(trainer.cfg, "tensorboard", False):
        require_tensorboard()
    ensure_writable_dir(trainer.cfg.savefolder, "--savefolder")
    trainer.start_or_resume()
    if getattr(trainer.cfg, "tensorboard", False):
        trainer.scalars = ScalarMirror(trainer.folder, "epoch", next_step=trainer.progress.epoch + 1)
    summary.progress = trainer.progress
    if trainer.finished:
        summary.finished_before = True
        return summary
    trainer.log(header())
    with trainer.interrupts:
        while not trainer.finished:
            trainer.train_epoch()
            try:
                summary.last_row = trainer.end_epoch()
            except (KeyboardInterrupt, UserError):  # e.g. a corrupt validation file: the epoch's training is kept
                trainer.save_if_behind()
                raise
    summary.progress = trainer.progress
    if trainer.scalars is not None:
        trainer.scalars.close()
    return summary
