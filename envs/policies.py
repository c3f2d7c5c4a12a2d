"""Exploration and baseline policies for collecting rollouts and scoring baselines; each acts in the
env's model-action Box."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from envs.binpacking_heuristics import HEURISTICS


class RandomPolicy:
    """Base: `reset()` at each episode start, then `act()` once per step."""

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator) -> None:
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        self.rng = rng

    def reset(self) -> None:
        pass

    def act(self) -> np.ndarray:
        raise NotImplementedError

    def _uniform(self) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class UniformPolicy(RandomPolicy):
    """A fresh uniform action every step (action_space.sample())."""

    def act(self) -> np.ndarray:
        return self._uniform()


class StickyPolicy(RandomPolicy):
    """The reference's Doom policy: a uniform action held for 1-10 steps, then redrawn."""

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator, min_repeat: int = 1,
                 max_repeat: int = 10) -> None:
        super().__init__(space, rng)
        self.min_repeat = min_repeat
        self.max_repeat = max_repeat
        self._left = 0
        self._action = self._uniform()

    def reset(self) -> None:
        self._left = 0

    def act(self) -> np.ndarray:
        if self._left == 0:
            self._action = self._uniform()
            self._left = int(self.rng.integers(self.min_repeat, self.max_repeat + 1))
        self._left -= 1
        return self._action.copy()


class MixedStickyPolicy(StickyPolicy):
    """Per episode, a coin: the reference's 1-10 step holds, or long 20-80 step holds.

    With the reference policy alone, a small dataset hardly ever shows the agent pinned against a
    wall, so M learns that walls are safe and the controller learns to run into one (demo, 200
    episodes: holding LEFT survived 1,042 steps in the dream and 171 in the game). Long holds put
    those deaths into the data; the short-hold half keeps the reference's coverage of the middle.
    """

    LONG_REPEAT = (20, 80)

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator) -> None:
        super().__init__(space, rng)
        self._short_repeat = (self.min_repeat, self.max_repeat)  # the reference's range

    def reset(self) -> None:
        super().reset()
        long_holds = bool(self.rng.integers(2))
        self.min_repeat, self.max_repeat = self.LONG_REPEAT if long_holds else self._short_repeat


class BrownianPolicy(RandomPolicy):
    """Smoothly wandering actions: Brownian motion with step sqrt(dt), clipped to the bounds.

    Random *smooth* driving explores CarRacing far better than per-step noise, which only jitters.
    """

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator, dt: float = 1 / 50) -> None:
        super().__init__(space, rng)
        self.scale = math.sqrt(dt) * (self.high - self.low) / 2
        self._action = self._uniform()

    def reset(self) -> None:
        self._action = self._uniform()

    def act(self) -> np.ndarray:
        action = self._action
        step = self.rng.standard_normal(action.shape).astype(np.float32) * self.scale
        self._action = np.clip(action + step, self.low, self.high).astype(np.float32)
        return action.copy()


class RandomValidPolicy(UniformPolicy):
    """Bin packing: fresh uniform scores each step. The env (and the dream) play the best-scoring valid
    level, so this is a uniformly random valid action (the ORL random baseline), without reading the state."""


class HeuristicPolicy(RandomPolicy):
    """A bin-packing rule (envs/binpacking_heuristics.py) playing from the env's state in its info.

    The rules read the counts per level, as the ORL baselines did, so they need the real env (`env`);
    the chosen level gets score 1, every other -1.
    """

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator, env: Any = None,
                 rule: str = "best_fit") -> None:
        super().__init__(space, rng)
        self.env = env
        self.rule = HEURISTICS[rule]
        self.name = rule

    def act(self) -> np.ndarray:
        info = getattr(self.env, "last_info", None) or {}
        if "state" not in info:
            raise ValueError(f"policy {self.name!r} reads a bin-packing env's state; it plays only the real "
                             "binpacking env")
        state = np.asarray(info["state"])
        index = self.rule(state[:-1], int(state[-1]), self.rng)
        scores = np.full(self.low.shape, -1.0, np.float32)
        scores[index] = 1.0
        return scores


