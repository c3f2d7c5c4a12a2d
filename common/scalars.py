"""TensorBoard scalars beside the CSV logs (optional; `--tensorboard`): the CSV stays the source of truth.

Every row a stage appends to its CSV (an epoch of V or M, a CMA-ES generation) is also written as
scalars to `<savefolder>/tensorboard/`, so `tensorboard --logdir runs/` shows every run's loss terms,
throughput and fitness. A resumed run purges what the interrupted one logged past its checkpoint, as
the CSV does. Without the `tensorboard` package the flag is a one-line error saying how to install it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from common.errors import UserError

TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_INSTALL = "pip install tensorboard"


def require_tensorboard() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        raise UserError(f"--tensorboard needs the tensorboard package, which is not installed; "
                        f"install it with `{TENSORBOARD_INSTALL}`")


class ScalarMirror:
    """Writes CSV rows as scalars, keyed by the row's `step_key` (epoch, generation)."""

    def __init__(self, folder: str | Path, step_key: str, next_step: int) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.step_key = step_key
        # purge_step: points at or after it from an interrupted earlier run are dropped
        self.writer = SummaryWriter(str(Path(folder) / TENSORBOARD_DIR), purge_step=next_step)

    def write(self, row: dict[str, Any]) -> None:
        step = int(float(row[self.step_key]))
        for key, value in row.items():
            if key == self.step_key or isinstance(value, bool):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue  # empty cells (no validation this epoch) and text
            if math.isfinite(number):
                self.writer.add_scalar(key, number, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
