"""The bin-packing env (binpacking.md §1.2, §2.2, §7): rules, picture, masks, and its place in the pipeline."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs.binpacking import (
    GYM_ID,
    INVALID_PENALTY,
    PRESETS,
    BinPackingEnv,
    frame_action_masks,
    valid_actions,
    waste,
)
from envs.binpacking_heuristics import HEURISTICS
from envs.binpacking_image import PALETTE, count_blocks, decode_state, encode_state
from envs.policies import make_policy
from envs.registry import get_spec


def small_env(**kwargs) -> BinPackingEnv:
    """B=9, items 2 and 3, as ORL's file default, with a short horizon."""
    return BinPackingEnv(**{"preset": "b9_lw", "horizon": 50, **kwargs})


def set_state(env: BinPackingEnv, levels: dict[int, int], item: int) -> None:
    env.levels[:] = 0
    for level, count in levels.items():
        env.levels[level] = count
    env.item = item


# -- the rules (§1.2) ------------------------------------------------------------------------------
def test_new_bag_costs_its_empty_space_and_an_existing_bag_pays_the_item():
    env = small_env()
    env.reset(seed=0)
    set_state(env, {}, 3)
    _, reward, *_ = env.step(0)
    assert reward == -(9 - 3) and env.levels[3] == 1
    set_state(env, {3: 1}, 2)
    _, reward, *_ = env.step(3)
    assert reward == +2 and env.levels[3] == 0 and env.levels[5] == 1


def test_a_full_bag_leaves_the_levels_and_is_only_counted():
    env = small_env()
    env.reset(seed=0)
    set_state(env, {6: 2}, 3)
    _, reward, _, _, info = env.step(6)
    assert reward == 3 and env.levels[6] == 1 and env.levels[9 - 1] == 0
    assert info["full_bags"] == 1 and info["waste"] == 3  # the one bag left at level 6


@pytest.mark.parametrize("preset", ["wmd", "b9_pp"])
def test_a_complete_valid_episode_returns_minus_the_final_waste(preset):
    env = BinPackingEnv(preset=preset, observation="vector")
    rng = np.random.default_rng(0)
    for seed in range(3):
        env.reset(seed=seed)
        total, steps = 0.0, 0
        while True:
            _, reward, terminated, truncated, info = env.step(HEURISTICS["random_valid"](env.levels, env.item, rng))
            total, steps = total + reward, steps + 1
            if terminated or truncated:
                break
        assert steps == PRESETS[preset].horizon and not truncated
        assert total == -info["waste"] == -waste(env.levels) and info["invalid_actions"] == 0


def test_invalid_action_terminates_with_the_orl_penalty():
    env = small_env()
    env.reset(seed=0)
    set_state(env, {}, 2)
    _, first, *_ = env.step(0)  # opens a bag: waste change +7
    set_state(env, {2: 1}, 3)
    _, reward, terminated, _, info = env.step(5)  # no bag at level 5
    assert reward == INVALID_PENALTY - 7 and terminated
    assert info["invalid_action"] and info["invalid_actions"] == 1


def test_a_first_step_invalid_action_scores_exactly_minus_100():
    """§4's caution: the WorldModelsDreaming score of about -100 is what a 1-step episode gets."""
    env = BinPackingEnv()
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step(7)
    assert (reward, terminated, info["step"], info["invalid_actions"]) == (-100.0, True, 1, 1)


def test_drop_and_nearest_rules_continue_the_episode():
    env = small_env(invalid_action="drop")
    env.reset(seed=0)
    set_state(env, {4: 1}, 3)
    _, reward, terminated, _, info = env.step(7)  # 7 + 3 > 9
    assert reward == INVALID_PENALTY and not terminated and env.levels[4] == 1 and info["invalid_actions"] == 1
    env = small_env(invalid_action="nearest")
    env.reset(seed=0)
    set_state(env, {2: 1, 5: 1}, 3)
    _, reward, terminated, _, info = env.step(4)  # nearest valid level to 4 is 5
    assert reward == 3 and env.levels[8] == 1 and env.levels[5] == 0 and not info["invalid_action"]


def test_mask_lists_bags_the_item_fits_and_always_a_new_bag():
    levels = np.zeros(9, np.int64)
    levels[[2, 6, 7]] = 1
    assert valid_actions(levels, 3).tolist() == [1, 0, 1, 0, 0, 0, 1, 0, 0]
    assert valid_actions(np.zeros(9, np.int64), 2).tolist() == [1] + [0] * 8


def test_reset_seed_fixes_the_item_sequence():
    def items(seed):
        env = small_env()
        env.reset(seed=seed)
        seen = [env.item]
        for _ in range(20):
            env.step(0)
            seen.append(env.item)
        return seen
    assert items(5) == items(5) and items(5) != items(6)


