"""Test seeds and training seeds never meet by default: a score is on scenarios no training episode used."""

from __future__ import annotations

from conftest import run_stage, script_parser
from world_fixture import make_tiny_world

from common.cli import MAX_EPISODES
from common.pipeline import stages
from common.seeds import (
    GENERATION_SEED_LOW,
    MAX_TRAINING_SEED,
    ROUND_SEED_BASE,
    TEST_SEED_LIMIT,
    TRAINING_DATA_SEED,
    eval_seeds,
    generation_seeds,
    round_first_seed,
    scoring_seeds,
)
from data.episodes import write_meta


def test_every_training_range_starts_above_the_largest_default_test_seed():
    scoring = script_parser("06_test_controller.py").parse_args(["--logdir", "x"])
    assert scoring.seed == 0 and max(scoring_seeds(MAX_EPISODES, scoring.seed)) < TEST_SEED_LIMIT
    data = script_parser("01_generate_data.py").parse_args(["doom"])
    assert data.seed == TRAINING_DATA_SEED >= TEST_SEED_LIMIT  # stage 01's episode i: seed + i
    drawn = [s for seed in range(4) for g in range(1, 300) for s in generation_seeds(seed, g, 64)]
    assert min(drawn) >= TEST_SEED_LIMIT and len(set(drawn)) > 0.99 * len(drawn)
    evals = eval_seeds(MAX_EPISODES)
    assert TEST_SEED_LIMIT <= min(evals) and max(evals) < TRAINING_DATA_SEED  # nor do evals and data meet
    assert ROUND_SEED_BASE >= TEST_SEED_LIMIT  # stage 07's round K collects on K * base + i, K >= 1
    rounds = {(k, seed): round_first_seed(k, seed) for k in range(1, 10) for seed in range(MAX_TRAINING_SEED + 1)}
    firsts = sorted(rounds.values())  # every (round, training seed) has room for a stage's episodes of its own
    assert firsts[0] >= ROUND_SEED_BASE and firsts[-1] + 10_000 <= GENERATION_SEED_LOW
    assert min(b - a for a, b in zip(firsts, firsts[1:])) >= 10_000
    assert TRAINING_DATA_SEED + 10_000 * (MAX_TRAINING_SEED + 1) <= ROUND_SEED_BASE  # stage 01 stays below
    for env in ("doom", "carracing"):  # the recipes keep stage 01 on its range for every training seed
        for seed in (0, 1) if env == "carracing" else (0,):
            data_stage = next(s for s in stages(env, "tiny", seed) if s.name == "01_data")
            if "--seed" in data_stage.args:
                first = int(data_stage.args[data_stage.args.index("--seed") + 1])
                assert TRAINING_DATA_SEED <= first < ROUND_SEED_BASE


def test_scoring_on_seeds_stage_01_collected_says_so(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    write_meta(run / "rollouts", {"env": "doom", "env_kwargs": {}, "policy": "sticky", "seed": 0})  # an old run
    for index in (0, 2):  # collected but too short to keep: still a scenario stage 01 played
        (run / "rollouts" / f"episode_{index:06d}.skipped").touch()
    args = ("06_test_controller.py", "--logdir", run, "--random", "--episodes", 3, "--max_steps", 5)
    seen = run_stage(*args).stdout
    assert "warning: 2 of the 3 seeds scored (0, 2) are also episodes of" in seen
    assert "warning" not in run_stage(*args, "--seed", 3).stdout
