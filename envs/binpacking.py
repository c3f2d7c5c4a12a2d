"""Online stochastic bin packing (awslabs or-rl-benchmarks), seen as WorldModelsDreaming's 64x64 picture.

One item arrives per step; the action puts it in a new bag (0) or in a bag at level a = 1..B-1. The
reward is minus the change in waste (empty space in partly filled bags): -(B - s) for a new bag, +s
for an existing one, so a complete episode returns exactly -W(T). Bags that become full leave the
levels and are only counted (binpacking.md §1.2). The first item is drawn at reset; T items per episode.

Invalid actions (a level with no bag, or one the item overflows), one of three rules (§7.4):
- "terminate" (default; the ORL base env and WorldModelsDreaming): the episode ends, reward
  -100 - (the previous step's waste change). A 1-step episode scores -100: such scores mean early
  termination, not packing, which is why `info` counts invalid actions.
- "drop": the same penalty, the item is dropped and the episode goes on (ORL's incremental variant).
- "nearest": the item goes to the valid level nearest to a (a new bag if none), no penalty (ORL NearAction).
`info["action_mask"]` lists the valid actions (0 always), which is how the pipeline's agents and
baselines never take an invalid one (envs/pixels.py picks the best-scoring valid action).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.binpacking_image import IMAGE_SHAPE, MAX_CAPACITY, MAX_ITEM_SIZE, decode_state, encode_state

INVALID_RULES = ("terminate", "drop", "nearest")
INVALID_PENALTY = -100.0
GYM_ID = "WorldModels/BinPacking-v0"


@dataclass(frozen=True)
class Config:
    capacity: int
    item_sizes: tuple[int, ...]
    item_probabilities: tuple[float, ...]
    horizon: int = 1000


# ORL's B=9 families (file comments) and WorldModelsDreaming's B=30 "perfect pack" (report: T = 1000).
_B30_SIZES = tuple(range(1, 10))
PRESETS: dict[str, Config] = {
    "wmd": Config(30, _B30_SIZES, (0.06, 0.11, 0.11, 0.22, 0.0, 0.11, 0.06, 0.0, 0.33)),
    "b30_pp": Config(30, _B30_SIZES, (0.06, 0.11, 0.11, 0.22, 0.0, 0.11, 0.06, 0.0, 0.33)),
    "b30_bw": Config(30, _B30_SIZES, (0.14, 0.10, 0.06, 0.13, 0.11, 0.13, 0.03, 0.11, 0.19)),
    "b30_lw": Config(30, _B30_SIZES, (0.0, 0.0, 0.0, 1 / 3, 0.0, 0.0, 0.0, 0.0, 2 / 3)),
    "b9_lw": Config(9, (2, 3), (0.8, 0.2)),
    "b9_pp": Config(9, (2, 3), (0.75, 0.25)),
    "b9_bw": Config(9, (2, 3), (0.5, 0.5)),
}
DEFAULT_PRESET = "wmd"


def make_config(preset: str = DEFAULT_PRESET, capacity: int | None = None, item_sizes: Any = None,
                item_probabilities: Any = None, horizon: int | None = None) -> Config:
    """A preset with any field overridden; ValueError names the bad parameter."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    base = PRESETS[preset]
    config = Config(
        capacity=int(base.capacity if capacity is None else capacity),
        item_sizes=tuple(int(s) for s in (base.item_sizes if item_sizes is None else item_sizes)),
        item_probabilities=tuple(float(p) for p in (base.item_probabilities if item_probabilities is None
                                                    else item_probabilities)),
        horizon=int(base.horizon if horizon is None else horizon),
    )
    if not 2 <= config.capacity:
        raise ValueError(f"capacity must be >= 2, got {config.capacity}")
    if len(config.item_sizes) != len(config.item_probabilities) or not config.item_sizes:
        raise ValueError("item_sizes and item_probabilities must be non-empty and of equal length")
    if min(config.item_sizes) < 1 or max(config.item_sizes) >= config.capacity:
        raise ValueError(f"item sizes must be in 1..capacity-1 = {config.capacity - 1}")
    if min(config.item_probabilities) < 0 or abs(sum(config.item_probabilities) - 1) > 1e-6:
        raise ValueError("item_probabilities must be >= 0 and sum to 1")
    if config.horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {config.horizon}")
    return config


def config_of_options(options: dict[str, Any]) -> Config:
    """The problem an env made with these options (its constructor kwargs) poses."""
    fields = ("preset", "capacity", "item_sizes", "item_probabilities", "horizon")
    return make_config(**{k: options[k] for k in fields if k in options})


def frame_action_masks(frames: np.ndarray, options: dict[str, Any], size: int = MAX_CAPACITY) -> np.ndarray:
    """(T, size) uint8 valid-action masks read off real frames (T, 64, 64, 3) of an env with these options."""
    capacity = config_of_options(options).capacity
    masks = np.zeros((len(frames), size), np.uint8)
    for t, frame in enumerate(frames):
        levels, item = decode_state(frame, capacity)
        masks[t, :capacity] = valid_actions(levels, item)
    return masks


def valid_actions(levels: np.ndarray, item: int) -> np.ndarray:
    """0/1 mask over actions 0..B-1: a new bag always, a level when it has a bag the item fits in."""
    capacity = len(levels)
    mask = np.zeros(capacity, np.int8)
    mask[0] = 1
    fits = np.arange(1, capacity) + item <= capacity
    mask[1:] = (levels[1:] > 0) & fits
    return mask


def waste(levels: np.ndarray) -> int:
    """W = sum over partly filled bags of their empty space."""
    capacity = len(levels)
    return int(np.dot(levels[1:], capacity - np.arange(1, capacity)))


