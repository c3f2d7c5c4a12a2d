"""Shared test helpers: run stage scripts as a user would, in a scratch working folder."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
# The tests' models are tiny: a second intra-op thread only waits on the first, and while another process
# holds the other core (a stage's worker, a Ray node) each op waits out a scheduler slice, several times slower.
# Stage subprocesses inherit the setting; the tests that set threads themselves still do.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# A runner started in the background (nohup, setsid, `&` in a script) hands its processes SIGINT ignored, and
# Python keeps it so; the tests of Ctrl-C need it delivered as at a terminal, here and in the stages they start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    """Every test runs in its own folder, so nothing (e.g. ViZDoom files) can land in the repo."""
    monkeypatch.chdir(tmp_path)
    yield
    assert not (tmp_path / "_vizdoom").exists(), "ViZDoom littered the working folder"
    assert not (tmp_path / "_vizdoom.ini").exists(), "ViZDoom littered the working folder"


def run_stage(script: str, *args: object, timeout: float = 300, check: bool = True,
              **popen) -> subprocess.CompletedProcess:
    """Run `python <script> args...` from the current folder; return the finished process."""
    cmd = [sys.executable, str(ROOT / script), *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                             f"stderr:\n{result.stderr}")
    return result


_STAGE_MODULES: dict = {}


def run_cli(script: str, *args: object, check: bool = True) -> subprocess.CompletedProcess:
    """A stage's main() run in this process, with exit code and output as run_stage would give them.

    Saves the ~2 s torch import of a subprocess; each stage still has tests that run the real script.
    """
    import contextlib
    import importlib.util
    import io

    import torch

    from common.cli import run_main

    if script not in _STAGE_MODULES:
        spec = importlib.util.spec_from_file_location(f"stage_{script[:2]}", ROOT / script)
        _STAGE_MODULES[script] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_STAGE_MODULES[script])
    out, err, argv, code = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = [str(ROOT / script), *map(str, args)]
    threads, on_sigterm = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_main(_STAGE_MODULES[script].main)
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, on_sigterm)  # run_main made SIGTERM a Ctrl-C; pytest's stays its own
    result = subprocess.CompletedProcess(sys.argv, code, out.getvalue(), err.getvalue())
    if check and code:
        raise AssertionError(f"{script} exited {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@dataclass(frozen=True)
class Proc:
    state: str  # "R", "S", ... "Z" for a zombie (ended, not yet reaped)
    parent: int
    group: int  # process group: each pool worker leads its own
    session: int
    program: bytes  # argv[0], e.g. the ViZDoom engine's path


def processes() -> dict[int, Proc]:
    """Every process on the machine now, read from /proc, for the tests that kill workers and look for orphans."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            program = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError):
            continue  # ended while we looked
        table[int(entry.name)] = Proc(fields[0], int(fields[1]), int(fields[2]), int(fields[3]), program)
    return table


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, one line on stderr that mentions every needle, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def script_parser(script: str) -> argparse.ArgumentParser:
    """The ArgumentParser a script's main() parses with (its build_parser())."""
    return importlib.import_module(Path(script).stem).build_parser()


def assert_every_flag_has_its_own_help(parser: argparse.ArgumentParser, where: str = "") -> None:
    """Each flag (and each subcommand) but -h/--help has a help text, shown by --help, that no other flag of
    the parser shares; the texts format (no broken %(default)s)."""
    seen: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        entries = ([(f"subcommand {c.dest}", c.help) for c in action._choices_actions]
                   if isinstance(action, argparse._SubParsersAction) else
                   [("/".join(action.option_strings) or action.dest, action.help)])
        for flag, text in entries:
            assert isinstance(text, str) and text.strip() and text != argparse.SUPPRESS, \
                f"{where}{flag} has no help text"
            assert text not in seen, f"{where}{flag} has the same help text as {seen[text]}: {text!r}"
            seen[text] = flag
    parser.format_help()