def test_bad_options_are_refused():
    for kwargs in ({"preset": "nope"}, {"invalid_action": "ignore"}, {"capacity": 60},
                   {"item_probabilities": [0.5, 0.6]}, {"horizon": 0}):
        with pytest.raises(ValueError):
            BinPackingEnv(**kwargs)
    BinPackingEnv(capacity=60, item_sizes=[5, 20], item_probabilities=[0.5, 0.5], observation="vector")
    with pytest.raises(ValueError):
        BinPackingEnv().step(30)


def test_gymnasium_make_and_render():
    env = gym.make(GYM_ID, preset="b9_bw", render_mode="rgb_array")
    obs, info = env.reset(seed=1)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and info["action_mask"][0] == 1
    assert env.action_space == gym.spaces.Discrete(9)
    assert env.render().shape == (512, 512, 3)
    env.close()


# -- the picture (§2.2) ----------------------------------------------------------------------------
def test_palette_matches_the_listed_colours():
    assert PALETTE[29].tolist() == [240, 246, 252]
    assert PALETTE[1].tolist() == [8, 64, 131]
    assert PALETTE[0].tolist() == [8, 56, 119]
    assert len({tuple(c) for c in PALETTE}) == 30


def test_report_figure_state_draws_as_described():
    levels = np.zeros(30, np.int64)
    levels[[1, 2, 3, 4, 6, 7, 9]] = [18, 70, 51, 82, 65, 29, 183]
    frame = encode_state(levels, 4)
    assert count_blocks(183) == [29] * 11 + [18]
    row9 = frame[59 - 18]
    assert (row9[:24].sum(-1) > 0).all() and (row9[24:].sum(-1) == 0).all()  # 12 blocks, 24 px
    assert frame[59 - 18, 22].tolist() == PALETTE[18].tolist()
    assert (frame[60:64, 24:30] == PALETTE[4]).all() and frame[60:64, :24].sum() == 0  # item 4 at column 24
    assert frame[59].sum() == 0  # row 59 is always empty
    # level 1 (18 bags) is rows 56-58, but level 2 (70 bags: a saturated first block) overwrites row 56
    assert frame[56:59, 0].tolist() == [PALETTE[29].tolist()] + [PALETTE[18].tolist()] * 2


def test_higher_level_wins_the_shared_row():
    levels = np.zeros(30, np.int64)
    levels[[3, 4]] = [1, 5]  # level 3 rows 52-54, level 4 rows 50-52: row 52 shared
    frame = encode_state(levels, 1)
    assert frame[52, 0].tolist() == PALETTE[5].tolist() and frame[53, 0].tolist() == PALETTE[1].tolist()


def test_picture_reads_back_exactly_along_real_episodes():
    env = BinPackingEnv()
    rng = np.random.default_rng(1)
    obs, info = env.reset(seed=2)
    for _ in range(300):
        levels, item = decode_state(obs, 30)
        assert (levels == env.levels).all() and item == env.item
        assert (frame_action_masks(obs[None], {})[0] == info["action_mask"]).all()
        obs, _, _, _, info = env.step(HEURISTICS["random_valid"](env.levels, env.item, rng))


def test_large_counts_read_back():
    levels = np.zeros(30, np.int64)
    levels[1:] = np.arange(1, 30) * 16  # up to 464 bags on one level
    assert (decode_state(encode_state(levels, 9), 30)[0] == levels).all()


def test_frame_masks_use_the_env_options_for_the_bag_size():
    env = BinPackingEnv(preset="b9_pp")
    obs, info = env.reset(seed=0)
    for _ in range(30):
        obs, _, _, _, info = env.step(HEURISTICS["best_fit"](env.levels, env.item, None))
    masks = frame_action_masks(obs[None], {"preset": "b9_pp"})
    assert masks.shape == (1, 30) and (masks[0, :9] == info["action_mask"]).all() and masks[0, 9:].sum() == 0


# -- the pipeline's view (registry, masked actions, policies) --------------------------------------
def placed(levels: np.ndarray, item: int, level: int) -> np.ndarray | None:
    """The counts per level after putting `item` in a bag at `level` (0: a new bag); None if it cannot go there."""
    capacity, after = len(levels), levels.copy()
    if level > 0:
        if after[level] == 0 or level + item > capacity:
            return None
        after[level] -= 1
    if level + item < capacity:  # a bag filled to the brim leaves the counts
        after[level + item] += 1
    return after


def level_played(levels: np.ndarray, item: int, after: np.ndarray) -> int:
    """The one level whose move turns `levels` into `after` (the counts the env shows after the step)."""
    matches = [level for level in range(len(levels)) if (moved := placed(levels, item, level)) is not None
               and (moved == after).all()]
    assert len(matches) == 1, (levels, item, after)
    return matches[0]


