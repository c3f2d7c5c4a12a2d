"""Our CarRacing renders the same game as Gymnasium's CarRacing-v3, bit for bit, only faster.

Each case plays the stock env and ours side by side with the same seed and actions, and compares every
observation, reward, terminated/truncated flag and info. Together they cover the zoom of the first
second, visited tiles changing colour, the car on grass, leaving the playfield (the window then shows
the field's edge), and a finished lap.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

from envs import make_env
from envs.carracing import FAST_ID

Driver = Callable[[gym.Env, int], np.ndarray]


def play_side_by_side(seed: int, drive: Driver, max_steps: int = 1000,
                      render_mode: str | None = None) -> tuple[float, dict, int]:
    """Play both envs until the episode ends; assert every output equal. Returns (score, last info, steps)."""
    stock = gym.make("CarRacing-v3", max_episode_steps=max_steps, render_mode=render_mode)
    fast = gym.make(FAST_ID, max_episode_steps=max_steps, render_mode=render_mode)
    try:
        obs_stock, info_stock = stock.reset(seed=seed)
        obs_fast, info_fast = fast.reset(seed=seed)
        assert np.array_equal(obs_stock, obs_fast) and info_stock == info_fast
        score, step = 0.0, 0
        for step in range(1, max_steps + 1):
            action = drive(stock, step)
            expected, got = stock.step(action), fast.step(action)
            assert np.array_equal(expected[0], got[0]), f"seed {seed}: observation differs at step {step}"
            assert expected[1:] == got[1:], f"seed {seed}, step {step}: {expected[1:]} != {got[1:]}"
            if render_mode is not None and step % 50 == 1:
                assert np.array_equal(stock.render(), fast.render()), f"render differs at step {step}"
            score += float(expected[1])
            if expected[2] or expected[3]:
                break
        return score, expected[4], step
    finally:
        stock.close()
        fast.close()


def uniform_driver(seed: int) -> Driver:
    actions = np.random.default_rng(seed).uniform([-1, 0, 0], [1, 1, 1], (1000, 3)).astype(np.float32)
    return lambda env, step: actions[step - 1]


def track_follower(env: gym.Env, step: int) -> np.ndarray:
    """Steer at the centre line a few points ahead; slow for bends: it visits every tile (a lap)."""
    game = env.unwrapped
    hull = game.car.hull
    x, y = hull.position
    track = np.array([t[1:4] for t in game.track])  # (beta, x, y) per point
    here = int(np.argmin(np.hypot(track[:, 1] - x, track[:, 2] - y)))
    target_x, target_y = track[(here + 4) % len(track), 1:]
    error = math.atan2(target_y - y, target_x - x) - (hull.angle + math.pi / 2)
    error = (error + math.pi) % (2 * math.pi) - math.pi
    bend = abs((track[(here + 12) % len(track), 0] - track[here, 0] + math.pi) % (2 * math.pi) - math.pi)
    speed, target_speed = math.hypot(*hull.linearVelocity), 50.0 if bend < 0.5 else 35.0
    return np.array([np.clip(-3.0 * error, -1, 1), 0.6 if speed < target_speed else 0.0,
                     0.3 if speed > target_speed + 10 else 0.0], np.float32)


def straight_ahead(env: gym.Env, step: int) -> np.ndarray:
    return np.array([0.0, 0.3, 0.0], np.float32)  # more gas spins the wheels on grass


@pytest.mark.parametrize("seed", [0, 1])
def test_random_driving_renders_identical_episodes(seed):
    score, _, steps = play_side_by_side(seed, uniform_driver(seed))
    assert steps == 1000  # a whole episode, truncated by the time limit


def test_a_finished_lap_is_identical():
    score, info, steps = play_side_by_side(3, track_follower, max_steps=1100)
    assert info == {"lap_finished": True} and steps < 1100 and score > 850


def test_leaving_the_playfield_is_identical_and_the_window_shows_the_fields_edge():
    score, info, steps = play_side_by_side(0, straight_ahead, render_mode="rgb_array")
    assert info == {"lap_finished": False} and steps < 400


def test_our_carracing_env_plays_the_fast_renderer_and_the_stock_id_stays_available():
    ours, stock = make_env("carracing"), make_env("CarRacing-v3")
    try:
        assert ours.env.spec.id == FAST_ID and stock.env.spec.id == "CarRacing-v3"
        assert ours.env.spec.max_episode_steps == stock.env.spec.max_episode_steps == 1000
        frames = []
        for env in (ours, stock):
            obs, _ = env.reset(seed=5)
            for _ in range(60):
                obs, *_ = env.step(np.array([0.2, 0.5, 0.0], np.float32))
            frames.append(env.last_frame)  # the env's own 96x96 frame (ours then crops the dashboard)
        assert frames[0].shape == (96, 96, 3) and np.array_equal(frames[0], frames[1])
    finally:
        ours.close()
        stock.close()
