"""Training curves of V, M and the controller from the CSV logs the stages write."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from common.checkpoints import load_checkpoint
from common.csvlog import read_csv
from common.errors import DataError, UserError
from common.plot import line_chart

# The reference's CarRacing run (hardmaru's log, first 200 generations of 64 x 16): env frames per generation
# from its mean episode length, plus 1,024 x ~1,000 frames per eval of the CMA mean (every 25 generations).
REFERENCE_CARRACING = Path(__file__).with_name("reference_carracing.csv")
MIN_REFERENCE_FRAMES = 27e6  # always show the reference up to its first eval (823 at 26.5 M frames)

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
    ("controller/log.csv", "training_controller.png", "C (controller) CMA-ES progress", "generation",
     [("mean_fitness", "population mean fitness"), ("max_fitness", "population best fitness"),
      ("eval_score", "evaluation of the CMA mean"), ("best_eval", "best evaluation so far")], "score"),
]


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def training(logdir: Path, out: Path, compare: Sequence[Path] = ()) -> list[Path]:
    """One chart per CSV that exists; a note for each that does not; an error if there are none.

    `compare`: other CarRacing run folders whose CMA-ES curves join the chart against the reference (e.g. a
    second training seed), so runs of one recipe are read on the same axes.
    """
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
    frames_chart = controller_against_reference(logdir, out, compare)
    if frames_chart is not None:
        written.append(frames_chart)
    if not written:
        raise UserError(f"--logdir {logdir}: no training logs (vae/losses.csv, mdnrnn/losses.csv, "
                        "controller/log.csv) to plot")
    return written


def controller_against_reference(logdir: Path, out: Path, compare: Sequence[Path] = ()) -> Path | None:
    """CarRacing: our CMA-ES curve (and `compare`'s) against the reference's at the same env frame counts.

    None when logdir is not a CarRacing run with a frames column.
    """
    rows = _carracing_controller_log(logdir)
    if rows is None:
        return None
    others = {}
    for other in compare:
        other_rows = _controller_log_with_frames(Path(other) / "controller" / "log.csv")
        if not other_rows:
            raise UserError(f"--compare {other}: no controller/log.csv with env frames there")
        name = Path(other).resolve().name
        others[name if name not in others and name != Path(logdir).resolve().name else str(other)] = other_rows
    named = bool(others)
    ours = Path(logdir).resolve().name if named else "ours"
    runs = {ours: rows, **others}
    reach = max(max(_number(r["frames"]) for r in table) for table in runs.values()) / 1e6 * 1.25
    reach = max(reach, MIN_REFERENCE_FRAMES / 1e6)
    reference = [r for r in read_csv(REFERENCE_CARRACING) if _number(r["frames"]) / 1e6 <= reach]
    curves = [(f"{ours}: eval of the CMA mean", rows, "eval_score"),
              (f"{ours}: best candidate", rows, "max_fitness"),
              (f"{ours}: population mean", rows, "mean_fitness")]
    for name, table in others.items():
        curves += [(f"{name}: eval of the CMA mean", table, "eval_score"),
                   (f"{name}: population mean", table, "mean_fitness")]
    curves += [("reference: eval of the CMA mean", reference, "eval_of_mean"),
               ("reference: best candidate", reference, "pop_max"),
               ("reference: population mean", reference, "pop_mean")]
    series = {}
    for legend, table, column in curves:
        points = [(_number(r["frames"]) / 1e6, _number(r.get(column))) for r in table]
        points = [(x, y) for x, y in points if math.isfinite(y)]
        if points:
            series[legend] = ([p[0] for p in points], [p[1] for p in points])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "training_controller_vs_reference.png"
    title = "CarRacing CMA-ES: " + ("our runs" if named else "ours") + " vs the reference (64 x 16) by env frames"
    line_chart(series, path, title, "env frames (millions)", "return", size=(900, 480 + 14 * max(0, len(series) - 6)))
    return path


def _carracing_controller_log(logdir: Path) -> list[dict] | None:
    """The rows of a CarRacing run's controller/log.csv that have env frames; None for another env or no log."""
    log_path, checkpoint = logdir / "controller" / "log.csv", logdir / "controller" / "last.pt"
    if not (log_path.is_file() and checkpoint.is_file()):
        return None
    if load_checkpoint(checkpoint, "controller").get("config", {}).get("env") != "carracing":
        return None
    rows = _controller_log_with_frames(log_path)
    if not rows:
        print(f"training: {log_path} has no frames column (written before it existed); no reference chart")
        return None
    return rows


def _controller_log_with_frames(log_path: Path) -> list[dict]:
    """Rows of a stage-05 log that count env frames ([] if the file is missing or unreadable)."""
    try:
        rows = read_csv(log_path)
    except (OSError, UnicodeDecodeError):
        return []
    return [r for r in rows if math.isfinite(_number(r.get("frames")))]
