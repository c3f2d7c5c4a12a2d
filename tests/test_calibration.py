"""The dream calibration check: reference policies, fixed policies in the dream, done sampling, the report."""

from __future__ import annotations

import math
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli, run_stage
from world_fixture import make_tiny_world

from common.checkpoints import save_checkpoint
from common.csvlog import read_csv
from control.calibration import Calibration, CalibrationRow, reference_policies
from control.evaluate import Scores
from control.world import WorldPaths, load_world
from envs.dream import DreamEnv, rollout_policy
from envs.policies import make_policy, parse_policy_name
from envs.registry import get_spec
from models.mdnrnn import done_probability


def test_reference_policies_cover_the_action_space():
    doom = reference_policies(get_spec("doom"), "sticky_mixed")
    assert [(p.label, p.policy) for p in doom] == [
        ("always LEFT", "constant:-1"), ("always NONE", "constant:0"), ("always RIGHT", "constant:1"),
        ("random (sticky_mixed)", "sticky_mixed")]
    car = reference_policies(get_spec("carracing"), "brownian")
    names = [p.policy for p in car]
    assert names[0] == "constant:0,0.5,0.5" and "constant:-1,0.5,0.5" in names and "constant:0,0.5,1" in names
    assert len(names) == 1 + 2 * 3 + 1 and names[-1] == "brownian"


def test_constant_policy_names_round_trip_and_bad_names_are_refused():
    box = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    policy = make_policy("constant:-1", box, np.random.default_rng(0))
    assert [float(policy.act()[0]) for _ in range(3)] == [-1.0, -1.0, -1.0]
    assert float(make_policy("constant:7", box, np.random.default_rng(0)).act()[0]) == 1.0  # clipped to bounds
    for bad in ("constant:x", "hold_left"):
        with pytest.raises(ValueError):
            parse_policy_name(bad)
    with pytest.raises(ValueError, match="2 action values"):
        parse_policy_name("constant:0,1", action_dim=1)


def test_fixed_policy_in_the_batched_dream_equals_the_single_env(tmp_path):
    world = load_world(WorldPaths.from_logdir(make_tiny_world(tmp_path / "run")), with_vae=False)
    seeds = [3, 4, 5, 6]
    returns, lengths = rollout_policy(world, "constant:1", seeds, 1.15, 50)
    for seed, length in zip(seeds, lengths):
        env = DreamEnv(world, 1.15, 50)
        env.reset(seed=seed)
        steps = 0
        while True:
            _, _, terminated, truncated, _ = env.step(np.ones(1, np.float32))
            steps += 1
            if terminated or truncated:
                break
        assert steps == length
    assert (returns == lengths).all() and len(set(lengths.tolist())) > 1
    sticky_a, _ = rollout_policy(world, "sticky", seeds, 1.15, 50)
    sticky_b, _ = rollout_policy(world, "sticky", seeds, 1.15, 50)
    np.testing.assert_array_equal(sticky_a, sticky_b)  # seeded per episode


def test_sampled_done_uses_the_hazard_m_believes_in(tmp_path):
    assert float(done_probability(torch.tensor(math.log(10.0)))) == pytest.approx(0.5)
    run = make_tiny_world(tmp_path / "run")
    world = load_world(WorldPaths.from_logdir(run), with_vae=False, done_mode="sample")
    hazard = 0.05  # a head that believes in a constant 5 % hazard: logit = log 10 + logit(0.05) < 0
    with torch.no_grad():
        world.mdnrnn.head.weight[0].zero_()
        world.mdnrnn.head.bias[0] = math.log(10.0) + math.log(hazard / (1 - hazard))
    seeds = list(range(600))
    _, sampled = rollout_policy(world, "constant:0", seeds, 1.0, 400)
    assert abs(sampled.mean() - 1 / hazard) < 3.0, sampled.mean()  # geometric: mean 20, std of the mean ~0.8
    world.done_mode = "threshold"
    _, thresholded = rollout_policy(world, "constant:0", seeds[:8], 1.0, 400)
    assert (thresholded == 400).all()  # below the threshold the reference's rule never ends an episode


