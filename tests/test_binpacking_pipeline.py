"""All six stages on bin packing at toy sizes, and on a VizDoom Gymnasium id given by its bare name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli, run_stage

from common.csvlog import read_csv
from control.world import WorldPaths, load_world
from envs.dream import DreamEnv


@pytest.fixture(scope="module")
def tiny_binpacking(tmp_path_factory):
    run = tmp_path_factory.mktemp("bp") / "run"
    run_stage("01_generate_data.py", "binpacking", "--logdir", run, "--total_episodes", 4, "--workers", 2,
              "--env_kwargs", '{"preset": "b9_pp", "horizon": 60}', "--no_progress")
    run_stage("02_train_vae.py", "--logdir", run, "--epochs", 1, "--z_size", 8, "--batch_size", 16, "--no_progress")
    series = run_stage("03_generate_rnn_data.py", "--logdir", run, "--no_progress").stdout
    run_stage("04_train_mdnrnn.py", "--logdir", run, "--epochs", 1, "--hidden", 16, "--batch_size", 2,
              "--no_progress")
    run_stage("05_train_controller.py", "--logdir", run, "--pop_size", 4, "--num_rollouts", 2,
              "--max_generations", 2, "--no_progress")
    return run, series


def test_horizon_option_sets_the_episode_length_and_masks_reach_the_series(tiny_binpacking):
    run, series_line = tiny_binpacking
    lengths = [len(np.load(p)["done"]) for p in sorted((run / "rollouts").glob("episode_*.npz"))]
    assert lengths == [60] * 4
    with np.load(run / "series" / "episode_000000.npz") as series:
        masks = series["action_mask"]
    assert masks.shape == (60, 30) and masks[:, 0].all() and not masks[:, 9:].any()  # B = 9 of 30 slots
    assert "mask reader:" in series_line and (run / "series" / "mask_reader.pt").exists()


def test_dream_plays_only_what_the_mask_reader_allows(tiny_binpacking):
    run, _ = tiny_binpacking
    world = load_world(WorldPaths.from_logdir(run))
    assert world.mask_reader is not None
    m = world.mdnrnn
    env = DreamEnv(world, max_steps=60)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    tempted = 0
    for _ in range(8):
        allowed = info["action_mask"]
        scores = rng.normal(size=30).astype(np.float32)
        if (allowed == 0).any():  # the top score on an action the reader forbids
            scores[int(np.flatnonzero(allowed == 0)[0])] = 10.0
            tempted += 1
        choice = int(np.flatnonzero(allowed)[np.argmax(scores[allowed == 1])])  # best-scoring allowed action
        dream = env._dream
        z, state, restart = dream.z.clone(), (dream.h.clone(), dream.c.clone()), dream.restart.clone()
        obs, _, _, _, info = env.step(scores)
        # Which action did M step on? Its new h is a deterministic function of (z, action, state).
        with torch.no_grad():
            h_of = [m.step(z, torch.eye(30)[a][None], state, restart)[1][0] for a in range(30)]
        played = [a for a in range(30) if torch.allclose(h_of[a], dream.h, atol=1e-6)]
        assert played == [choice], (played, choice, allowed)
    assert tempted > 0  # the reader forbade something, so the choice was not just the top score


def test_scores_report_length_and_invalid_actions_beside_baselines(tiny_binpacking):
    run, _ = tiny_binpacking
    out = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 3, "--workers", 1,
                  "--no_progress").stdout
    assert "mean length 60, 0 ended by an invalid action, 0 invalid actions" in out
    out = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 3, "--workers", 1, "--random",
                  "--random_policy", "best_fit", "--no_progress").stdout
    assert "same 3 seeds:" in out
    rows = read_csv(run / "scores" / "real_random_best_fit.csv")
    assert [r["invalid"] for r in rows] == ["0"] * 3 and [r["length"] for r in rows] == ["60"] * 3
    dream = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 2, "--dream", "--no_progress").stdout
    assert "mean length 60" in dream  # no done head: the dream runs to the horizon


def test_vizdoom_gymnasium_id_runs_all_stages_by_its_bare_name(tmp_path):
    run = tmp_path / "vz"
    run_stage("01_generate_data.py", "VizdoomDefendLine-v1", "--logdir", run, "--total_episodes", 2,
              "--max_steps", 30, "--workers", 2, "--no_progress")
    run_stage("02_train_vae.py", "--logdir", run, "--epochs", 1, "--z_size", 8, "--batch_size", 16, "--no_progress")
    run_stage("03_generate_rnn_data.py", "--logdir", run, "--no_progress")
    run_stage("04_train_mdnrnn.py", "--logdir", run, "--epochs", 1, "--hidden", 16, "--batch_size", 2,
              "--no_progress")
    run_stage("05_train_controller.py", "--logdir", run, "--pop_size", 4, "--num_rollouts", 1, "--max_steps", 20,
              "--max_generations", 1, "--no_progress")
    out = run_stage("06_test_controller.py", "--logdir", run, "--episodes", 2, "--max_steps", 20, "--workers", 1,
                    "--no_progress").stdout
    assert "controller (real)" in out
