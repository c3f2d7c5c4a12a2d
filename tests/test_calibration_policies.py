"""Calibration of a bin-packing run collected with a policy that reads the real env's state (random_fit,
random_mixed): the dream has no such state, so that policy gets no row and a note says why."""

from __future__ import annotations

import pytest
from conftest import run_cli
from world_fixture import make_tiny_world

from common.csvlog import read_csv
from common.errors import UserError
from control.world import WorldPaths, load_world
from envs.dream import rollout_policy


@pytest.mark.parametrize("policy, real", [("random_fit", False), ("random_mixed", True)])
def test_calibration_of_a_run_collected_by_a_state_reading_policy(tmp_path, policy, real):
    run = make_tiny_world(tmp_path / "run", env="binpacking", policy=policy)
    result = run_cli("analyze.py", "calibration", "--logdir", run, "--out", tmp_path / "figs", "--episodes", 2,
                     "--workers", 1, "--no_progress", *([] if real else ["--dream_only"]), check=False)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and policy in notes[0] and "dream" in notes[0], result.stdout
    rows = read_csv(tmp_path / "figs" / "calibration.csv")
    assert [r["policy"] for r in rows] == [f"always action {i}" for i in range(9)]  # 9 of 30 levels: b9_pp
    assert all(r["dream_length_mean"] == "20.00" for r in rows), rows  # no done head: the horizon ends them
    if real:
        assert all(r["real_length_mean"] == "20.00" and r["calibrated"] == "1" for r in rows), rows
        assert any(line.startswith("calibrated") for line in result.stdout.splitlines()), result.stdout


def test_a_state_reading_policy_refuses_the_dream_in_words(tmp_path):
    world = load_world(WorldPaths.from_logdir(make_tiny_world(tmp_path / "run", env="binpacking")), with_vae=False)
    with pytest.raises(UserError, match="'best_fit' reads the real env's state"):
        rollout_policy(world, "best_fit", [0, 1], 1.0, 20)
