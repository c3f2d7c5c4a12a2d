"""Shared test helpers: run stage scripts as a user would, in a scratch working folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


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


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, one line on stderr that mentions every needle, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
