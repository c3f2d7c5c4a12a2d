"""Named random streams of one real episode: each draws from np.random.default_rng([env seed, stream id]).

The ids must agree across modules: a baseline policy draws the same actions in the game and in the dream
only because both take the BASELINE stream of the same seed. New streams take new ids; an id never changes
meaning, or old runs would no longer replay.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    COLLECTION = 1  # stage 01's random policy on the episode it collects (data/collect.py)
    BASELINE = 2  # a random policy scored on a seed: in the game (control/real.py) and the dream (envs/dream.py)
    EXPLORE_COIN = 3  # stage 07's coin: does the controller or the random policy play this episode


def episode_rng(seed: int, stream: Stream) -> np.random.Generator:
    """The generator of `stream` for the episode on env seed `seed`."""
    return np.random.default_rng([seed, int(stream)])
