"""Append-only CSV metrics: the source of truth for loss curves, readable by anything."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from common.atomic import atomic_path


class CsvLog:
    """Append rows to `path` (header written once); a resumed run keeps appending to the same file."""

    def __init__(self, path: str | Path, fields: list[str], mirror: Any = None) -> None:
        self.path = Path(path)
        self.fields = fields
        self.mirror = mirror  # e.g. common.scalars.ScalarMirror: each row also goes there
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(fields)
            return
        with open(self.path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != fields and set(header) <= set(fields):  # a log from a version with fewer columns
            write_csv(self.path, fields, read_csv(self.path))  # its rows under the new header, new columns blank

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(
                {k: _fmt(row.get(k, "")) for k in self.fields})
        if self.mirror is not None:
            self.mirror.write({k: row.get(k, "") for k in self.fields})


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: str | Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """A whole table at once (atomic), through the csv module, so a label with commas or quotes stays in its column."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def drop_rows_after(path: str | Path, field: str, last: float) -> None:
    """Remove rows whose `field` exceeds `last` (work a killed run logged but did not checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    rows = read_csv(path)
    kept = [r for r in rows if r.get(field, "") == "" or float(r[field]) <= last]
    if len(kept) == len(rows):
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(kept)
