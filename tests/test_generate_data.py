"""Stage 01 end to end: real envs, real worker processes, determinism, resume after kill -9, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import (
    ROOT,
    assert_every_flag_has_its_own_help,
    assert_one_line_error,
    processes,
    run_stage,
    script_parser,
)

from common.seeds import TRAINING_DATA_SEED
from data.collect import collect_episode
from data.rollouts import RolloutFolder
from envs import make_env


def vizdoom_engines(session: int | None = None) -> list[int]:
    """PIDs of running ViZDoom engine processes (ViZDoom runs the game as a child process), only those of
    `session` when given, so engines of other programs on the machine do not count."""
    return [pid for pid, proc in processes().items()
            if b"vizdoom" in proc.program and (session is None or proc.session == session)]


def arrays(folder):
    return [RolloutFolder(folder)[i] for i in range(len(RolloutFolder(folder)))]


def assert_same_episodes(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_doom_rollouts_format_and_summary(tmp_path):
    result = run_stage("01_generate_data.py", "doom", "--total_episodes", 3, "--workers", 2,
                       "--max_steps", 60)
    folder = tmp_path / "runs" / "doom" / "rollouts"
    assert "episodes: 3 new, 3 in folder" in result.stdout and "frames/s" in result.stdout
    rollouts = RolloutFolder(folder)
    assert len(rollouts) == 3 and rollouts.env_name == "doom"
    ep = rollouts[0]
    assert ep["obs"].shape[1:] == (64, 64, 3) and ep["action"].shape[1] == 1
    assert (ep["reward"] == 1).all() and len(ep["obs"]) <= 60
    assert ep["done"].sum() <= 1 and (not ep["done"].any() or ep["done"][-1])
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["policy"] == "sticky" and meta["seed"] == TRAINING_DATA_SEED  # apart from the test seeds 0..
    assert meta["env_kwargs"] == {"screen_flashes": True}  # recorded with the default filled in


def test_same_files_for_any_worker_count(tmp_path):
    args = ("--total_episodes", 4, "--max_steps", 40, "--seed", 11)
    run_stage("01_generate_data.py", "doom", *args, "--workers", 1, "--store_folder", "one")
    run_stage("01_generate_data.py", "doom", *args, "--workers", 2, "--store_folder", "two")
    assert_same_episodes(arrays(tmp_path / "one"), arrays(tmp_path / "two"))
    # and episode i is exactly what seed + i gives in-process
    env = make_env("doom")
    try:
        expected = collect_episode(env, "sticky", 11 + 2, 40)
    finally:
        env.close()
    assert_same_episodes([arrays(tmp_path / "one")[2]], [expected])


def test_carracing_and_generic_gym_env(tmp_path):
    run_stage("01_generate_data.py", "carracing", "--total_episodes", 2, "--workers", 2,
              "--max_steps", 15, "--store_folder", "car")
    car = RolloutFolder(tmp_path / "car")
    assert car[0]["action"].shape == (15, 3) and car.meta["policy"] == "brownian"
    gym_id = "vizdoom.gymnasium_wrapper:VizdoomBasic-v1"
    run_stage("01_generate_data.py", gym_id, "--total_episodes", 2, "--workers", 1,
              "--max_steps", 20, "--policy", "uniform")
    basic = RolloutFolder(tmp_path / "runs" / "vizdoom.gymnasium_wrapper_VizdoomBasic-v1" / "rollouts")
    action = basic[1]["action"]
    assert action.shape[1] == 4 and set(action.sum(axis=1)) == {1.0}  # one-hot Discrete(4)


def test_min_length_keeps_first_long_episodes(tmp_path):
    args = ("doom", "--total_episodes", 3, "--max_steps", 400, "--min_length", 150, "--seed", 2)
    result = run_stage("01_generate_data.py", *args, "--workers", 2, "--store_folder", "a")
    run_stage("01_generate_data.py", *args, "--workers", 1, "--store_folder", "b")
    a = RolloutFolder(tmp_path / "a")
    assert len(a) == 3 and min(a.lengths()) >= 150
    assert [p.name for p in a.paths] == [p.name for p in RolloutFolder(tmp_path / "b").paths]
    assert "too short" in result.stdout


def test_resume_after_kill_minus_9(tmp_path):
    args = ["doom", "--total_episodes", 24, "--max_steps", 300, "--workers", 2, "--store_folder", "r",
            "--seed", 5]
    proc = subprocess.Popen([sys.executable, str(ROOT / "01_generate_data.py"), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    folder = tmp_path / "r"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(folder.glob("*.npz"))) < 4:
        time.sleep(0.05)
    engines_before_kill = vizdoom_engines(session=proc.pid)  # start_new_session: the stage's session id
    assert engines_before_kill, "the workers' ViZDoom engines should be running"
    os.killpg(proc.pid, signal.SIGKILL)  # the parent's group, mid-write; workers must follow it
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(vizdoom_engines()) & set(engines_before_kill):
        time.sleep(0.1)
    assert not set(vizdoom_engines()) & set(engines_before_kill), "orphaned ViZDoom engines"
    done_before = len(list(folder.glob("*.npz")))
    assert 4 <= done_before < 24
    for path in folder.glob("*.npz"):  # whatever is visible is complete
        RolloutFolder(folder).schema.validate(dict(np.load(path)), str(path))
    result = run_stage("01_generate_data.py", *args)
    assert f"{24 - done_before} new, 24 in folder" in result.stdout
    assert not list(folder.glob(".*"))  # stale temp files swept
    run_stage("01_generate_data.py", *args[:-4], "--workers", 2, "--store_folder", "fresh", "--seed", 5)
    assert_same_episodes(arrays(folder), arrays(tmp_path / "fresh"))
    again = run_stage("01_generate_data.py", *args)
    assert "0 new, 24 in folder" in again.stdout


@pytest.mark.parametrize("args, needles", [
    (["nosuchenv"], ["unknown env 'nosuchenv'", "known: doom, carracing"]),
    (["CartPole-v1"], ["no image"]),
    (["doom", "--total_episodes", "0"], ["--total_episodes", "must be > 0"]),
    (["doom", "--workers", "-2"], ["--workers", "must be > 0"]),
    (["doom", "--env_kwargs", "{oops"], ["--env_kwargs", "not valid JSON"]),
    (["doom", "--env_kwargs", '{"resolution": "1x1"}'], ["bad env option", "resolution"]),
    (["doom", "--store_folder", "afile/sub"], ["--store_folder", "afile is a file, not a folder"]),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needles):
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(run_stage("01_generate_data.py", *args, check=False), *needles)


def test_refuses_folder_made_for_another_env(tmp_path):
    run_stage("01_generate_data.py", "doom", "--total_episodes", 1, "--max_steps", 10, "--workers", 1,
              "--store_folder", "x")
    result = run_stage("01_generate_data.py", "carracing", "--total_episodes", 1, "--max_steps", 10,
                       "--store_folder", "x", check=False)
    assert_one_line_error(result, "x holds rollouts made with env='doom'")
    result = run_stage("01_generate_data.py", "doom", "--total_episodes", 2, "--max_steps", 10,
                       "--store_folder", "x", "--seed", 3, check=False)
    assert_one_line_error(result, f"seed={TRAINING_DATA_SEED}")


def test_help_explains_every_flag():
    parser = script_parser("01_generate_data.py")
    assert_every_flag_has_its_own_help(parser)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    assert {"--total_episodes", "--workers", "--logdir", "--store_folder", "--policy", "--seed", "--max_steps",
            "--min_length", "--env_kwargs", "--episode_timeout"} <= flags
