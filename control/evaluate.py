"""Stage 06 as a library: score a controller (or the random baseline) over N episodes on fixed seeds.

Episode i uses seed `seed + i` in the real env (or as its dream scenario), so the controller and the
random policy face the same episodes, and a rerun gives the same scores.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.backend import LOCAL, Backend
from common.checkpoints import load_checkpoint
from common.csvlog import read_csv, write_csv
from common.errors import DataError
from common.recorder import save_video, side_by_side
from common.stats import Comparison, sample_std, welch
from control.agent import WorldModelAgent
from control.real import ENVS_PER_WORKER, agent_episodes, init_worker, random_chooser, random_episodes, run_episode
from control.world import WorldPaths, load_world
from envs.controller import model_actions
from envs.dream import DreamEnv, rollout_population
from envs.policies import STATE_POLICIES
from envs.registry import EnvSpec
from envs.render import create_with_frames, full_frame
from models.controller import act
from models.vae import tensor_to_frames


@dataclass
class Scores:
    label: str
    seeds: list[int]
    scores: np.ndarray
    lengths: np.ndarray
    invalid: np.ndarray | None = None  # per episode, actions the env refused (None: the env has no such rule)
    source: ScoresSource | None = None  # what a loaded scores file says produced it (None: unknown)

    def summary(self) -> str:
        refused = "" if self.invalid is None else (f", {int((self.invalid > 0).sum())} ended by an invalid "
                                                   f"action, {int(self.invalid.sum())} invalid actions")
        return (f"{self.label}: {self.scores.mean():.1f} ± {sample_std(self.scores):.1f} over {len(self.scores)} "
                f"episodes (min {self.scores.min():.0f}, max {self.scores.max():.0f}, "
                f"mean length {self.lengths.mean():.0f}{refused})")


SCORE_FIELDS = ["seed", "score", "length", "invalid"]
SOURCE_FIELDS = ["world", "policy", "controller", "controller_sha256", "env", "env_options", "max_steps", "done",
                 "temperature"]


@dataclass(frozen=True)
class ScoresSource:
    """What produced a scores file: two files are compared only when the settings that shape an episode agree."""
    world: str  # "real" or "dream"
    policy: str  # "controller", or the baseline policy's name ("sticky", "constant:0,1,0", ...)
    controller: str  # the checkpoint scored, as named on the command line or found ("" for a baseline)
    controller_sha256: str  # sha256 of that file's bytes ("" for a baseline)
    env: str
    env_options: dict  # the real env's options, defaults filled in
    max_steps: int
    done: str = ""  # dream only: the done rule
    temperature: float | None = None  # dream only

    def row(self) -> dict[str, str]:
        return {"world": self.world, "policy": self.policy, "controller": self.controller,
                "controller_sha256": self.controller_sha256, "env": self.env,
                "env_options": json.dumps(self.env_options, sort_keys=True), "max_steps": str(self.max_steps),
                "done": self.done, "temperature": "" if self.temperature is None else f"{self.temperature:g}"}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> ScoresSource:
        return cls(row["world"], row["policy"], row["controller"], row["controller_sha256"], row["env"],
                   json.loads(row["env_options"]), int(row["max_steps"]), row["done"],
                   float(row["temperature"]) if row["temperature"] else None)

    def differences(self, other: ScoresSource) -> list[str]:
        """The episode-shaping settings (env, its options, step cap, real or dream) that differ, in words."""
        def show(value: object) -> str:
            return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)

        names = {"env": "env", "env_options": "env options", "max_steps": "max_steps", "world": "world"}
        return [f"{label} {show(getattr(self, name))} here vs {show(getattr(other, name))} there"
                for name, label in names.items() if getattr(self, name) != getattr(other, name)]


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes: which controller checkpoint a scores file came from."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_scores(result: Scores, path: Path, source: ScoresSource) -> None:
    """Per-episode seed, score, length (and invalid actions), each row with the settings that produced it,
    as CSV (atomic), to compare runs on the same seeds and only runs that match."""
    path.parent.mkdir(parents=True, exist_ok=True)
    invalid = result.invalid if result.invalid is not None else [None] * len(result.seeds)
    about = source.row()
    write_csv(path, SCORE_FIELDS + SOURCE_FIELDS, [
        {"seed": s, "score": f"{x:g}", "length": int(n), "invalid": "" if k is None else int(k), **about}
        for s, x, n, k in zip(result.seeds, result.scores, result.lengths, invalid)])


def load_scores(path: Path, label: str) -> Scores:
    """A scores file; its `source` is None when it predates the settings columns or its rows disagree on them."""
    try:
        rows = read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read scores ({e})") from None
    try:
        seeds = [int(r["seed"]) for r in rows]
        scores = np.array([float(r["score"]) for r in rows])
        lengths = np.array([float(r["length"]) for r in rows])
        invalid = (np.array([float(r["invalid"]) for r in rows])
                   if rows and rows[0].get("invalid") not in (None, "") else None)
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a scores file written by 06_test_controller.py ({e})") from None
    source = None
    if rows and all(rows[0].get(k) is not None for k in SOURCE_FIELDS):
        kinds = {tuple(r[k] for k in SOURCE_FIELDS) for r in rows}
        try:
            source = ScoresSource.from_row(rows[0]) if len(kinds) == 1 else None
        except (ValueError, TypeError):
            source = None
    return Scores(label, seeds, scores, lengths, invalid, source)


def compare_on_common_seeds(a: Scores, b: Scores) -> Comparison | None:
    """Welch's test of a vs b on the seeds both have scored (None if fewer than 2 in common)."""
    common = sorted(set(a.seeds) & set(b.seeds))
    if len(common) < 2:
        return None
    pick = [{s: i for i, s in enumerate(x.seeds)} for x in (a, b)]
    scores_a = a.scores[[pick[0][s] for s in common]]
    scores_b = b.scores[[pick[1][s] for s in common]]
    return welch(scores_a, scores_b, a.label, b.label)


