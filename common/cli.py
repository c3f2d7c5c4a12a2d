"""CLI conventions shared by the stage scripts: flag validators, one-line errors, exit code 2."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from common.errors import UserError
from common.folders import output_file_error
from common.stops import sigterm_as_ctrl_c

EXIT_USAGE = 2


class _DefaultsFormatter(argparse.HelpFormatter):
    """Append "(default: X)" unless the help already speaks of the default or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        no_default = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or no_default or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and defaults shown in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a stage's main(); turn a UserError into one line on stderr and exit code 2.

    SIGTERM (`kill PID`, a batch scheduler's stop) stops the stage as Ctrl-C does, finished work kept:
    a job started in the background ignores SIGINT, so SIGTERM is how one stops it cleanly.
    """
    prog = Path(sys.argv[0]).name
    sigterm_as_ctrl_c()
    try:
        code = main()
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:  # e.g. `| head` closed stdout; nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished work is kept, rerun the same command to continue",
              file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


# Ceilings for absurd values: past them numpy/torch/C code overflows (seeds, counts), or one batch, list or
# process pool would exhaust the machine long before any result; nothing sensible needs more.
MAX_INT = 2**31 - 1
MAX_WORKERS = 1024  # processes (or Ray tasks) at once
MAX_EPISODES = 1_000_000  # episodes scored, evaluated or calibrated in one command
MAX_STEPS = 10_000_000  # steps per episode
MAX_TEMPERATURE = 100.0  # dream temperature: sigma grows as sqrt(tau); the paper's largest is 1.3


def positive_int(text: str) -> int:
    return _int_in(text, 1, MAX_INT)


def non_negative_int(text: str) -> int:
    return _int_in(text, 0, MAX_INT)


def int_in(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in [low, high]."""
    return lambda text: _int_in(text, low, high)


def float_in(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a number in [low, high] ((low, high] with low_open)."""
    def check(text: str) -> float:
        value = _parse(float, text, "a number")
        if not ((low < value) if low_open else (low <= value)):  # nan too
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {text}")
        if not value <= high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    return check


def _int_in(text: str, low: int, high: int) -> int:
    value = _parse(int, text, "an integer")
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}" if low != 1 else f"must be > 0, got {value}")
    if value > high:
        raise argparse.ArgumentTypeError(f"must be <= {high:,}, got {value}")
    return value


def dream_temperature(text: str) -> float:
    """A dream temperature: 0 (M's mean) up to MAX_TEMPERATURE."""
    return float_in(0.0, MAX_TEMPERATURE)(text)


def positive_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {text}")
    return value


def finite_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _parse(float, text, "a number")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 and finite, got {text}")
    return value


def fraction(text: str) -> float:
    """A value in [0, 1)."""
    return _float_in(text, 0.0, 1.0, high_open=True)


def decay(text: str) -> float:
    """A multiplicative decay in (0, 1]."""
    value = _float_in(text, 0.0, 1.0, high_open=False)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _float_in(text: str, low: float, high: float, high_open: bool) -> float:
    value = _parse(float, text, "a number")
    if not (low <= value < high if high_open else low <= value <= high):
        raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}{')' if high_open else ']'}, got {text}")
    return value


def add_training_flags(p: argparse.ArgumentParser, outputs: str) -> None:
    """Flags stages 02 and 04 share: seeding, threads, device, starting over, checkpoint cadence."""
    from common.device import DEVICE_HELP  # torch-free callers of this module should not pay for torch

    p.add_argument("--num_threads", type=int_in(1, MAX_WORKERS), default=None,
                   help="torch intra-op threads for training (default: torch's, one per core)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--new_model", action="store_true", help=f"start over: ignore and replace {outputs}")
    p.add_argument("--checkpoint_every_minutes", type=positive_float, default=10.0,
                   help="also write last.pt this often within an epoch, so a kill loses at most this much")
    p.add_argument("--checkpoint_every_steps", type=non_negative_int, default=0,
                   help="also write last.pt every this many steps within an epoch (0 = by time only)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_tensorboard_flag(p)


def add_tensorboard_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensorboard", action="store_true",
                   help="also write each losses.csv / log.csv row as TensorBoard scalars under "
                        "<savefolder>/tensorboard (needs `pip install tensorboard`)")


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"key\": 1}'")
    return value


def _parse(kind: type, text: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def default_logdir(env_name: str) -> Path:
    """runs/<env>, with characters that are awkward in folder names replaced."""
    return Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", env_name)


def output_file(*suffixes: str) -> Callable[[str], str]:
    """argparse type for a single output file (e.g. --record FILE.gif): refused before any work if it could
    not be written, so a long run never ends in a failed save."""
    def check(text: str) -> str:
        problem = output_file_error(text, suffixes)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text

    return check
