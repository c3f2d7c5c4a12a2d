"""The dream env: Gymnasium API, batched = single for the same seeds, common random numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from world_fixture import make_tiny_world, other_member

from common.errors import DataError
from control.world import WorldPaths, load_world
from envs.controller import model_actions
from envs.dream import DreamEnv, rollout_population
from models.controller import act


def tiny_world(tmp_path, env="doom"):
    return load_world(WorldPaths.from_logdir(make_tiny_world(tmp_path / "run", env)))


def play_single(world, params, seed, temperature, max_steps):
    env = DreamEnv(world, temperature, max_steps)
    obs, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        raw = act(world.controller, params, torch.as_tensor(obs)[None])
        obs, reward, terminated, truncated, _ = env.step(model_actions(world.spec, raw)[0].numpy())
        total, steps = total + reward, steps + 1
        if terminated or truncated:
            return total, steps


def test_dream_env_passes_gymnasium_checker(tmp_path):
    world = tiny_world(tmp_path)
    env = DreamEnv(world, max_steps=30, render_mode="rgb_array")
    check_env(env, skip_render_check=True)
    env.reset(seed=1)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_batched_rollout_equals_single_episodes(tmp_path):
    world = tiny_world(tmp_path)
    params = torch.as_tensor(np.random.default_rng(0).normal(size=(3, world.controller.num_params)) * 2,
                             dtype=torch.float32)
    seeds = [11, 12, 13, 14]
    returns, lengths = rollout_population(world, params, seeds, 1.15, 60)
    assert returns.shape == (3, 4)
    single = np.array([[play_single(world, params[p], s, 1.15, 60)[0] for s in seeds] for p in range(3)])
    np.testing.assert_array_equal(returns, single)
    assert len(set(lengths.ravel().tolist())) > 1, "episodes should end at different steps"
    assert (returns == lengths).all()  # doom: +1 per step survived, the last one included


def test_common_random_numbers_and_caps(tmp_path):
    world = tiny_world(tmp_path)
    one = torch.as_tensor(np.random.default_rng(1).normal(size=world.controller.num_params), dtype=torch.float32)
    params = torch.stack([one, one, one * 0.5])
    returns, lengths = rollout_population(world, params, [5, 6, 7], 1.0, 40)
    np.testing.assert_array_equal(returns[0], returns[1])  # same controller, same seeds -> same episodes
    assert lengths.max() <= 40
    again, _ = rollout_population(world, params[:1], [5, 6, 7], 1.0, 40)
    np.testing.assert_array_equal(again[0], returns[0])  # independent of the rest of the batch


def test_carracing_dream_has_no_done_head_and_truncates(tmp_path):
    world = tiny_world(tmp_path, "carracing")
    env = DreamEnv(world, temperature=0.7, max_steps=12)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8 + 16,)  # [z, h]
    for _ in range(12):
        obs, reward, terminated, truncated, _ = env.step(np.array([0.1, 0.5, 0.0], np.float32))
    assert truncated and not terminated and reward == 0.0


def test_ensemble_of_copies_is_the_single_dream_and_members_change_it(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    params = torch.as_tensor(np.random.default_rng(2).normal(size=(3, 8 + 2 * 16)) * 2, dtype=torch.float32)
    seeds = [21, 22, 23, 24]
    single = rollout_population(load_world(WorldPaths.from_logdir(run)), params, seeds, 1.15, 60)
    copies = load_world(WorldPaths.from_logdir(run, members=[str(run / "mdnrnn"), str(run / "mdnrnn")]))
    np.testing.assert_array_equal(rollout_population(copies, params, seeds, 1.15, 60)[0], single[0])

    members = [str(other_member(run, 5)), str(other_member(run, 6).parent)]  # a file, and a folder's best.pt
    world = load_world(WorldPaths.from_logdir(run, members=members))
    assert len(world.members) == 2
    returns, lengths = rollout_population(world, params, seeds, 1.15, 60)
    assert not np.array_equal(returns, single[0])
    assert (returns == lengths).all() and len(set(lengths.ravel().tolist())) > 1
    env_returns = [play_single(world, params[0], s, 1.15, 60)[0] for s in seeds]
    np.testing.assert_array_equal(returns[0], env_returns)  # the single-env face plays the same ensemble


def test_ensemble_member_of_another_shape_or_vae_is_refused(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    wrong_z = other_member(run, 5, z_size=4)
    with pytest.raises(DataError, match="z_size 4"):
        load_world(WorldPaths.from_logdir(run, members=[str(wrong_z)]))
    other_run = make_tiny_world(tmp_path / "other", seed=1)  # another V
    with pytest.raises(DataError, match="another VAE"):
        load_world(WorldPaths.from_logdir(run, members=[str(other_run / "mdnrnn")]))
