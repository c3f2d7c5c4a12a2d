"""Keyboard play in the dream (M as simulator, frames decoded by V) or in a real env, with a pygame window.

Playing the dream yourself is the quickest way to see what M learned: whether fireballs come, whether
moving helps, how the temperature tau changes the world. Keys are tracked from KEYDOWN/KEYUP events
(never pygame.key.get_pressed), so a test can drive the loop with posted or scripted events under
SDL_VIDEODRIVER=dummy. Actions are model actions, the same space the controller acts in. Bin packing
is turn-based: the player types a level and the env waits for it (LevelEntry).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from PIL import Image

from common.atomic import atomic_path
from common.errors import UserError
from common.recorder import side_by_side
from envs.registry import EnvSpec
from envs.render import full_frame

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # no banner on stdout
import pygame  # noqa: E402

RECORD_HEIGHT = 256  # recordings use the height of stage 06's, whatever the window's scale
STATUS_HEIGHT = 46
LINE_HEIGHT = 20  # each status line past the first adds this much

QUIT_KEYS = (pygame.K_ESCAPE, pygame.K_q)
RESET_KEYS = (pygame.K_r,)
HOTTER_KEYS = (pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS)  # '=' is the unshifted '+' key
COLDER_KEYS = (pygame.K_MINUS, pygame.K_KP_MINUS, pygame.K_UNDERSCORE)
NUMBER_KEYS = (pygame.K_1, pygame.K_2, pygame.K_3, pygame.K_4, pygame.K_5, pygame.K_6, pygame.K_7, pygame.K_8,
               pygame.K_9)
DIGIT_KEYS = (pygame.K_0, *NUMBER_KEYS, pygame.K_KP0, pygame.K_KP1, pygame.K_KP2, pygame.K_KP3, pygame.K_KP4,
              pygame.K_KP5, pygame.K_KP6, pygame.K_KP7, pygame.K_KP8, pygame.K_KP9)  # index % 10 = the digit
PLAY_KEYS = (pygame.K_RETURN, pygame.K_KP_ENTER, pygame.K_SPACE)


def check_display(environ: dict | None = None, platform: str = sys.platform) -> None:
    """pygame silently falls back to an invisible window without a display; say how to get one instead."""
    environ = os.environ if environ is None else environ
    if platform in ("darwin", "win32") or environ.get("SDL_VIDEODRIVER"):
        return  # native windows there; or the driver was chosen on purpose (dummy = headless, e.g. tests)
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        raise UserError("no display to open a window on: run `xvfb-run -a python play.py ...` (or set "
                        "SDL_VIDEODRIVER=dummy to play blind, e.g. with --record)")


class KeyState:
    """Which keys are held, from KEYDOWN/KEYUP events; KEYDOWN of a command key also returns the command."""

    def __init__(self) -> None:
        self.held: list[int] = []  # in the order pressed, most recent last

    def feed(self, event: pygame.event.Event) -> str | None:
        """Update from one event; return "quit", "reset", "hotter" or "colder" for those keys, else None."""
        if event.type == pygame.QUIT:
            return "quit"
        if event.type == pygame.KEYUP:
            if event.key in self.held:
                self.held.remove(event.key)
            return None
        if event.type != pygame.KEYDOWN:
            return None
        if event.key in self.held:
            self.held.remove(event.key)
        self.held.append(event.key)
        for command, keys in (("quit", QUIT_KEYS), ("reset", RESET_KEYS), ("hotter", HOTTER_KEYS),
                              ("colder", COLDER_KEYS)):
            if event.key in keys:
                return command
        return None

    def latest(self, keys: Iterable[int]) -> int | None:
        """The most recently pressed of `keys` still held (so LEFT then RIGHT, both held, means RIGHT)."""
        keys = tuple(keys)
        return next((k for k in reversed(self.held) if k in keys), None)

    def is_held(self, key: int) -> bool:
        return key in self.held


@dataclass(frozen=True)
class Controls:
    """Keys -> model action for one env, and the one-line help shown under the picture.

    Turn-based envs (bin packing) also see every event with the env's latest info (`feed`), add their own
    text to the status (`status`; a "\n" starts a line), and return no action until the player moves.
    """

    action: Callable[[KeyState], np.ndarray | None]  # None: no move yet, the env waits
    help: str
    feed: Callable[[pygame.event.Event, dict], None] | None = None
    status: Callable[[dict], str] | None = None


class LevelEntry:
    """Bin packing: digits type a level (0 = a new bag), Backspace edits, Enter/Space plays it.

    Thirty levels are too many for held keys, hence typing. A level the mask forbids is refused here with
    a message: sent, it would not be what the player meant (the env plays the best-scoring *valid* action,
    a new bag). The mask is the env's own in the real env and the mask reader's in the dream.
    """

    def __init__(self, size: int) -> None:
        self.size, self.typed, self.message = size, "", ""
        self.move: int | None = None  # the accepted level, played on the next step

    def feed(self, event: pygame.event.Event, info: dict) -> None:
        if event.type != pygame.KEYDOWN:
            return
        if event.key in DIGIT_KEYS and len(self.typed) < len(str(self.size - 1)):
            self.typed, self.message = self.typed + str(DIGIT_KEYS.index(event.key) % 10), ""
        elif event.key == pygame.K_BACKSPACE:
            self.typed, self.message = self.typed[:-1], ""
        elif event.key in RESET_KEYS:
            self.typed, self.message, self.move = "", "", None  # a move typed for the old episode
        elif event.key in PLAY_KEYS and self.move is None:
            mask = info.get("action_mask")
            level = int(self.typed) if self.typed else None
            if level is None:
                self.message = "type a level first (0 = new bag)"
            elif level >= (self.size if mask is None else len(mask)) or (mask is not None and not mask[level]):
                self.message = f"level {level} refused: no bag there fits the item"
            else:
                self.move, self.message = level, ""
            self.typed = ""

    def action(self, keys: KeyState) -> np.ndarray | None:
        """The accepted move as a one-hot score vector (once), else None."""
        if self.move is None:
            return None
        action = np.zeros(self.size, np.float32)
        action[self.move], self.move = 1.0, None
        return action

    def status(self, info: dict) -> str:
        """Item, waste and full bags (the real env's info has them), then the typed level and the valid ones."""
        state, mask = info.get("state"), info.get("action_mask")
        env = "" if state is None else f"   item {state[-1]}   waste {info['waste']}   full bags {info['full_bags']}"
        valid = "?" if mask is None else number_ranges(np.flatnonzero(mask))
        return f"{env}\n{self.message or f'level {self.typed}_'}   valid: {valid}"


def number_ranges(numbers: np.ndarray) -> str:
    """[0, 3, 4, 5, 9] -> "0 3-5 9", so that up to 30 valid levels fit on the status line."""
    runs = np.split(numbers, np.flatnonzero(np.diff(numbers) != 1) + 1) if len(numbers) else []
    return " ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def controls_for(spec: EnvSpec) -> Controls:
    """Doom: LEFT/RIGHT -> -1/+1 (none 0, as the reference); CarRacing: steer, gas 1.0, brake 0.8;
    bin packing: typed levels (LevelEntry); discrete/binary envs: number keys; other continuous envs: arrows
    on the first two dimensions."""
    low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
    if spec.name == "doom":
        def doom(keys: KeyState) -> np.ndarray:
            key = keys.latest((pygame.K_LEFT, pygame.K_RIGHT))
            return np.array([-1.0 if key == pygame.K_LEFT else 1.0 if key == pygame.K_RIGHT else 0.0], np.float32)
        return Controls(doom, "LEFT/RIGHT move")
    if spec.name == "carracing":
        def car(keys: KeyState) -> np.ndarray:
            key = keys.latest((pygame.K_LEFT, pygame.K_RIGHT))
            steer = -1.0 if key == pygame.K_LEFT else 1.0 if key == pygame.K_RIGHT else 0.0
            gas = 1.0 if keys.is_held(pygame.K_UP) else 0.0
            brake = 0.8 if keys.is_held(pygame.K_DOWN) else 0.0
            return np.array([steer, gas, brake], np.float32)
        return Controls(car, "LEFT/RIGHT steer  UP gas  DOWN brake")
    n = spec.action_dim
    if spec.name == "binpacking":
        entry = LevelEntry(n)
        return Controls(entry.action, "type a level, Enter plays (0 = new bag)", entry.feed, entry.status)
    if spec.action_kind == "discrete":
        def discrete(keys: KeyState) -> np.ndarray:
            key = keys.latest(NUMBER_KEYS[:n])
            action = np.zeros(n, np.float32)
            action[0 if key is None else NUMBER_KEYS.index(key)] = 1.0
            return action
        return Controls(discrete, f"1..{min(n, 9)} action (none = action 1)")
    if spec.action_kind == "binary":
        def binary(keys: KeyState) -> np.ndarray:
            return np.array([1.0 if i < 9 and keys.is_held(NUMBER_KEYS[i]) else 0.0 for i in range(n)], np.float32)
        return Controls(binary, f"1..{min(n, 9)} press buttons")

    def continuous(keys: KeyState) -> np.ndarray:
        action = np.clip(np.zeros(n, np.float32), low, high)
        key = keys.latest((pygame.K_LEFT, pygame.K_RIGHT))
        if key is not None:
            action[0] = low[0] if key == pygame.K_LEFT else high[0]
        key = keys.latest((pygame.K_UP, pygame.K_DOWN))
        if key is not None and n > 1:
            action[1] = high[1] if key == pygame.K_UP else low[1]
        return action
    return Controls(continuous, "LEFT/RIGHT dim 0  UP/DOWN dim 1")


def dream_panels(env: gym.Env, obs: np.ndarray) -> list[np.ndarray]:
    """The dream as V decodes it (DreamEnv.render())."""
    return [env.render()]


def real_panels(env: gym.Env, obs: np.ndarray) -> list[np.ndarray]:
    """[the env's full-size frame, when it shows one | the 64x64 model input]."""
    frame = full_frame(env)
    return [obs] if frame is None else [frame, obs]


def model_panels(env: gym.Env, obs: np.ndarray) -> list[np.ndarray]:
    """The 64x64 model input alone, where the full frame is only that picture upscaled (bin packing)."""
    return [obs]


class Window:
    """The pygame window: panels scaled up, a status line and the keys below. Opens on the first show()."""

    def __init__(self, title: str, height: int) -> None:
        self.title, self.height = title, height
        self.surface: pygame.Surface | None = None
        self.font: pygame.font.Font | None = None

    def open(self, width: int, height: int) -> None:
        pygame.display.init()
        pygame.font.init()
        try:
            self.surface = pygame.display.set_mode((width, height))
        except pygame.error as e:
            raise UserError(f"cannot open a window ({e}); run `xvfb-run -a python play.py ...`") from None
        pygame.display.set_caption(self.title)
        self.font = pygame.font.Font(None, 22)

    def show(self, panels: list[np.ndarray], status: str, help_line: str) -> None:
        """Draw the panels, the status (one line per "\n") and the help line under it."""
        image = np.ascontiguousarray(side_by_side(panels, self.height))
        lines = status.split("\n")
        size = (image.shape[1], self.height + STATUS_HEIGHT + LINE_HEIGHT * (len(lines) - 1))
        if self.surface is None or self.surface.get_size() != size:
            self.open(*size)
        self.surface.fill((20, 20, 20))
        picture = pygame.image.frombuffer(image.tobytes(), (image.shape[1], image.shape[0]), "RGB")
        self.surface.blit(picture, (0, 0))
        for i, line in enumerate(lines):
            self.surface.blit(self.font.render(line, True, (255, 255, 255)), (8, self.height + 5 + LINE_HEIGHT * i))
        self.surface.blit(self.font.render(help_line, True, (170, 170, 170)),
                          (8, self.height + 5 + LINE_HEIGHT * len(lines)))
        pygame.display.flip()

    def screenshot(self, path: str) -> None:
        """Save what the window shows now (PNG), atomically."""
        if self.surface is None:
            raise UserError(f"{path}: no screenshot, the window never opened")
        pixels = np.transpose(pygame.surfarray.array3d(self.surface), (1, 0, 2))
        with atomic_path(path) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")

    def close(self) -> None:
        if self.surface is not None:
            pygame.display.quit()
            self.surface = None


@dataclass
class PlayResult:
    scores: list[float] = field(default_factory=list)  # finished episodes (not those restarted with R)
    lengths: list[int] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)  # every model action sent to the env
    temperatures: list[float] = field(default_factory=list)  # tau at every step (dream)
    frames: list[np.ndarray] = field(default_factory=list)  # the picture at every step, with --record
    resets: int = 0


