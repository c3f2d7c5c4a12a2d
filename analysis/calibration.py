"""`analyze.py calibration`: the dream calibration check (control/calibration.py) on a run folder."""

from __future__ import annotations

from pathlib import Path

import torch

from control.calibration import data_policy_of, run_calibration, write_calibration
from control.evaluate import controller_done_mode, controller_z_input, load_controller
from control.options import env_kwargs_of_run
from control.world import WorldPaths, best_or_last, load_world


def calibration(logdir: Path, out: Path, episodes: int = 64, temperature: float | None = None,
                max_steps: int | None = None, seed: int = 0, workers: int = 1, worker_timeout: float = 600.0,
                device: str | torch.device = "cpu", progress: bool = True, real: bool = True,
                controller: bool = True, done_mode: str | None = None, vae: Path | None = None,
                mdnrnn: Path | None = None) -> list[Path]:
    """`analyze.py calibration`: the check on a run folder; prints the table and the verdict."""
    paths = WorldPaths.from_logdir(logdir, vae and str(vae), mdnrnn and str(mdnrnn))
    controller_path = best_or_last(logdir / "controller")
    if done_mode is None:
        done_mode = controller_done_mode(controller_path) if controller_path.exists() else "threshold"
    world = load_world(paths, device, with_vae=False, done_mode=done_mode)
    spec = world.spec
    tau = spec.dream_temperature if temperature is None else temperature
    cap = max_steps or spec.episode_steps(env_kwargs_of_run(logdir))
    params, z_input = None, "sample"
    if controller and controller_path.exists():
        params = load_controller(controller_path, spec.name, world.controller.num_params)
        z_input = controller_z_input(controller_path)
    seeds = [seed + i for i in range(episodes)]
    result = run_calibration(world, data_policy_of(logdir, spec), tau, cap, seeds,
                             env_kwargs_of_run(logdir) if real else None, workers, worker_timeout, paths, params,
                             progress, z_input=z_input)
    print(f"dream: tau {tau:g}, done rule {done_mode}; {episodes} episodes per policy, seeds {seed}-"
          f"{seed + episodes - 1}")
    print(result.table())
    for note in result.notes:
        print(note)
    print(result.verdict())
    return write_calibration(result, out, f", done {done_mode}")