class BinPackingEnv(gym.Env):
    """Gymnasium env: Discrete(B) actions; obs the 64x64x3 picture (or, with observation="vector", N + [s])."""

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, preset: str = DEFAULT_PRESET, capacity: int | None = None,
                 item_sizes: Any = None, item_probabilities: Any = None, horizon: int | None = None,
                 invalid_action: str = "terminate", observation: str = "image", render_scale: int = 8) -> None:
        self.config = make_config(preset, capacity, item_sizes, item_probabilities, horizon)
        if invalid_action not in INVALID_RULES:
            raise ValueError(f"invalid_action must be one of {INVALID_RULES}, got {invalid_action!r}")
        if observation not in ("image", "vector"):
            raise ValueError(f"observation must be 'image' or 'vector', got {observation!r}")
        if observation == "image" and (self.config.capacity > MAX_CAPACITY
                                       or max(self.config.item_sizes) > MAX_ITEM_SIZE):
            raise ValueError(f"the picture fits capacity <= {MAX_CAPACITY} and items <= {MAX_ITEM_SIZE}; "
                             "use observation='vector' for larger problems")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.invalid_action = invalid_action
        self.observation = observation
        self.render_scale = int(render_scale)
        capacity = self.config.capacity
        self.action_space = gym.spaces.Discrete(capacity)
        if observation == "image":
            self.observation_space = gym.spaces.Box(0, 255, IMAGE_SHAPE, np.uint8)
        else:
            high = np.full(capacity + 1, self.config.horizon, np.int64)
            high[-1] = max(self.config.item_sizes)
            self.observation_space = gym.spaces.Box(0, high, (capacity + 1,), np.int64)
        self._sizes = np.asarray(self.config.item_sizes)
        self._probabilities = np.asarray(self.config.item_probabilities)
        self._probabilities = self._probabilities / self._probabilities.sum()
        self.levels = np.zeros(capacity, np.int64)
        self.item = 0
        self.full_bags = 0
        self.steps = 0
        self.invalid_actions = 0
        self._last_waste_change = 0
        self._window: Any = None

    # -- the Gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.levels[:] = 0
        self.full_bags = 0
        self.steps = 0
        self.invalid_actions = 0
        self._last_waste_change = 0
        self.item = self._draw_item()
        if self.render_mode == "human":
            self.render()
        return self._observe(), self._info(invalid=False)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        action = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action {action} is not in Discrete({self.config.capacity})")
        mask = valid_actions(self.levels, self.item)
        invalid = not mask[action]
        if invalid and self.invalid_action == "nearest":
            action, invalid = self._nearest_valid(action, mask), False
        self.steps += 1
        if invalid:
            self.invalid_actions += 1
            reward = INVALID_PENALTY - self._last_waste_change
            terminated = self.invalid_action == "terminate" or self.steps >= self.config.horizon
        else:
            reward = float(self._place(action))
            terminated = self.steps >= self.config.horizon
        if not terminated:
            self.item = self._draw_item()
        if self.render_mode == "human":
            self.render()
        return self._observe(), float(reward), bool(terminated), False, self._info(invalid)

    def render(self) -> np.ndarray | None:
        frame = self.picture()
        if self.render_scale > 1:
            frame = np.repeat(np.repeat(frame, self.render_scale, 0), self.render_scale, 1)
        if self.render_mode == "rgb_array":
            return frame
        if self.render_mode == "human":
            self._show(frame)
        return None

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None

    # -- the rules ------------------------------------------------------------------------------
    def action_mask(self) -> np.ndarray:
        return valid_actions(self.levels, self.item)

    def waste(self) -> int:
        return waste(self.levels)

    def state_vector(self) -> np.ndarray:
        """ORL's observation: counts per level 0..B-1, then the item size."""
        return np.append(self.levels, self.item).astype(np.int64)

    def picture(self) -> np.ndarray:
        return encode_state(self.levels, self.item)

    def _draw_item(self) -> int:
        return int(self.np_random.choice(self._sizes, p=self._probabilities))

    def _place(self, action: int) -> int:
        """Put the current item at `action` (valid); returns the reward, minus the change in waste."""
        capacity, item = self.config.capacity, self.item
        if action == 0:
            change = capacity - item
            target = item
        else:
            self.levels[action] -= 1
            change = -item
            target = action + item
        if target == capacity:
            self.full_bags += 1
        else:
            self.levels[target] += 1
        self._last_waste_change = change
        return -change

    @staticmethod
    def _nearest_valid(action: int, mask: np.ndarray) -> int:
        existing = np.flatnonzero(mask[1:]) + 1
        if len(existing) == 0:
            return 0
        return int(existing[np.abs(existing - action).argmin()])

    def _observe(self) -> np.ndarray:
        return self.picture() if self.observation == "image" else self.state_vector()

    def _info(self, invalid: bool) -> dict[str, Any]:
        return {
            "action_mask": self.action_mask(),
            "state": self.state_vector(),
            "waste": self.waste(),
            "full_bags": self.full_bags,
            "step": self.steps,
            "invalid_action": bool(invalid),
            "invalid_actions": self.invalid_actions,
        }

    def _show(self, frame: np.ndarray) -> None:
        import pygame

        if self._window is None:
            pygame.display.init()
            self._window = pygame.display.set_mode(frame.shape[1::-1])
            pygame.display.set_caption("bin packing")
        self._window.blit(pygame.surfarray.make_surface(frame.swapaxes(0, 1)), (0, 0))
        pygame.event.pump()
        pygame.display.flip()


def register() -> None:
    """Make `gymnasium.make("WorldModels/BinPacking-v0", ...)` work (idempotent)."""
    if GYM_ID not in gym.registry:
        gym.register(GYM_ID, entry_point=f"{__name__}:BinPackingEnv", disable_env_checker=True)


register()
