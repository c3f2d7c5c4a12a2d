"""Random exploration policies: hold lengths and determinism (no env needed)."""

import gymnasium as gym
import numpy as np

from envs.policies import make_policy


def hold_lengths(actions: list[np.ndarray]) -> list[int]:
    """Lengths of runs of identical consecutive actions (the last run may be cut short)."""
    runs, count = [], 1
    for prev, cur in zip(actions, actions[1:]):
        if np.array_equal(prev, cur):
            count += 1
        else:
            runs.append(count)
            count = 1
    return runs


def play(name: str, seed: int, steps: int) -> list[np.ndarray]:
    policy = make_policy(name, gym.spaces.Box(-1.0, 1.0, (1,), np.float32), np.random.default_rng(seed))
    policy.reset()
    return [policy.act() for _ in range(steps)]


def test_sticky_holds_one_to_ten_steps():
    runs = hold_lengths(play("sticky", 0, 2000))
    assert min(runs) >= 1 and max(runs) <= 10 and len(set(runs)) > 5


def test_sticky_mixed_has_both_regimes_per_episode():
    regimes = []
    for seed in range(20):
        runs = hold_lengths(play("sticky_mixed", seed, 600))
        if max(runs) <= 10:
            regimes.append("short")
        else:
            assert min(runs) >= 20 and max(runs) <= 80, runs
            regimes.append("long")
    assert 4 <= regimes.count("long") <= 16
    assert [np.asarray(a).item() for a in play("sticky_mixed", 3, 50)] == \
        [np.asarray(a).item() for a in play("sticky_mixed", 3, 50)]
