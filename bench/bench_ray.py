#!/usr/bin/env python
"""The Ray backend's overhead against the local worker pool, measured in one run (ratios).

    python bench/bench_ray.py --episodes 400 --logdir ../shared/reference-run/doom-gpu-1

Rows, each the same work on the same seeds (results checked identical):
- stage 01 (Doom rollouts, `generate()`): local pool vs Ray on this machine (a Ray this script starts)
  vs Ray on a simulated two-node cluster (two raylets on this machine, `ray.cluster_utils.Cluster`,
  half the CPUs each: tasks and episode bytes cross between nodes as on a real cluster);
- one real-mode CMA-ES generation (pop x rollouts episodes of V + M + C in the real game), local vs Ray.

Times include opening the pool (starting workers, loading V and M); Ray's own start-up (ray.init, once
per stage run) is reported apart, and "steady" rates count from the first finished episode.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.backend import LOCAL, Backend  # noqa: E402
from common.seeds import generation_seeds  # noqa: E402
from control.cmaes import CMAES  # noqa: E402
from control.train import RealEvaluator  # noqa: E402
from control.world import WorldPaths  # noqa: E402
from data.collect import CollectConfig, generate  # noqa: E402
from envs.controller import controller_config  # noqa: E402
from envs.registry import get_spec  # noqa: E402
from models.loading import load_mdnrnn  # noqa: E402


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("episode_*.npz"))}


def stage01(backend: Backend, out: Path, episodes: int, workers: int) -> tuple[float, int]:
    config = CollectConfig(env="doom", out_dir=str(out), policy="sticky", seed=0, max_steps=2100,
                           env_kwargs=get_spec("doom").options_to_record({}))
    out.mkdir(parents=True)
    started = time.perf_counter()
    summary = generate(config, episodes, workers, progress=False, backend=backend)
    return time.perf_counter() - started, summary.frames


def generation(backend: Backend, paths: WorldPaths, pop: int, rollouts: int, workers: int) -> tuple[float, np.ndarray]:
    mdnrnn, env = load_mdnrnn(paths.mdnrnn)
    spec = get_spec(env)
    num_params = controller_config(spec, mdnrnn.z_size, mdnrnn.hidden_size).num_params
    solutions = CMAES(num_params, 0.1, pop, seed=0).ask()
    started = time.perf_counter()
    evaluator = RealEvaluator(env, spec.options_to_record({}), paths, spec.episode_steps({}), workers, 600.0, backend)
    try:
        returns, _ = evaluator(solutions, generation_seeds(0, 1, rollouts))
    finally:
        evaluator.close()
    return time.perf_counter() - started, returns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=400, help="stage-01 Doom episodes per row")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--logdir", default=str(Path(__file__).resolve().parents[2] / "shared/reference-run/doom-gpu-1"),
                   help="a run with vae/best.pt and mdnrnn/best.pt for the CMA-ES generation ('' to skip)")
    p.add_argument("--pop_size", type=int, default=8)
    p.add_argument("--num_rollouts", type=int, default=2)
    p.add_argument("--no_two_nodes", action="store_true", help="skip the simulated two-node cluster")
    args = p.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from common.ray_pool import RAYLET_ENV, connect

    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    stage01(LOCAL, tmp / "warmup", 2 * args.workers, args.workers)  # page cache, imports
    rows = []
    t_local, frames = stage01(LOCAL, tmp / "local", args.episodes, args.workers)
    rows.append(("stage 01, local pool", t_local, frames))

    started = time.perf_counter()
    connect(None)
    t_init = time.perf_counter() - started
    t_ray, _ = stage01(Backend("ray"), tmp / "ray", args.episodes, args.workers)
    rows.append(("stage 01, Ray (1 node)", t_ray, frames))
    assert files(tmp / "ray") == files(tmp / "local"), "Ray wrote other files than the local pool"

    if args.logdir:
        paths = WorldPaths(Path(args.logdir) / "vae" / "best.pt", Path(args.logdir) / "mdnrnn" / "best.pt",
                           Path(args.logdir) / "series" / "initial_z.npz")
        g_local, r_local = generation(LOCAL, paths, args.pop_size, args.num_rollouts, args.workers)
        g_ray, r_ray = generation(Backend("ray"), paths, args.pop_size, args.num_rollouts, args.workers)
        assert np.array_equal(r_local, r_ray), "Ray scored the generation differently"
    ray.shutdown()

    if not args.no_two_nodes:
        os.environ.update(RAYLET_ENV)
        half = max(args.workers // 2, 1)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": half, "include_dashboard": False})
        cluster.add_node(num_cpus=max(args.workers - half, 1))
        cluster.wait_for_nodes()
        started = time.perf_counter()
        connect(cluster.address)
        t_init2 = time.perf_counter() - started
        t_two, _ = stage01(Backend("ray"), tmp / "two", args.episodes, args.workers)
        nodes = len({n["NodeID"] for n in ray.nodes() if n["Alive"]})
        rows.append((f"stage 01, Ray ({nodes} nodes, simulated)", t_two, frames))
        assert files(tmp / "two") == files(tmp / "local"), "the two-node cluster wrote other files"
        ray.shutdown()
        cluster.shutdown()

    print(f"{args.episodes} Doom episodes, {frames} frames, {args.workers} workers; times include opening the pool")
    print(f"{'row':<36} {'seconds':>8} {'frames/s':>9} {'vs local':>9}")
    for name, seconds, n in rows:
        print(f"{name:<36} {seconds:8.1f} {n / seconds:9.0f} {seconds / t_local:8.3f}x")
    print(f"Ray start-up (ray.init, once per stage run): {t_init:.1f} s"
          + (f"; joining the two-node cluster: {t_init2:.1f} s" if not args.no_two_nodes else ""))
    print(f"stage 01 with Ray's start-up counted: {(t_ray + t_init) / t_local:.3f}x the local pool's time")
    if args.logdir:
        episodes = args.pop_size * args.num_rollouts
        print(f"one real-mode CMA-ES generation ({args.pop_size} x {args.num_rollouts} = {episodes} Doom episodes with "
              f"V + M + C, returns identical): local {g_local:.1f} s, Ray {g_ray:.1f} s = {g_ray / g_local:.3f}x; "
              f"{g_local * args.workers / episodes:.2f} core-s per episode")


if __name__ == "__main__":
    main()
