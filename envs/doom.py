"""VizDoom TakeCover as in the paper: 1 step = 1 tic, +1 per tic survived, 2,100-tic cap, 3 actions.

Built on DoomGame directly (not vizdoom's gymnasium wrapper) to control what the paper depends on:
no frame skip, the step cap, seeding of VizDoom itself (the reference never seeded it), and where
ViZDoom writes its `_vizdoom.ini` and `_vizdoom/` files (a private temp folder, not the user's cwd).

Not quite the reference's game: ppaquette's gym-doom loaded its own take_cover.cfg at skill 5 with the
HUD drawn (the reference cropped it off) and, on its older engine, the red flash of a hit. VizDoom 1.3's
take_cover.cfg says skill 4, no HUD and no flashes. Skill 4 is kept: measured here with the sticky
policy, skills 3 and 4 play alike (291 ± 148 steps over 60 episodes) while 5 is nightmare (93 ± 41), and
uniform random play at skill 4 (240 ± 114) is close to the paper's random 210 ± 108. `screen_flashes`
(on by default) puts the hit flash back: without it M cannot see how hurt the agent is, and a dream
trained on such frames did not transfer (docs/notebook.md, E0 vs E1).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import gymnasium as gym
import numpy as np

from envs.preprocess import FRAME_SHAPE, to_model_frame

# Render small: 160x120 steps ~6x faster than 640x480 and gives the same picture once squashed to 64x64
# (bench/bench_doom_resolution.py measures both).
RESOLUTIONS = {"160x120": "RES_160X120", "320x240": "RES_320X240", "640x480": "RES_640X480"}
DEFAULT_RESOLUTION = "160x120"
MAX_EPISODE_STEPS = 2100  # 60 s at 35 tics/s, the old gym-doom timeout
HUD_KEEP_FRACTION = 5 / 6  # the reference keeps rows 0:400 of 480


def doom_action_index(a: float) -> int:
    """Controller scalar in [-1, 1] -> 0 none, 1 left, 2 right, by thirds (reference doomreal.py)."""
    if a < -1 / 3:
        return 1
    if a > 1 / 3:
        return 2
    return 0


class DoomTakeCoverEnv(gym.Env):
    """Gymnasium env: obs 64x64x3 uint8, action Box([-1], [1]) mapped to left / none / right."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 35}

    def __init__(
        self,
        render_mode: str | None = None,
        resolution: str = DEFAULT_RESOLUTION,
        max_episode_steps: int = MAX_EPISODE_STEPS,
        screen_flashes: bool = True,
    ) -> None:
        import vizdoom as vzd

        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, got {resolution!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self.observation_space = gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        self._tmpdir = tempfile.mkdtemp(prefix="vizdoom-")
        game = vzd.DoomGame()
        game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
        game.set_doom_config_path(os.path.join(self._tmpdir, "_vizdoom.ini"))
        game.set_screen_resolution(getattr(vzd.ScreenResolution, RESOLUTIONS[resolution]))
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_window_visible(render_mode == "human")
        # VizDoom 1.3's take_cover.cfg turns the red flash of a hit off; the reference's engine drew it.
        # On, a hit reddens the whole frame for ~20 tics: the only visible sign of how hurt the agent is.
        game.set_render_screen_flashes(bool(screen_flashes))
        game.set_mode(vzd.Mode.PLAYER)
        game.set_episode_timeout(0)  # the cap is ours, so a time-out reads as truncated
        buttons = [b.name for b in game.get_available_buttons()]
        # Button vectors for action indices 0 none, 1 left, 2 right, whatever order the cfg lists them in.
        self._buttons = [
            [0] * len(buttons),
            [int(b == "MOVE_LEFT") for b in buttons],
            [int(b == "MOVE_RIGHT") for b in buttons],
        ]
        cwd = os.getcwd()
        os.chdir(self._tmpdir)  # ViZDoom creates `_vizdoom/` in the cwd at init
        try:
            game.init()
        finally:
            os.chdir(cwd)
        self._game = game
        self._crop_rows = (0, round(game.get_screen_height() * HUD_KEEP_FRACTION))
        self._steps = 0
        self._last_screen: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is None:  # derive VizDoom's seed from our RNG so reset() without a seed still varies
            seed = int(self.np_random.integers(2**31 - 1))
        self._game.set_seed(int(seed) % (2**31 - 1))
        self._game.new_episode()
        self._steps = 0
        return self._observe(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        index = doom_action_index(float(np.asarray(action, dtype=np.float32).reshape(-1)[0]))
        reward = float(self._game.make_action(self._buttons[index]))
        self._steps += 1
        terminated = self._game.is_episode_finished()
        truncated = not terminated and self._steps >= self.max_episode_steps
        obs = np.zeros(FRAME_SHAPE, np.uint8) if terminated else self._observe()
        return obs, reward, terminated, truncated, {"action_index": index}

    def canonical_action(self, action: Any) -> np.ndarray:
        """What the world model is trained on: the raw scalar, as the reference recorded it."""
        return np.clip(np.asarray(action, dtype=np.float32).reshape(1), -1.0, 1.0)

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return None if self._last_screen is None else self._last_screen.copy()
        return None  # "human": ViZDoom draws its own window

    def close(self) -> None:
        game = getattr(self, "_game", None)
        if game is not None:
            game.close()
            self._game = None
        if getattr(self, "_tmpdir", None):
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _observe(self) -> np.ndarray:
        state = self._game.get_state()
        self._last_screen = state.screen_buffer
        return to_model_frame(self._last_screen, self._crop_rows)
