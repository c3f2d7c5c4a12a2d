"""Stage 05: CMA-ES in the dream and in the real env, resume, config checks, a worker killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, assert_one_line_error, run_stage
from world_fixture import make_tiny_world

from common.checkpoints import load_checkpoint
from common.csvlog import read_csv

SMALL = ["--pop_size", 6, "--num_rollouts", 3, "--max_steps", 60, "--eval_every", 2, "--eval_episodes", 16]


def test_dream_training_writes_logs_checkpoints_and_resumes(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    out = run_stage("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 2).stdout
    assert "2 generations done" in out and "best eval" in out
    ctrl = run / "controller"
    assert {"es_state.pkl", "last.pt", "best.pt", "log.csv", "progress.png"} <= {p.name for p in ctrl.iterdir()}
    rows = read_csv(ctrl / "log.csv")
    assert [r["generation"] for r in rows] == ["1", "2"] and rows[1]["eval_score"] and not rows[0]["eval_score"]
    best = load_checkpoint(ctrl / "best.pt", "controller")
    assert best["model"]["params"].numel() == 8 + 16 + 16 and best["progress"]["generation"] == 2

    run_stage("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 3)
    assert [r["generation"] for r in read_csv(ctrl / "log.csv")] == ["1", "2", "3"]
    again = run_stage("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 3).stdout
    assert "3 generations done" in again and len(read_csv(ctrl / "log.csv")) == 3

    run_stage("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1, "--new_model")
    assert len(read_csv(ctrl / "log.csv")) == 1


def test_resume_with_other_settings_is_refused(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    run_stage("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1)
    result = run_stage("05_train_controller.py", "--logdir", run, *SMALL[2:], "--pop_size", 8,
                       "--max_generations", 2, check=False)
    assert_one_line_error(result, "pop_size=6", "--new_model")


def test_target_return_stops_early(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    out = run_stage("05_train_controller.py", "--logdir", run, *SMALL, "--eval_every", 1,
                    "--target_return", 1, "--max_generations", 5).stdout
    assert "target return reached" in out and len(read_csv(run / "controller" / "log.csv")) == 1


def test_real_mode_runs_in_worker_processes(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    out = run_stage("05_train_controller.py", "--logdir", run, "--mode", "real", "--pop_size", 4,
                    "--num_rollouts", 2, "--max_steps", 15, "--eval_every", 2, "--eval_episodes", 2,
                    "--max_generations", 2, "--workers", 2).stdout
    assert "2 generations done" in out
    rows = read_csv(run / "controller" / "log.csv")
    assert float(rows[0]["mean_length"]) <= 15 and float(rows[1]["eval_score"]) > 0


def _worker_pids(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(int(entry.name))
    return pids


def test_worker_killed_mid_generation_is_replaced(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    cmd = [sys.executable, str(ROOT / "05_train_controller.py"), "--logdir", str(run), "--mode", "real",
           "--pop_size", 4, "--num_rollouts", 4, "--max_steps", 400, "--eval_every", 5, "--eval_episodes", 2,
           "--max_generations", 1, "--workers", 2, "--no_progress"]
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    workers = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = _worker_pids(proc.pid)
        time.sleep(0.1)
    assert workers, "no worker processes appeared"
    time.sleep(3.0)  # let them load V and M and get into episodes
    if proc.poll() is not None:
        pytest.skip("generation finished before the kill")
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert "worker process died (exit code -9)" in err and "retrying" in err
    assert "1 generations done" in out


def test_missing_models_are_one_line_errors(tmp_path):
    result = run_stage("05_train_controller.py", "--logdir", tmp_path / "nothing", check=False)
    assert_one_line_error(result, "no such checkpoint file", "mdnrnn")
    run = make_tiny_world(tmp_path / "run")
    (run / "series" / "initial_z.npz").unlink()
    result = run_stage("05_train_controller.py", "--logdir", run, *SMALL, check=False)
    assert_one_line_error(result, "initial_z.npz", "stage 03")
    result = run_stage("05_train_controller.py", "--logdir", run, "--pop_size", 1, check=False)
    assert_one_line_error(result, "--pop_size")
