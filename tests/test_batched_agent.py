"""The batched real-env agent plays every episode exactly as the agent alone would, for any K and pool.

Real CarRacing (a continuous game, where a rounding difference in V would change every later frame), a
tiny untrained V and M, and real worker processes. Also the training-time early stop.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from world_fixture import make_tiny_world

from common.backend import LOCAL
from control.agent import BLOCK_ROWS, BatchedAgent, WorldModelAgent, in_blocks
from control.evaluate import evaluate_real
from control.real import Episode, agent_episodes, init_worker, play_agent_episodes, run_episode, task_chunks
from control.world import WorldPaths, load_world
from envs import get_spec
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE, frames_to_tensor

SEEDS = [3, 7, 11, 12, 40]
STEPS = 40


@pytest.fixture(scope="module")
def car_world(tmp_path_factory):
    logdir = make_tiny_world(tmp_path_factory.mktemp("car") / "run", env="carracing", policy="brownian")
    paths = WorldPaths.from_logdir(logdir)
    world = load_world(paths, "cpu")
    params = np.random.default_rng(0).normal(size=(3, world.controller.num_params)).astype(np.float32)
    return paths, world, params


def alone(world, params: np.ndarray, seed: int, max_steps: int,
          z_input: str = "sample") -> tuple[Episode, list[float]]:
    """One episode with the one-episode agent, in this process; also its rewards step by step."""
    env = get_spec("carracing").create()
    agent = WorldModelAgent(world.spec, world.vae, world.mdnrnn, params, env=env, z_input=z_input)
    agent.reset(seed)
    rewards: list[float] = []
    try:
        episode = run_episode(env, lambda frame: agent.act(frame), seed, max_steps, on_reward=rewards.append)
    finally:
        env.close()
    return episode, rewards


def test_blocks_always_have_the_same_number_of_rows():
    seen: list[int] = []

    def double(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(x.shape[0])
        return x * 2, x + 1

    rows = torch.arange(2 * BLOCK_ROWS + 3, dtype=torch.float32)[:, None]
    twice, plus_one = in_blocks(double, rows)
    assert seen == [BLOCK_ROWS] * 3 and torch.equal(twice, rows * 2) and torch.equal(plus_one, rows + 1)
    assert torch.equal(in_blocks(lambda x: x * 2, rows[:1]), rows[:1] * 2) and seen[-1] == BLOCK_ROWS


@pytest.mark.parametrize(("slots", "workers"), [(1, 1), (3, 2)])
def test_scores_per_seed_are_the_same_for_any_batch_and_worker_count(car_world, slots, workers):
    paths, world, params = car_world
    scores = evaluate_real(world.spec, {}, paths, params[0], SEEDS, STEPS, workers, 120.0, "brownian",
                           progress=False, envs_per_worker=slots)
    expected = [alone(world, params[0], seed, STEPS)[0] for seed in SEEDS]
    assert scores.scores.tolist() == [e.score for e in expected]
    assert scores.lengths.tolist() == [e.length for e in expected]


class ActionLog(gym.Wrapper):
    """Keeps the actions of every episode the env plays, by seed."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.episodes: dict[int, list[np.ndarray]] = {}

    def reset(self, *, seed=None, options=None):
        self.current = self.episodes[seed] = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.current.append(np.array(action, copy=True))
        return self.env.step(action)

    def canonical_action(self, action):
        return self.env.canonical_action(action)


@pytest.mark.parametrize("slots", [2, 8])
def test_every_action_is_the_one_the_agent_alone_plays(slots):
    """Paper-size V and M, where a batch rounds differently from a single frame unless the agent keeps
    its blocks: every action of every episode must be bit-identical (a score could hide a tiny change)."""
    torch.manual_seed(0)
    spec = get_spec("carracing")
    vae, mdnrnn = ConvVAE(32), MDNRNN(32, 3, 256, 5)
    agent = BatchedAgent(spec, vae, mdnrnn, slots)
    params = np.random.default_rng(0).normal(size=(3, agent.config.num_params)).astype(np.float32) * 0.5
    jobs = [(params[i % 3], seed) for i, seed in enumerate([5, 6, 7, 8, 9])]
    envs = [ActionLog(spec.create()) for _ in range(slots)]
    try:
        batched = play_agent_episodes(envs, agent, [p for p, _ in jobs], [s for _, s in jobs], 25)
    finally:
        for env in envs:
            env.close()
    actions = {seed: episode for env in envs for seed, episode in env.episodes.items()}
    for (p, seed), episode in zip(jobs, batched):
        env = ActionLog(spec.create())
        one = WorldModelAgent(spec, vae, mdnrnn, p, env=env)
        one.reset(seed)
        try:
            single = run_episode(env, one.act, seed, 25)
        finally:
            env.close()
        assert (episode.score, episode.length) == (single.score, single.length)
        assert len(actions[seed]) == len(env.episodes[seed])
        assert all(np.array_equal(a, b) for a, b in zip(actions[seed], env.episodes[seed])), f"seed {seed}"


