"""Real envs behind the world-model interface: shapes, action mapping, caps, seeding, generic ids."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from common.errors import UserError
from envs import get_spec, make_env
from envs.doom import DoomTakeCoverEnv, doom_action_index
from envs.pixels import ActionAdapter
from tests.conftest import ROOT


def rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    frames, rewards = [obs], []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        frames.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return np.stack(frames), rewards


@pytest.mark.parametrize("a, index", [(-1.0, 1), (-0.34, 1), (-0.33, 0), (0.0, 0), (0.33, 0), (0.34, 2), (1.0, 2)])
def test_doom_action_thirds(a, index):
    assert doom_action_index(a) == index


def test_doom_env_api_seeding_and_cap():
    env = make_env("doom", max_episode_steps=150)
    try:
        assert env.observation_space.shape == (64, 64, 3) and env.action_space.shape == (1,)
        actions = [np.array([a], np.float32) for a in np.sin(np.arange(200) / 9)]
        a1, r1 = rollout(env, 3, actions)
        a2, r2 = rollout(env, 3, actions)
        b1, _ = rollout(env, 4, actions)
        assert a1.dtype == np.uint8 and a1.shape[1:] == (64, 64, 3)
        np.testing.assert_array_equal(a1, a2)  # VizDoom itself is seeded
        assert set(r1) == {1.0}  # +1 per tic survived
        assert len(r1) == 150  # the cap truncates
        assert not np.array_equal(a1, b1)
    finally:
        env.close()


def test_doom_truncation_is_not_termination():
    env = DoomTakeCoverEnv(max_episode_steps=5)
    try:
        env.reset(seed=0)
        flags = [env.step(np.zeros(1, np.float32))[2:4] for _ in range(5)]
        assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])
        np.testing.assert_array_equal(env.canonical_action([2.5]), [1.0])
    finally:
        env.close()


def test_doom_passes_gymnasium_checker():
    env = DoomTakeCoverEnv(max_episode_steps=50)
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_doom_episode_ends_in_death_with_random_play():
    env = make_env("doom")
    try:
        env.reset(seed=1)
        rng = np.random.default_rng(0)
        steps = 0
        for steps in range(1, 2101):  # noqa: B007
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
            if term or trunc:
                break
        assert term and not trunc and steps < 2100
    finally:
        env.close()


def test_carracing_crop_actions_and_seed():
    env = make_env("carracing")
    try:
        spec = get_spec("carracing")
        assert env.action_space.shape == (3,) and spec.action_dim == 3
        np.testing.assert_array_equal(env.action_space.low, [-1, 0, 0])
        actions = [np.array([0.1, 0.5, 0.0], np.float32)] * 6
        f1, _ = rollout(env, 5, actions)
        f2, _ = rollout(env, 5, actions)
        np.testing.assert_array_equal(f1, f2)
        assert f1.shape == (7, 64, 64, 3)
        # the dashboard (bottom 12 of 96 rows, mostly black) is cropped away
        assert env.unwrapped.last_frame.shape == (96, 96, 3)
        assert f1[-1, -4:].mean() > 60
    finally:
        env.close()


def test_carracing_controller_mapping():
    raw = np.array([[-0.5, -1.0, -0.3], [0.2, 1.0, 0.7]], np.float32)
    np.testing.assert_allclose(get_spec("carracing").controller_to_action(raw),
                               [[-0.5, 0.0, 0.0], [0.2, 1.0, 0.7]])
    np.testing.assert_allclose(get_spec("doom").controller_to_action(np.array([[0.4]])), [[0.4]])


def test_generic_gym_id_with_dict_obs_and_discrete_actions():
    name = "vizdoom.gymnasium_wrapper:VizdoomBasic-v1"
    spec = get_spec(name)
    assert spec.action_dim == 4 and spec.default_policy == "sticky" and spec.predict_reward
    env = make_env(name)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        action = np.array([-1, 0.5, 0.2, 0], np.float32)
        np.testing.assert_array_equal(env.canonical_action(action), [0, 1, 0, 0])
        obs, reward, *_ = env.step(action)
        assert obs.shape == (64, 64, 3) and isinstance(reward, float)
    finally:
        env.close()


def test_generic_box_action_env_by_id():
    spec = get_spec("CarRacing-v3")
    assert spec.action_dim == 3 and spec.default_policy == "brownian" and spec.max_episode_steps == 1000
    np.testing.assert_allclose(spec.controller_to_action(np.array([-1.0, 0.0, 1.0])), [-1.0, 0.5, 1.0])


def test_action_adapter_spaces():
    d = ActionAdapter(gym.spaces.Discrete(3, start=1))
    assert d.to_env([0.1, 0.9, -1]) == 2
    mb = ActionAdapter(gym.spaces.MultiBinary(2))
    np.testing.assert_array_equal(mb.to_env([0.3, -0.2]), [1, 0])
    box = ActionAdapter(gym.spaces.Box(-np.inf, np.inf, (2, 1), np.float32))
    np.testing.assert_array_equal(box.model_space.low, [-1, -1])
    assert box.to_env([3, -0.5]).shape == (2, 1)
    with pytest.raises(ValueError, match="not supported"):
        ActionAdapter(gym.spaces.MultiDiscrete([2, 3]))


def test_unknown_and_non_image_envs_are_user_errors():
    with pytest.raises(UserError, match="known: doom, carracing"):
        get_spec("NoSuchEnv-v0")
    with pytest.raises(UserError, match="no image"):
        get_spec("CartPole-v1")
    with pytest.raises(UserError, match="bad env option"):
        make_env("doom", resolution="1x1")


_WITHOUT_BOX2D = """
import sys
sys.modules["Box2D"] = sys.modules["pygame"] = None  # as if neither were installed
from common.errors import UserError
from envs import make_env
env = make_env("doom")
obs, _ = env.reset(seed=0)
assert obs.shape == (64, 64, 3), obs.shape
env.close()
try:
    make_env("carracing")
