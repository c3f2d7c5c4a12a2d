"""Where each kind of real episode takes its env seeds.

A score counts only on scenarios no training episode used, so every stage draws from its own range and the
ranges never meet: tests from 0, training far above. A seed fixes the whole scenario (the track, the monster
spawns), so one shared seed would let a controller be scored on a level it was selected on.
"""
from __future__ import annotations

import numpy as np

TEST_SEED_BASE = 0  # stage 06, stage 07's per-round scores, analyze.py's real scores: seeds 0..N-1
TEST_SEED_LIMIT = 1_000_000  # test seeds stay below this; every training range starts at or above it
EVAL_SEED_BASE = 1_000_000  # stage 05's evaluations of the CMA mean: the same N scenarios for the whole run
TRAINING_DATA_SEED = 2_000_000  # stage 01's episode i: this + i (a second training seed adds 10,000 per seed)
TRAINING_SEED_STRIDE = 10_000  # what each training seed adds to the episode seeds of stages 01 and 07
MAX_TRAINING_SEED = 99  # so that every (stage, round, training seed) keeps a range of 10,000 episodes of its own
ROUND_SEED_BASE = 10_000_000  # stage 07's round K collects its real episodes on K * this + i (+ the stride per seed)
GENERATION_SEED_LOW = 100_000_000  # stage 05's training scenarios are drawn from [this, 2**31 - 1)


def generation_seeds(seed: int, generation: int, count: int) -> list[int]:
    """Stage 05's training scenarios for one generation: fixed by (seed, generation), apart from test seeds."""
    return np.random.default_rng([seed, generation]).integers(GENERATION_SEED_LOW, 2**31 - 1, count).tolist()


def round_first_seed(round_k: int, training_seed: int = 0) -> int:
    """Stage 07's round K, episode i plays seed this + i."""
    return ROUND_SEED_BASE * round_k + TRAINING_SEED_STRIDE * training_seed


def eval_seeds(count: int) -> list[int]:
    return list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + count))


def scoring_seeds(count: int, first: int = TEST_SEED_BASE) -> list[int]:
    """The real scenarios a controller is scored on: first..first+count-1 (test seeds by default)."""
    return list(range(first, first + count))
