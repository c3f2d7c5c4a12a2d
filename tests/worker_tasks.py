"""Task functions for WorkerPool tests; they live in a module so spawn workers can import them."""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def die_once(marker: str, value: int) -> int:
    """Kill the worker process the first time (no marker yet), succeed on the retry."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(3)
    return value


def always_die() -> None:
    os._exit(4)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def hang_once(marker: str, seconds: float) -> str:
    if not Path(marker).exists():
        Path(marker).touch()
        time.sleep(seconds)
    return "done"


def broken_initializer() -> None:
    raise RuntimeError("cannot load the model")
