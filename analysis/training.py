"""Training curves of V, M and the controller from the CSV logs the stages write."""

from __future__ import annotations

import math
from pathlib import Path

from common.csvlog import read_csv
from common.errors import DataError, UserError
from common.plot import line_chart

# (file under logdir, output name, title, x column, [(column, legend)...], y label)
CHARTS = [
    ("vae/losses.csv", "training_vae.png", "V (VAE) loss per epoch", "epoch",
     [("train_loss", "train total"), ("val_loss", "validation total"), ("train_recon", "train reconstruction"),
      ("val_recon", "validation reconstruction"), ("train_kl", "train KL (after tolerance)"),
      ("val_kl", "validation KL")], "loss"),
    ("mdnrnn/losses.csv", "training_mdnrnn.png", "M (MDN-RNN) loss per epoch", "epoch",
     [("train_loss", "train total"), ("val_loss", "validation total"), ("train_z", "train z NLL"),
      ("val_z", "validation z NLL"), ("train_done", "train done BCE"), ("val_done", "validation done BCE")],
     "loss"),
    ("controller/log.csv", "training_controller.png", "C (controller) CMA-ES progress in the dream", "generation",
     [("mean_fitness", "population mean fitness"), ("max_fitness", "population best fitness"),
      ("eval_score", "evaluation of the mean (dream)"), ("best_eval", "best evaluation so far")], "score"),
]


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def training(logdir: Path, out: Path) -> list[Path]:
    """One chart per CSV that exists; a note for each that does not; an error if there are none."""
    logdir, written = Path(logdir), []
    for csv_name, png, title, x_col, columns, ylabel in CHARTS:
        path = logdir / csv_name
        if not path.is_file():
            print(f"training: no {path}; skipping that chart")
            continue
        try:
            rows = read_csv(path)
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: unreadable ({e})") from None
        if not rows or x_col not in rows[0]:
            print(f"training: {path} has no rows with a {x_col!r} column; skipping that chart")
            continue
        xs = [_number(r.get(x_col)) for r in rows]
        series = {}
        for column, legend in columns:
            points = [(x, _number(r.get(column))) for x, r in zip(xs, rows)]
            points = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
            if points:
                series[legend] = ([p[0] for p in points], [p[1] for p in points])
        if not series:
            print(f"training: {path} has no numbers to plot; skipping that chart")
            continue
        out.mkdir(parents=True, exist_ok=True)
        line_chart(series, out / png, f"{title} ({path})", x_col, ylabel, size=(820, 440))
        written.append(out / png)
    if not written:
        raise UserError(f"--logdir {logdir}: no training logs (vae/losses.csv, mdnrnn/losses.csv, "
                        "controller/log.csv) to plot")
    return written