except UserError as e:
    print("USER ERROR:", e)
"""


def test_doom_runs_without_box2d_and_carracing_says_what_is_missing():
    # a fresh interpreter, so the blocked imports are the first; it runs in the test's scratch folder
    result = subprocess.run([sys.executable, "-c", _WITHOUT_BOX2D], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "USER ERROR: env carracing needs Box2D and pygame-ce" in result.stdout
    assert "pip install 'gymnasium[box2d]' pygame-ce" in result.stdout


def _max_redness(screen_flashes: bool, seed: int = 3) -> float:
    from envs.doom import DoomTakeCoverEnv

    env = DoomTakeCoverEnv(screen_flashes=screen_flashes)
    try:
        obs, _ = env.reset(seed=seed)
        redness = []
        while True:
            obs, _, terminated, truncated, _ = env.step([0.0])
            if terminated or truncated:
                return max(redness)
            redness.append(float(obs[..., 0].astype(int).mean() - obs[..., 1].astype(int).mean()))
    finally:
        env.close()


def test_doom_hit_flash_is_on_by_default_and_old_runs_replay_without_it(tmp_path):
    assert _max_redness(True) > 60 > 30 > _max_redness(False)  # a hit reddens the whole frame
    from control.options import env_kwargs_of_run
    from data.episodes import write_meta
    from envs.registry import get_spec

    spec = get_spec("doom")
    assert spec.options_to_record({}) == {"screen_flashes": True}
    assert spec.options_to_record({"screen_flashes": False}) == {"screen_flashes": False}
    (tmp_path / "old" / "rollouts").mkdir(parents=True)
    write_meta(tmp_path / "old" / "rollouts", {"env": "doom", "env_kwargs": {}, "policy": "sticky"})
    assert env_kwargs_of_run(tmp_path / "old") == {"screen_flashes": False}  # collected before the option