def play_loop(env: gym.Env, controls: Controls, panels: Callable[[gym.Env, np.ndarray], list[np.ndarray]],
              window: Window, seed: int = 0, episodes: int | None = None, max_steps: int | None = None,
              fps: float = 0.0, tau_step: float = 0.05, record: bool = False,
              events: Callable[[], list] = pygame.event.get,
              log: Callable[[str], None] = print) -> PlayResult:
    """Play until Esc/Q/window close or `episodes` finished. Episode i (resets with R included) uses seed
    seed + i. `events()` gives the pending input events each frame (scripted in tests); fps 0 = unpaced.
    Turn-based controls step the env only on a move; the frames in between just wait (and are not recorded)."""
    keys, clock, result = KeyState(), pygame.time.Clock(), PlayResult()
    started = 0

    def new_episode() -> tuple[np.ndarray, dict]:
        nonlocal started
        obs, info = env.reset(seed=seed + started)
        started += 1
        return obs, info

    (obs, info), step, score = new_episode(), 0, 0.0
    while True:
        pictures = panels(env, obs)
        tau = getattr(env, "temperature", None)
        status = (f"episode {len(result.scores) + 1}   step {step}   score {score:.1f}"
                  + ("" if tau is None else f"   tau {tau:.2f}") + (controls.status(info) if controls.status else ""))
        window.show(pictures, status, controls.help + "   R reset" + ("   +/- tau" if tau is not None else "")
                    + "   Esc quit")

        quit_now = reset = False
        for event in events():
            command = keys.feed(event)
            if controls.feed is not None:
                controls.feed(event, info)
            quit_now = quit_now or command == "quit"
            reset = reset or command == "reset"
            if command in ("hotter", "colder") and hasattr(env, "set_temperature"):
                delta = tau_step if command == "hotter" else -tau_step
                env.set_temperature(max(0.0, round(env.temperature + delta, 6)))
        if quit_now:
            if step:
                log(f"quit during an episode (score so far {score:.1f} after {step} steps; not counted)")
            break
        if reset:
            log(f"restarted at step {step} (score so far {score:.1f}; not counted)")
            result.resets += 1
            (obs, info), step, score = new_episode(), 0, 0.0
            continue

        action = controls.action(keys)
        if action is None:  # turn-based: no move yet
            if fps:
                clock.tick(fps)
            continue
        if record:
            result.frames.append(side_by_side(pictures, RECORD_HEIGHT))
        tau = getattr(env, "temperature", None)
        obs, reward, terminated, truncated, info = env.step(action)
        result.actions.append(action)
        if tau is not None:
            result.temperatures.append(float(tau))
        step += 1
        score += float(reward)
        if terminated or truncated or (max_steps is not None and step >= max_steps):
            result.scores.append(score)
            result.lengths.append(step)
            log(f"episode {len(result.scores)}: score {score:.1f} ({step} steps)")
            if episodes is not None and len(result.scores) >= episodes:
                break
            (obs, info), step, score = new_episode(), 0, 0.0
        if fps:
            clock.tick(fps)
    if result.scores:
        log(f"average score over {len(result.scores)} episodes: {np.mean(result.scores):.1f}")
    return result