def test_verdict_names_holes_and_harsh_spots():
    def row(label, dream, real):
        seeds = list(range(4))
        return CalibrationRow(label, Scores(label, seeds, np.full(4, dream), np.full(4, dream)),
                              Scores(label, seeds, np.full(4, real), np.full(4, real)))

    ok = Calibration([row("always LEFT", 180, 170), row("random", 250, 300)], 1.15, 2100)
    assert ok.verdict().startswith("calibrated")
    bad = Calibration([row("always RIGHT", 1000, 165), row("random", 110, 315)], 1.15, 2100)
    verdict = bad.verdict()
    assert verdict.startswith("NOT calibrated") and "always RIGHT (x6.06)" in verdict and "random (x0.35)" in verdict
    assert "<-- off" in bad.table()


def expected_verdict(rows: list[dict]) -> str:
    """The verdict calibration.csv's fixed-policy rows call for: each dream/real survival ratio within x1.5."""
    fixed = [(r["policy"], float(r["length_ratio"]), r["calibrated"]) for r in rows
             if r["policy"] != "trained controller"]
    for label, ratio, calibrated in fixed:
        assert calibrated == str(int(1 / 1.5 <= ratio <= 1.5)), (label, ratio, calibrated)
    fixed = [(label, ratio) for label, ratio, _ in fixed]
    holes = [f"{label} (x{ratio:.2f})" for label, ratio in fixed if ratio > 1.5]
    harsh = [f"{label} (x{ratio:.2f})" for label, ratio in fixed if ratio < 1 / 1.5]
    if not holes and not harsh:
        label, ratio = max(fixed, key=lambda f: abs(math.log(f[1])))
        return (f"calibrated: every fixed policy's dream survival is within x1.5 of the game's "
                f"(worst: {label} x{ratio:.2f})")
    parts = []
    if holes:
        parts.append("the dream flatters " + ", ".join(holes) + ": a controller can learn to exploit that")
    if harsh:
        parts.append("the dream is too harsh on " + ", ".join(harsh))
    return "NOT calibrated: " + "; ".join(parts)


def assert_same_verdict(actual: str, expected: str) -> None:
    """Word for word; the ratios (x1.23) to the CSV's rounding."""
    number = re.compile(r"x(\d+\.\d+)")
    assert number.sub("x#", actual) == number.sub("x#", expected), (actual, expected)
    for a, e in zip(number.findall(actual), number.findall(expected), strict=True):
        assert abs(float(a) - float(e)) <= 0.011, (actual, expected)


def test_analyze_calibration_on_a_real_doom_run(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    world = load_world(WorldPaths.from_logdir(run), with_vae=False)
    save_checkpoint(run / "controller" / "best.pt", "controller", {"env": "doom"},
                    {"params": torch.zeros(world.controller.num_params)})
    out = run_cli("analyze.py", "calibration", "--logdir", run, "--out", tmp_path / "figs", "--episodes", 3,
                  "--max_steps", 40, "--workers", 1, "--no_progress").stdout
    assert "done rule threshold" in out
    rows = read_csv(tmp_path / "figs" / "calibration.csv")
    verdicts = [line for line in out.splitlines() if line.startswith(("calibrated", "NOT calibrated"))]
    assert len(verdicts) == 1, out
    assert_same_verdict(verdicts[0], expected_verdict(rows))
    assert [r["policy"] for r in rows] == ["always LEFT", "always NONE", "always RIGHT", "random (sticky)",
                                           "trained controller"]
    for r in rows:
        assert 0 < float(r["real_length_mean"]) <= 40 and 0 < float(r["dream_length_mean"]) <= 40
        assert float(r["length_ratio"]) == pytest.approx(float(r["dream_length_mean"]) / float(r["real_length_mean"]),
                                                         rel=1e-2)
    assert (tmp_path / "figs" / "calibration.png").stat().st_size > 0
    result = run_cli("analyze.py", "calibration", "--logdir", tmp_path / "nowhere", check=False)
    assert_one_line_error(result, "nowhere", "no such folder")


def test_stage05_prints_the_verdict_before_a_new_dream_run(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    args = ["--logdir", run, "--pop_size", 4, "--num_rollouts", 2, "--max_steps", 30, "--eval_every", 1,
            "--eval_episodes", 2, "--workers", 1, "--no_progress", "--calibration_episodes", 2]
    out = run_stage("05_train_controller.py", *args, "--max_generations", 1).stdout
    assert "dream calibration (2 episodes per policy" in out and "always RIGHT" in out
    assert (run / "controller" / "calibration.csv").exists()
    again = run_cli("05_train_controller.py", *args, "--max_generations", 2).stdout
    assert "dream calibration" not in again  # a resumed run does not repeat the check
