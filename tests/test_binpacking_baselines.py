"""The bin-packing heuristics in the env reproduce binpacking.md §6, and every episode is a valid one returning -W(T).

The §6 comparison runs at §6's horizon T=1000 (its numbers do not apply at another T) with N episodes per
(preset, policy), and allows Z standard errors of the difference: Z * std_§6 * sqrt(1/N + 1/1000) (§6's own
mean has s.e. std/sqrt(1000)). 12 cells are checked; Z = 3.5 keeps the family-wise false-alarm rate under 1 %
(Bonferroni), while a wrong rule moves a cell by far more (e.g. b9_bw SS-tb -7.7 vs SS-orl -16.9, tolerance
2.6; B9 Best Fit -123 vs random -153, tolerance 6.4). Shifts under about 0.7 §6 std pass unseen here: e.g. how
textbook SS breaks ties between levels (-21.4 fullest-first vs §6's -24.4 on wmd, 5.5 s.e. apart at 1000
episodes) needs bench/bench_binpacking.py at full size.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from conftest import run_stage

from bench.bench_binpacking import REFERENCE, run_episode, simulate
from envs.binpacking import PRESETS, BinPackingEnv
from envs.binpacking_heuristics import HEURISTICS

EPISODES = 25
Z = 3.5
CHECKED = [(preset, policy) for preset in ("wmd", "b9_lw", "b9_pp", "b9_bw")
           for policy in ("best_fit", "sum_of_squares", "sum_of_squares_orl")]


@cache
def returns(preset: str, policy: str, episodes: int) -> np.ndarray:
    """Returns on seeds 0..episodes-1 at T=1000 (simulate checks validity and -W(T) per episode)."""
    return simulate(preset, policy, episodes, horizon=1000, seed=0)


@pytest.mark.parametrize(("preset", "policy"), CHECKED)
def test_heuristic_matches_section_6(preset, policy):
    ref_mean, ref_std = REFERENCE[(preset, 1000)][policy]
    ours = returns(preset, policy, EPISODES)
    tolerance = Z * ref_std * math.sqrt(1 / EPISODES + 1 / 1000)
    assert abs(ours.mean() - ref_mean) <= tolerance, (preset, policy, ours.mean(), ref_mean, tolerance)


def test_packing_rules_beat_random_by_far_on_wmd():
    episodes = 10
    rand = returns("wmd", "random_valid", episodes)
    assert abs(rand.mean() - REFERENCE[("wmd", 1000)]["random_valid"][0]) < Z * 54.6 * math.sqrt(1 / episodes)
    for policy in ("best_fit", "sum_of_squares", "sum_of_squares_orl"):
        ours = returns("wmd", policy, EPISODES)[:episodes]
        # Same seeds, same items (the item draws do not depend on the actions): better on every episode.
        assert np.all(ours > rand + 100), (policy, ours, rand)
        assert ours.mean() > rand.mean() / 5, (policy, ours.mean(), rand.mean())  # under a fifth of the waste


@pytest.mark.parametrize("preset", ["wmd", "b9_pp", "b30_lw"])
def test_new_bag_wastes_every_items_complement_and_items_do_not_depend_on_actions(preset):
    capacity = PRESETS[preset].capacity
    for seed in (0, 1):
        total, items = run_episode(preset, "new_bag", seed)
        assert len(items) == 1000
        assert total == -sum(capacity - s for s in items)
        for policy in ("best_fit", "random_valid"):
            assert run_episode(preset, policy, seed)[1] == items


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("policy", list(HEURISTICS))
def test_every_episode_is_valid_and_returns_minus_final_waste(preset, policy):
    # run_episode raises on an invalid action, a short episode, or a return other than -W(T).
    env = BinPackingEnv(preset=preset, horizon=300, observation="vector")
    values = [run_episode(preset, policy, seed, env=env)[0] for seed in range(3)]
    assert values == [run_episode(preset, policy, seed, horizon=300)[0] for seed in range(3)]  # reproducible


def test_episode_checks_catch_invalid_actions_and_wrong_returns(monkeypatch):
    monkeypatch.setitem(HEURISTICS, "always_level_1", lambda levels, item, rng: 1)
    with pytest.raises(AssertionError, match="invalid action"):
        run_episode("wmd", "always_level_1", 0)

    class OffByOne(BinPackingEnv):
        def _place(self, action):
            return super()._place(action) - (self.steps == 5)

    with pytest.raises(AssertionError, match=r"-W\(T\)"):
        run_episode("b9_pp", "best_fit", 0, env=OffByOne(preset="b9_pp", horizon=50, observation="vector"))


def test_bench_cli_prints_and_writes_the_table(tmp_path):
    out = tmp_path / "table.csv"
    result = run_stage("bench/bench_binpacking.py", "--presets", "b9_pp", "wmd", "--policies", "best_fit",
                       "new_bag", "--episodes", "3", "--horizon", "40", "--workers", "2", "--csv", out)
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 4 and all(line.count("|") == 9 for line in lines), result.stdout
    assert "best_fit (BF)" in result.stdout and "new_bag (New)" in result.stdout
    assert out.read_text().count("\n") == 5
    # Off §6's horizons there is no reference to compare with.
    assert all(line.split("|")[7].strip() == "–" for line in lines[2:]), result.stdout