class MixedFitPolicy(HeuristicPolicy):
    """Bin packing, per episode a coin: random_valid, or random_fit (never a new bag while one fits).

    random_valid alone opens a bag on ~20 % of steps by choice and leaves ~35 partly filled bags, so
    its data hardly ever shows a state where nothing fits; M then dreams that something always fits.
    The random_fit half shows those states; like sticky_mixed for doom, it is random, not a baseline.
    """

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator, env: Any = None) -> None:
        super().__init__(space, rng, env, "random_fit")
        self._dense = True

    def reset(self) -> None:
        self._dense = bool(self.rng.integers(2))

    def act(self) -> np.ndarray:
        return super().act() if self._dense else self._uniform()


class ConstantPolicy(RandomPolicy):
    """The same action every step: a reference point for the dream's calibration (does M know walls kill?)."""

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator, action: np.ndarray) -> None:
        super().__init__(space, rng)
        self.action = np.clip(np.asarray(action, np.float32).reshape(self.low.shape), self.low, self.high)

    def act(self) -> np.ndarray:
        return self.action.copy()


CONSTANT_PREFIX = "constant:"

POLICIES: dict[str, type[RandomPolicy]] = {
    "sticky": StickyPolicy,
    "sticky_mixed": MixedStickyPolicy,
    "brownian": BrownianPolicy,
    "uniform": UniformPolicy,
    "random_valid": RandomValidPolicy,
}
# Bin packing policies that read the env's state (so real env only): the baselines of binpacking.md §6
# and the two dense-packing exploration policies random_fit and random_mixed.
STATE_POLICIES = ("best_fit", "sum_of_squares", "sum_of_squares_awslabs", "sum_of_squares_orl", "new_bag",
                  "random_fit", "random_mixed")


def constant_policy_name(action: np.ndarray) -> str:
    """'constant:-1' / 'constant:0,1,0': the name make_policy() turns back into a ConstantPolicy."""
    return CONSTANT_PREFIX + ",".join(f"{float(a):g}" for a in np.asarray(action).reshape(-1))


def parse_policy_name(name: str, action_dim: int | None = None) -> str:
    """Check a policy name (a key of POLICIES or 'constant:a1,...'); ValueError says what is wrong."""
    if name not in POLICIES and name not in STATE_POLICIES:
        _constant_action(name, action_dim)
    return name


def _constant_action(name: str, action_dim: int | None = None) -> np.ndarray:
    """The action of a 'constant:a1,...' name; ValueError for any other name or a wrong length."""
    if not name.startswith(CONSTANT_PREFIX):
        raise ValueError(f"unknown policy {name!r}; choose from {policy_names()} or constant:A[,A...]")
    try:
        values = [float(v) for v in name[len(CONSTANT_PREFIX):].split(",")]
    except ValueError:
        raise ValueError(f"policy {name!r}: constant actions must be numbers, e.g. constant:-1") from None
    if action_dim is not None and len(values) != action_dim:
        raise ValueError(f"policy {name!r}: {len(values)} action values, the env has {action_dim}")
    return np.array(values, np.float32)


def policy_names() -> str:
    return ", ".join(sorted(POLICIES)) + " (any env); " + ", ".join(STATE_POLICIES) + " (binpacking)"


def make_policy(name: str, space: gym.spaces.Box, rng: np.random.Generator, env: Any = None) -> RandomPolicy:
    """The policy called `name`; `env` is the real env it plays (state-reading baselines need it)."""
    if name.startswith(CONSTANT_PREFIX):
        return ConstantPolicy(space, rng, _constant_action(name, int(np.prod(space.shape))))
    if name == "random_mixed":
        return MixedFitPolicy(space, rng, env)
    if name in STATE_POLICIES:
        return HeuristicPolicy(space, rng, env, name)
    return POLICIES[name](space, rng)
