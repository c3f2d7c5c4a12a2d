"""play.py: keys drive the dream and the real env, +/- change tau, R restarts, recordings, no-display message."""

from __future__ import annotations

import os
import re

import gymnasium as gym
import numpy as np
import pygame
from conftest import assert_one_line_error, run_cli, run_stage
from PIL import Image
from world_fixture import make_tiny_world

from control.play import KeyState, Window, controls_for, dream_panels, play_loop, real_panels
from control.world import WorldPaths, load_world
from envs.dream import DreamEnv
from envs.registry import get_spec, make_env

LEFT, RIGHT, UP, DOWN = pygame.K_LEFT, pygame.K_RIGHT, pygame.K_UP, pygame.K_DOWN


def down(key):
    return pygame.event.Event(pygame.KEYDOWN, key=key)


def up(key):
    return pygame.event.Event(pygame.KEYUP, key=key)


def scripted(script):
    """An events source: frame i gets the events script[i] (frames counted per loop iteration)."""
    frame = iter(range(10**6))
    return lambda: script.get(next(frame), [])


def test_key_state_and_action_mappings():
    keys, doom, car = KeyState(), controls_for(get_spec("doom")).action, controls_for(get_spec("carracing")).action
    assert doom(keys)[0] == 0 and car(keys).tolist() == [0, 0, 0]
    keys.feed(down(LEFT))
    assert doom(keys)[0] == -1
    keys.feed(down(RIGHT))  # both held: the latest wins
    assert doom(keys)[0] == 1
    keys.feed(up(RIGHT))
    assert doom(keys)[0] == -1
    keys.feed(down(UP))
    keys.feed(down(DOWN))
    assert car(keys).tolist() == [-1.0, 1.0, np.float32(0.8)]
    keys.feed(up(LEFT))
    assert doom(keys)[0] == 0 and car(keys)[0] == 0
    assert [keys.feed(down(k)) for k in (pygame.K_r, pygame.K_EQUALS, pygame.K_MINUS, pygame.K_ESCAPE)] == [
        "reset", "hotter", "colder", "quit"]
    assert keys.feed(pygame.event.Event(pygame.QUIT)) == "quit"


def test_dream_keys_temperature_and_restart(tmp_path):
    world = load_world(WorldPaths.from_logdir(make_tiny_world(tmp_path / "run", done_bias=-50.0)))
    env = DreamEnv(world, temperature=1.0, max_steps=1000, render_mode="rgb_array")
    script = {0: [down(LEFT)], 5: [up(LEFT), down(RIGHT)], 10: [up(RIGHT)], 12: [down(pygame.K_EQUALS)] * 2,
              14: [down(pygame.K_MINUS)] * 30, 20: [down(pygame.K_r)], 31: [down(pygame.K_ESCAPE)]}
    lines = []
    result = play_loop(env, controls_for(world.spec), dream_panels, Window("test", 64), events=scripted(script),
                       log=lines.append)
    actions = np.concatenate(result.actions)
    assert len(actions) == 30  # 31 frames, one of them the restart
    assert (actions[:5] == -1).all() and (actions[5:10] == 1).all() and (actions[10:] == 0).all()
    assert result.temperatures[11] == 1.0 and result.temperatures[12] == 1.1
    assert result.temperatures[14] == 0.0 and env._dream.temperature == 0.0  # never below 0
    assert result.resets == 1 and any(line.startswith("restarted at step 20") for line in lines)
    assert result.scores == [] and "quit during an episode" in lines[-1]  # unfinished episodes do not count


def test_posted_events_drive_the_default_event_queue(tmp_path):
    world = load_world(WorldPaths.from_logdir(make_tiny_world(tmp_path / "run", done_bias=-50.0)))
    env = DreamEnv(world, max_steps=6, render_mode="rgb_array")
    pygame.display.init()
    pygame.event.post(down(RIGHT))
    result = play_loop(env, controls_for(world.spec), dream_panels, Window("test", 64), episodes=2, log=print)
    assert len(result.actions) == 12 and all(a[0] == 1 for a in result.actions)
    assert result.scores == [6.0, 6.0] and env.temperature == 1.15


class ActionLog(gym.Wrapper):
    """What the real env was actually asked to do."""

    def __init__(self, env):
        super().__init__(env)
        self.indices = []

    def step(self, action):
        out = super().step(action)
        self.indices.append(out[4]["action_index"])
        return out


def test_real_doom_keys_reach_the_game_and_recording(tmp_path, capsys):
    env = ActionLog(make_env("doom", render_mode="rgb_array"))
    script = {0: [down(LEFT)], 10: [down(RIGHT)], 20: [up(RIGHT), up(LEFT)]}
    try:
        result = play_loop(env, controls_for(get_spec("doom")), real_panels, Window("test", 128), episodes=1,
                           max_steps=30, record=True, events=scripted(script))
    finally:
        env.close()
    assert env.indices == [1] * 10 + [2] * 10 + [0] * 10  # 1 left, 2 right, 0 none
    assert result.scores == [30.0] and "average score over 1 episodes: 30.0" in capsys.readouterr().out
    assert len(result.frames) == 30 and result.frames[0].shape == (256, 341 + 4 + 256, 3)  # real 160x120 | input


def test_cli_dream_records_and_bad_input(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    out = run_stage("play.py", "dream", "--logdir", run, "--episodes", 2, "--max_steps", 15, "--fps", 0,
                    "--record", "dream.gif", "--screenshot", "shot.png", "--scale", 2).stdout
    steps = [int(n) for n in re.findall(r"^episode \d+: score [\d.]+ \((\d+) steps\)$", out, re.M)]
    assert len(steps) == 2 and "average score over 2 episodes" in out
    gif = Image.open("dream.gif")
    assert gif.n_frames == sum(steps) and gif.size == (256, 256)
    assert Image.open("shot.png").size == (128, 128 + 46)
    assert_one_line_error(run_cli("play.py", "dream", "--logdir", "nowhere", check=False), "nowhere", "no such")
    assert_one_line_error(run_cli("play.py", "real", "NoSuchEnv-v9", check=False), "unknown env")
    assert_one_line_error(run_cli("play.py", "real", "doom", "--record", "x.txt", check=False), ".gif")


def test_no_display_says_how_to_get_one():
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")}
    result = run_stage("play.py", "real", "doom", check=False, env=env)
    assert_one_line_error(result, "xvfb-run -a python play.py")