def load_controller(path: Path, env: str, num_params: int) -> np.ndarray:
    state = load_checkpoint(path, "controller", expect={"env": env})
    params = state["model"].get("params")
    if params is None or params.numel() != num_params:
        raise DataError(f"{path}: controller has {0 if params is None else params.numel()} params; the V and M "
                        f"given need {num_params} (was it trained with other models?)")
    return params.double().numpy()


def controller_z_input(path: Path) -> str:
    """What the controller read from V when it was trained in the game (control.agent.Z_INPUTS; older and
    dream-trained controllers: a sample, as the reference)."""
    return load_checkpoint(path, "controller").get("config", {}).get("z_input", "sample")


def controller_done_mode(path: Path) -> str:
    """The dream's done rule the controller was trained with (older checkpoints: the reference's threshold)."""
    return load_checkpoint(path, "controller").get("config", {}).get("done_mode", "threshold")


def evaluate_dream(paths: WorldPaths, params: np.ndarray, seeds: list[int], temperature: float,
                   max_steps: int, device: str | torch.device = "cpu", done_mode: str = "threshold") -> Scores:
    world = load_world(paths, device, with_vae=False, done_mode=done_mode)
    scores, lengths = rollout_population(world, torch.as_tensor(params[None], dtype=torch.float32), seeds,
                                         temperature, max_steps)
    return Scores(f"controller (dream, tau={temperature:g})", seeds, scores[0], lengths[0])


