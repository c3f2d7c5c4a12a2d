"""Stage 07 on a tiny real pipeline: the controller's episodes are collected, M continues, a new C trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli, run_stage

from common.checkpoints import load_checkpoint
from common.csvlog import read_csv
from common.pipeline import stages
from common.seeds import ROUND_SEED_BASE, round_first_seed
from control.iterate import base_series_folder, collection_steps
from data.rollouts import RolloutFolder
from envs.registry import get_spec


def tiny_run(tmp_path):
    run = tmp_path / "run"
    run_cli("01_generate_data.py", "doom", "--total_episodes", 4, "--max_steps", 40, "--workers", 2,
            "--logdir", run, "--no_progress")
    run_cli("02_train_vae.py", "--logdir", run, "--epochs", 1, "--z_size", 8, "--batch_size", 16,
            "--no_progress")
    run_cli("03_generate_rnn_data.py", "--logdir", run, "--no_progress")
    run_cli("04_train_mdnrnn.py", "--logdir", run, "--epochs", 1, "--hidden", 16, "--batch_size", 2,
            "--seq_len", 20, "--val_fraction", 0.25, "--no_progress")
    run_cli("05_train_controller.py", "--logdir", run, "--pop_size", 4, "--num_rollouts", 2, "--max_steps", 60,
            "--eval_every", 1, "--eval_episodes", 2, "--max_generations", 1, "--calibration_episodes", 0,
              "--no_progress")
    return run


def test_one_round_then_resume(tmp_path):
    run = tiny_run(tmp_path)
    args = ["--logdir", run, "--episodes", 3, "--explore", 0.5, "--mdnrnn_epochs", 1, "--generations", 1,
            "--eval_every", 1, "--eval_episodes", 2, "--calibration_episodes", 2, "--test_episodes", 2,
            "--seed", 3, "--average_of", 2, "--workers", 2, "--no_progress"]
    out = run_stage("07_iterative_training.py", *args, "--rounds", 1, timeout=600).stdout
    here = run / "iterate" / "round_1"
    rollouts = RolloutFolder(here / "rollouts")
    assert len(rollouts) == 3 and rollouts.meta["seed"] == round_first_seed(1, 3) == ROUND_SEED_BASE + 30_000
    assert rollouts.meta["agent"]["explore"] == 0.5
    assert all(np.isfinite(rollouts[i]["action"]).all() for i in range(3))
    m = load_checkpoint(here / "mdnrnn" / "last.pt", "mdnrnn")
    assert m["progress"]["epoch"] == 2  # continued from the run's 1-epoch M
    assert Path(m["extra"]["series_folder"]) == (run / "series").resolve()  # absolute: any working directory
    assert (here / "controller" / "best.pt").exists() and (here / "controller" / "calibration.csv").exists()
    runs = [load_checkpoint(here / "controller" / f"run_{k}" / "best.pt", "controller") for k in (0, 1)]
    assert [r["config"]["seed"] for r in runs] == [1, 2]  # the run's C seed (0) + the round, then + 1
    assert load_checkpoint(here / "controller" / "best.pt", "controller")["config"]["average_of"] == 2
    rows = read_csv(run / "iterate" / "rounds.csv")
    assert len(rows) == 1 and rows[0]["round"] == "1" and float(rows[0]["real_mean"]) > 0
    assert "round 1: M 2 epochs" in out
    again = run_cli("07_iterative_training.py", *args, "--rounds", 1).stdout
    assert "round 1: finished before" in again and len(read_csv(run / "iterate" / "rounds.csv")) == 1
    # run_all's recipes score the last round's controller with its own M, as this stage 06 command does
    score = next(s for s in stages("doom", "tiny") if s.name == "06_round").command(run, "cpu")
    scored = run_stage(Path(score[1]).name, *score[2:]).stdout
    assert "controller (real)" in scored
    assert (run / "scores" / "real_controller_iterate_round_1_controller.csv").exists()


@pytest.mark.parametrize("env, env_kwargs, cap", [
    ("doom", {}, 2100), ("carracing", {}, 1000), ("binpacking", {"preset": "wmd", "horizon": 37}, 37)])
def test_rounds_cap_episodes_at_stage_01s_steps_else_the_envs_own(env, env_kwargs, cap):
    spec = get_spec(env)
    assert collection_steps({"max_steps": 55}, spec, env_kwargs) == 55
    assert collection_steps({}, spec, env_kwargs) == cap == spec.episode_steps(env_kwargs)


def test_needs_a_finished_run(tmp_path):
    result = run_stage("07_iterative_training.py", "--logdir", tmp_path / "nothing", check=False)
    assert_one_line_error(result, "nothing", "no such folder")


def test_base_series_is_the_recorded_folder_else_the_runs_own(tmp_path, monkeypatch):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (run / "series").mkdir(parents=True)
    (elsewhere / "series").mkdir(parents=True)
    assert base_series_folder({"extra": {"series_folder": str(elsewhere / "series")}}, run) == elsewhere / "series"
    # M trained with `--logdir run` from tmp_path; stage 07 now runs from another working directory
    monkeypatch.chdir(elsewhere)
    assert base_series_folder({"extra": {"series_folder": "run/series"}}, run) == run / "series"
    assert base_series_folder({}, run) == run / "series"