def test_registry_env_plays_the_best_scoring_valid_level():
    spec = get_spec("binpacking")
    assert spec.action_dim == 30 and spec.episode_steps({}) == 1000
    assert spec.episode_steps({"preset": "b9_pp", "horizon": 77}) == 77
    env = spec.create(preset="b9_pp", horizon=40)
    rng = np.random.default_rng(0)
    try:
        obs, _ = env.reset(seed=0)
        total, steps, beaten = 0.0, 0, 0
        for _ in range(100):
            state = env.last_info["state"]
            levels, item = state[:-1], int(state[-1])
            scores = rng.normal(size=30).astype(np.float32)
            valid = [level for level in range(len(levels)) if placed(levels, item, level) is not None]
            best = max(valid, key=lambda level: scores[level])
            beaten += int(np.argmax(scores)) != best  # the top score was on an invalid level (or a padded slot)
            obs, reward, terminated, truncated, info = env.step(scores)
            assert level_played(levels, item, info["state"][:-1]) == best, (state, scores, info["state"])
            total, steps = total + reward, steps + 1
            if terminated or truncated:
                break
        assert steps == 40 and info["invalid_actions"] == 0 and total == -info["waste"]
        assert beaten > 10  # most steps, the best-scoring valid level was not the top score
    finally:
        env.close()


def expected_move(name: str, levels: np.ndarray, item: int) -> int:
    """Each rule worked out from its definition (binpacking.md §6) by trying every move on a copy of the state."""
    capacity = len(levels)
    moves = {level: after for level in range(capacity) if (after := placed(levels, item, level)) is not None}
    if name == "new_bag":
        return 0
    if name == "best_fit":  # into the bag the item leaves fullest; a new bag only when it fits nowhere
        return max((level for level in moves if level > 0), key=lambda level: level + item, default=0)
    if name == "sum_of_squares":  # the move leaving the least sum of squared counts, the lowest level on ties
        return min(moves, key=lambda level: (int((moves[level] ** 2).sum()), level))
    if name == "sum_of_squares_orl":  # an exact fit; else the least N[l+s] - N[l] below B, the lowest on ties
        exact = capacity - item
        if exact in moves and exact > 0:
            return exact
        rises = {level: levels[level + item] - levels[level] for level in moves if 0 < level < exact}
        return min((level for level in rises if rises[level] < capacity), key=lambda level: (rises[level], level),
                   default=0)
    raise ValueError(name)


def test_expected_moves_on_hand_worked_states():
    levels = np.zeros(9, np.int64)
    levels[[3, 5, 6]] = [1, 2, 1]  # item 3 fits at 3, 5 and 6 (exactly); sum of squares 6
    # new bag: N3=2 -> 9; at 3: N6=2 -> 8; at 5: N5=1, N8=1 -> 4; at 6: the bag is full -> 5
    assert [expected_move(n, levels, 3) for n in ("best_fit", "sum_of_squares", "sum_of_squares_orl", "new_bag")] \
        == [6, 5, 6, 0]
    levels[:] = 0
    levels[[3, 5]] = 1  # no exact fit for 3; rises N6-N3 = N8-N5 = -1 tie; sums of squares 2 = 2 tie
    assert [expected_move(n, levels, 3) for n in ("best_fit", "sum_of_squares", "sum_of_squares_orl")] == [5, 3, 3]
    levels[:] = 0
    levels[8] = 4  # item 3 fits nowhere
    assert {expected_move(n, levels, 3) for n in ("best_fit", "sum_of_squares", "sum_of_squares_orl")} == {0}


@pytest.mark.parametrize("name", ["best_fit", "sum_of_squares", "sum_of_squares_orl", "new_bag", "random_valid"])
def test_baseline_policies_play_the_registry_env(name):
    env = get_spec("binpacking").create(horizon=200)
    policy = make_policy(name, env.action_space, np.random.default_rng(0), env)
    env.reset(seed=4)
    played = set()
    for _ in range(200):
        state = env.last_info["state"]
        levels, item = state[:-1], int(state[-1])
        action = policy.act()
        if name != "random_valid":  # scores for the env to mask; the rules score their move alone
            assert int(action.argmax()) == expected_move(name, levels, item), (state, action.argmax())
        _, _, terminated, _, info = env.step(action)
        played.add(level_played(levels, item, info["state"][:-1]))
        if terminated:
            break
    assert info["step"] == 200 and info["invalid_actions"] == 0
    assert (played == {0}) == (name == "new_bag")  # the others put items into open bags
    env.close()


def test_state_policies_refuse_an_env_without_state():
    policy = make_policy("best_fit", gym.spaces.Box(-1, 1, (30,)), np.random.default_rng(0), None)
    with pytest.raises(ValueError, match="best_fit"):
        policy.act()


def test_random_fit_opens_a_bag_only_when_nothing_fits_and_mixed_flips_per_episode():
    env = get_spec("binpacking").create(horizon=300)
    policy = make_policy("random_fit", env.action_space, np.random.default_rng(0), env)
    env.reset(seed=1)
    for _ in range(300):
        mask = env.action_mask
        action = int(policy.act().argmax())
        assert (action == 0) == (mask[1:].sum() == 0)
        _, _, terminated, _, _ = env.step(np.eye(30, dtype=np.float32)[action])
        if terminated:
            break
    mixed = make_policy("random_mixed", env.action_space, np.random.default_rng(3), env)
    kinds = set()
    for _ in range(12):
        mixed.reset()
        kinds.add(mixed._dense)
    assert kinds == {True, False}
    env.close()
