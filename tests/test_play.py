"""play.py: keys drive the dream and the real env, +/- change tau, R restarts, recordings, no-display message;
bin packing is played by typing levels, checked against the action mask."""

from __future__ import annotations

import os
import re

import gymnasium as gym
import numpy as np
import pygame
import torch
from conftest import assert_one_line_error, run_cli, run_stage
from PIL import Image
from world_fixture import make_tiny_world

from control.play import KeyState, Window, controls_for, dream_panels, model_panels, play_loop, real_panels
from control.world import WorldPaths, load_world
from envs.dream import DreamEnv, WorldModel
from envs.registry import get_spec, make_env
from models.mask_reader import MaskReader
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE

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


ENTER = pygame.K_RETURN
DIGITS = [pygame.K_0, pygame.K_1, pygame.K_2, pygame.K_3, pygame.K_4, pygame.K_5, pygame.K_6, pygame.K_7,
          pygame.K_8, pygame.K_9]


def typed(text):
    """KEYDOWN events typing `text`: digits, "<" Backspace, "\n" Enter."""
    keys = {"<": pygame.K_BACKSPACE, "\n": ENTER}
    return [down(keys[c] if c in keys else DIGITS[int(c)]) for c in text]


class StatusWindow(Window):
    """A window that keeps every status it showed."""

    def __init__(self, height):
        super().__init__("test", height)
        self.statuses = []

    def show(self, panels, status, help_line):
        self.statuses.append(status)
        super().show(panels, status, help_line)


def test_binpacking_levels_are_typed_and_checked_against_the_mask():
    controls, keys = controls_for(get_spec("binpacking")), KeyState()
    mask = np.zeros(30, np.int8)
    mask[[0, 3, 4, 5, 12, 17]] = 1
    info = {"action_mask": mask}

    def enter(text, info=info):
        for event in typed(text):
            keys.feed(event)
            controls.feed(event, info)
        return controls.action(keys)

    assert controls.action(keys) is None  # the env waits for a move
    assert enter("18<7") is None and "level 17_   valid: 0 3-5 12 17" in controls.status(info)
    action = enter("\n")
    assert action.shape == (30,) and action.tolist() == [1.0 if a == 17 else 0.0 for a in range(30)]
    assert controls.action(keys) is None  # played once
    assert enter("0\n").argmax() == 0
    assert enter("123\n").argmax() == 12  # at most two digits for 30 levels
    assert enter("6\n") is None and "level 6 refused" in controls.status(info)  # no bag there: not sent
    assert enter("4") is None and "level 4_   valid" in controls.status(info)  # typing clears the message
    assert enter("<\n") is None and "type a level first" in controls.status(info)
    assert enter("12\n", {"action_mask": np.ones(9, np.int8)}) is None  # a bag of 9 has levels 0..8 only
    for event in [down(pygame.K_KP1), down(pygame.K_KP7), down(pygame.K_SPACE)]:
        controls.feed(event, info)
    assert controls.action(keys).argmax() == 17  # keypad digits; Space plays too
    enter("3\n")
    controls.feed(down(pygame.K_r), info)
    assert controls.action(keys) is None  # R drops a move typed for the old episode
    status = controls.status({"action_mask": mask, "state": np.append(np.zeros(30, int), 7), "waste": 23,
                              "full_bags": 5})
    assert status.startswith("   item 7   waste 23   full bags 5\nlevel _")


def test_real_binpacking_waits_for_typed_moves_and_refuses_invalid_ones():
    env = get_spec("binpacking").create(render_mode="rgb_array", horizon=3)
    window = StatusWindow(64)
    script = {0: typed("0"), 1: typed("\n"), 5: typed("9\n"), 6: typed("7\n"), 8: typed("0\n")}
    try:
        result = play_loop(env, controls_for(get_spec("binpacking")), model_panels, window, episodes=1,
                           record=True, events=scripted(script), log=print)
        assert [a.argmax() for a in result.actions] == [0, 7, 0]  # new bag (item 7), item 3 on it, new bag
        assert env.env.unwrapped.invalid_actions == 0 and result.lengths == [3]
        assert result.scores == [-env.last_info["waste"]]  # a complete episode scores minus its waste
        assert len(result.frames) == 3 and result.frames[0].shape == (256, 256, 3)  # moves only, one panel
    finally:
        env.close()
    assert window.statuses[0] == "episode 1   step 0   score 0.0   item 7   waste 0   full bags 0\nlevel _   valid: 0"
    assert window.statuses[2].endswith("item 3   waste 23   full bags 0\nlevel _   valid: 0 7")
    assert "level 9 refused: no bag there fits the item   valid: 0 7" in window.statuses[6]


def test_dream_binpacking_checks_moves_against_the_mask_reader():
    torch.manual_seed(0)
    spec = get_spec("binpacking")
    reader = MaskReader(8, 30, 16)
    with torch.no_grad():  # z -> levels 0..3 valid, whatever z
        reader.net[-1].weight.zero_()
        reader.net[-1].bias.copy_(torch.tensor([1.0] * 4 + [-1.0] * 26))
    world = WorldModel(spec, MDNRNN(8, 30, 16, 5, predict_reward=True), torch.zeros(2, 8), torch.zeros(2, 8),
                       ConvVAE(8), mask_reader=reader)
    env = DreamEnv(world, max_steps=50, render_mode="rgb_array")
    window = StatusWindow(64)
    script = {0: typed("5\n"), 2: typed("3\n"), 3: typed("0\n"), 4: [down(pygame.K_EQUALS)], 5: [down(pygame.K_q)]}
    result = play_loop(env, controls_for(spec), dream_panels, window, events=scripted(script), log=print)
    assert [a.argmax() for a in result.actions] == [3, 0] and result.temperatures == [1.0, 1.0]
    assert "level 5 refused: no bag there fits the item   valid: 0-3" in window.statuses[1]
    assert window.statuses[5].startswith("episode 1   step 2   score ") and "tau 1.05" in window.statuses[5]
    assert window.surface.get_size() == (64, 64 + 46 + 20)  # a line for the typed level