def test_a_batch_of_different_controllers_plays_each_as_alone(car_world):
    paths, world, params = car_world
    candidates = np.repeat(params, 2, axis=0)  # 6 episodes: 3 controllers x 2 seeds
    seeds = [5, 6] * 3
    init_worker("carracing", {}, str(paths.vae), str(paths.mdnrnn), slots=4)
    envs = [get_spec("carracing").create() for _ in range(4)]
    try:
        from control.real import _WORKER

        batched = play_agent_episodes(envs, _WORKER["agent"], candidates, seeds, STEPS)
    finally:
        for env in envs:
            env.close()
    assert [(e.score, e.length) for e in batched] == \
        [(e.score, e.length) for e in (alone(world, p, s, STEPS)[0] for p, s in zip(candidates, seeds))]


def test_negative_reward_rule_ends_training_episodes_where_the_whole_episode_had_that_run(car_world):
    paths, world, params = car_world
    patience = 6
    with LOCAL.pool(2, init_worker, ("carracing", {}, str(paths.vae), str(paths.mdnrnn), 4)) as pool:
        stopped = agent_episodes(pool, np.repeat(params[1:2], len(SEEDS), axis=0), SEEDS, 200, 4,
                                 stop_after_negative=patience)
    assert any(e.stopped for e in stopped)
    for seed, episode in zip(SEEDS, stopped):
        whole, rewards = alone(world, params[1], seed, 200)
        run, end = 0, None
        for step, reward in enumerate(rewards, start=1):
            run = run + 1 if reward < 0 else 0
            if run >= patience:
                end = step
                break
        if end is None:
            assert not episode.stopped and (episode.score, episode.length) == (whole.score, whole.length)
        else:
            assert episode.stopped and episode.length == end
            assert episode.score == pytest.approx(sum(rewards[:end]), abs=1e-9)


def test_z_input_mean_feeds_v_means_to_c_and_m_in_this_process_and_in_the_workers(car_world):
    paths, world, params = car_world
    logs = {}
    for z_input in ("mean", "sample"):
        env = ActionLog(world.spec.create())
        agent = WorldModelAgent(world.spec, world.vae, world.mdnrnn, params[1], env=env, z_input=z_input)
        agent.reset(SEEDS[0])
        seen = []
        try:
            run_episode(env, lambda frame, seen=seen, agent=agent: seen.append(frame) or agent.act(frame),
                        SEEDS[0], STEPS)
        finally:
            env.close()
        logs[z_input] = env.episodes[SEEDS[0]]
        with torch.no_grad():
            mu, _ = world.vae.encode(frames_to_tensor(seen[-1][None]))
        assert torch.allclose(agent.z, mu, atol=1e-5) == (z_input == "mean")
    assert not all(np.array_equal(a, b) for a, b in zip(logs["mean"], logs["sample"]))

    seeds, steps = SEEDS[:2], 200  # long enough for the two inputs to reach different tiles
    scores = evaluate_real(world.spec, {}, paths, params[1], seeds, steps, 1, 120.0, "brownian", progress=False,
                           z_input="mean")
    mean_alone = [alone(world, params[1], seed, steps, z_input="mean")[0].score for seed in seeds]
    assert scores.scores.tolist() == mean_alone
    assert mean_alone != [alone(world, params[1], seed, steps)[0].score for seed in seeds]
    with pytest.raises(ValueError, match="z_input 'mu'"):
        BatchedAgent(world.spec, world.vae, world.mdnrnn, z_input="mu")


def test_tasks_cover_every_episode_once_in_even_rounds():
    for count, workers, slots in [(1, 4, 8), (100, 2, 8), (1024, 2, 8), (7, 3, 1), (64, 16, 8)]:
        chunks = task_chunks(count, workers, slots)
        assert [i for c in chunks for i in c] == list(range(count))
        assert max(len(c) for c in chunks) <= 4 * slots or len(chunks) == 1
        assert len(chunks) >= min(count, workers)
        assert max(len(c) for c in chunks) - min(len(c) for c in chunks) <= 1