def evaluate_real(spec: EnvSpec, env_kwargs: dict, paths: WorldPaths | None, params: np.ndarray | None,
                  seeds: list[int], max_steps: int, workers: int | None, timeout: float, policy: str,
                  progress: bool = True, backend: Backend = LOCAL,
                  envs_per_worker: int = ENVS_PER_WORKER, z_input: str = "sample") -> Scores:
    """Real-env episodes on workers (local processes or Ray), each playing `envs_per_worker` at once;
    params None scores the random `policy` instead. Always whole episodes. `z_input`: what C and M read
    from V (the controller's own, `controller_z_input`)."""
    init_args = (spec.name, env_kwargs, backend.ship(paths.vae) if paths else None,
                 backend.ship(paths.mdnrnn) if paths else None, envs_per_worker, z_input)
    bar = tqdm(total=len(seeds), unit="ep", desc="episodes", disable=None if progress else True)
    with backend.pool(workers, init_worker, init_args, task_timeout=timeout) as pool:
        if params is None:
            episodes = random_episodes(pool, policy, seeds, max_steps, envs_per_worker, done=bar.update)
        else:
            episodes = agent_episodes(pool, np.repeat(params[None], len(seeds), axis=0), seeds, max_steps,
                                      envs_per_worker, done=bar.update)
    bar.close()
    scores = np.array([e.score for e in episodes])
    lengths = np.array([e.length for e in episodes], np.float64)
    invalid = [e.invalid for e in episodes]
    label = baseline_label(policy) if params is None else "controller (real)"
    refused = None if any(k is None for k in invalid) else np.asarray(invalid, np.float64)
    return Scores(label, seeds, scores, lengths, refused)


def baseline_label(policy: str) -> str:
    """'random policy (sticky, real)'; a rule that reads the state is not random: 'policy best_fit (real)'."""
    return f"policy {policy} (real)" if policy in STATE_POLICIES else f"random policy ({policy}, real)"


def record_real_episode(spec: EnvSpec, env_kwargs: dict, paths: WorldPaths | None, params: np.ndarray | None,
                        seed: int, max_steps: int, policy: str, out: Path | None, render_mode: str | None = None,
                        fps: float = 30.0, z_input: str = "sample") -> tuple[float, int]:
    """Play one real episode in-process (for a window or a video); with `out`, save
    [full-size frame (when the env shows one) | 64x64 input | V's reconstruction of the z the controller saw]
    per step."""
    if out is not None and render_mode is None:
        env = create_with_frames(spec, env_kwargs)  # Doom keeps its full screen only in rgb_array mode
    else:
        env = spec.create(render_mode=render_mode, **env_kwargs)
    frames: list[np.ndarray] = []
    try:
        if params is None:
            choose, agent = random_chooser(env, policy, seed), None
        else:
            world = load_world(paths, "cpu")
            agent = WorldModelAgent(spec, world.vae, world.mdnrnn, params, env=env, z_input=z_input)
            agent.reset(seed)
            choose = agent.act

        def choose_and_record(obs: np.ndarray) -> np.ndarray:
            action = choose(obs)
            if out is not None:
                real = full_frame(env)
                panels = ([] if real is None else [real]) + [obs]
                if agent is not None:
                    panels.append(_decode(agent.vae, agent.z))
                frames.append(side_by_side(panels))
            return action

        episode = run_episode(env, choose_and_record, seed, max_steps)
    finally:
        env.close()
    if out is not None:
        save_video(frames, out, fps)
    return episode.score, episode.length


def _decode(vae: torch.nn.Module, z: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return tensor_to_frames(vae.decode(z[:1])[0])


def record_dream_episode(paths: WorldPaths, params: np.ndarray, seed: int, temperature: float, max_steps: int,
                         out: Path, fps: float = 30.0, done_mode: str = "threshold") -> tuple[float, int]:
    """One dream episode decoded by V, saved as a video."""
    world = load_world(paths, "cpu", done_mode=done_mode)
    env = DreamEnv(world, temperature, max_steps, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    frames, score, length = [side_by_side([env.render()])], 0.0, 0  # render() decodes z with V
    tensor = torch.as_tensor(params, dtype=torch.float32)
    while True:
        raw = act(world.controller, tensor, torch.as_tensor(obs)[None])
        obs, reward, terminated, truncated, _ = env.step(model_actions(world.spec, raw)[0].numpy())
        score += reward
        length += 1
        frames.append(side_by_side([env.render()]))
        if terminated or truncated:
            break
    save_video(frames, out, fps)
    return score, length
