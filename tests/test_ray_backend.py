"""The Ray backend on a real local Ray cluster of two nodes (1 CPU each, so tasks cross nodes).

Same results as the local pool (byte-identical stage-01 files, the same CMA-ES history and scores), a
Ray worker killed mid-task is retried and the stage finishes, and without Ray a one-line error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray  # requirements-ray.txt; `make test` installs it
import ray.cloudpickle
import worker_tasks as tasks
from conftest import ROOT, assert_one_line_error, processes, run_stage
from ray.cluster_utils import Cluster

from common.csvlog import read_csv
from common.ray_pool import RAYLET_ENV, RayPool
from common.workers import WorkerError

NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "include_dashboard": False}


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node on this machine; the test process is a driver of it too."""
    saved = {k: os.environ.get(k) for k in RAYLET_ENV}
    os.environ.update(RAYLET_ENV)  # the raylets inherit them: orphaned game engines get killed
    cluster = Cluster(initialize_head=True, head_node_args=NODE)
    cluster.add_node(**{k: v for k, v in NODE.items() if k != "include_dashboard"})
    cluster.wait_for_nodes()
    ray.cloudpickle.register_pickle_by_value(tasks)  # tests/ is not a package the workers can import
    ray.init(address=cluster.address)
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def rollout_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".npz", ".skipped")}


def test_pool_contract_on_ray(cluster, tmp_path):
    reports = []
    with RayPool(2, task_timeout=4, log=reports.append) as pool:
        assert pool.num_workers == 2
        for i in range(6):
            pool.submit(i, tasks.square, i)
        assert dict(pool.next_result() for _ in range(6)) == {i: i * i for i in range(6)}
        pool.submit("a", tasks.die_once, str(tmp_path / "died"), 7)
        pool.submit("b", tasks.square, 3)
        assert dict(pool.next_result() for _ in range(2)) == {"a": 7, "b": 9}
        pool.submit("h", tasks.hang_once, str(tmp_path / "hung"), 60)
        started = time.monotonic()
        assert pool.next_result() == ("h", "done") and time.monotonic() - started < 20
        pool.submit("bad", tasks.fail, "env exploded")
        with pytest.raises(WorkerError, match="env exploded") as info:
            pool.next_result()
        assert info.value.key == "bad"
    assert len(reports) == 2 and "worker died" in reports[0] and "'a'" in reports[0]
    assert "longer than 4 s" in reports[1] and "'h'" in reports[1]
    with RayPool(1, tasks.broken_initializer) as pool:
        pool.submit("x", tasks.square, 2)
        with pytest.raises(WorkerError, match="initializer raised RuntimeError: cannot load the model"):
            pool.next_result()
    with RayPool(1) as pool:
        pool.submit("gone", tasks.always_die)
        with pytest.raises(WorkerError, match="failed 2 times"):
            pool.next_result()


def test_stage01_on_ray_writes_the_local_pools_files(cluster, tmp_path):
    # Seeds 0 and 5 die before step 150 (117 and 114 steps): episodes 1-4, then 6-7 after a resume.
    common = ["doom", "--total_episodes", 4, "--max_steps", 300, "--min_length", 150, "--no_progress", "--seed", 0]
    run_stage("01_generate_data.py", *common, "--logdir", "local", "--workers", 2)
    out = run_stage("01_generate_data.py", *common, "--logdir", "ray", "--backend", "ray", "--ray_address", cluster)
    assert "4 new, 4 in folder, 1 too short" in out.stdout
    local, remote = rollout_files(tmp_path / "local" / "rollouts"), rollout_files(tmp_path / "ray" / "rollouts")
    assert sorted(local) == [f"episode_00000{i}.{ext}" for i, ext in
                             ((0, "skipped"), (1, "npz"), (2, "npz"), (3, "npz"), (4, "npz"))]
    assert local == remote  # same names (the same short episode skipped), same bytes
    resumed = run_stage("01_generate_data.py", *common[:2], 6, *common[3:], "--logdir", "ray", "--backend", "ray",
                        "--ray_address", cluster)
    assert "2 new, 6 in folder, 2 too short" in resumed.stdout


def test_episodes_come_back_from_a_node_that_cannot_see_the_folder(cluster, tmp_path, monkeypatch):
    """Every node here shares one disk; hide the driver's mark, and each worker sends its files back."""
    import contextlib

    import data.collect as collect
    from common.backend import LOCAL, Backend
    from envs.registry import get_spec

    def config(name: str) -> collect.CollectConfig:
        (tmp_path / name).mkdir()
        return collect.CollectConfig(env="doom", out_dir=str(tmp_path / name), policy="sticky", max_steps=300,
                                     min_length=150, seed=0, env_kwargs=get_spec("doom").options_to_record({}))

    collect.generate(config("local"), 5, 2, progress=False, backend=LOCAL)
    monkeypatch.setattr(collect, "writer_mark", contextlib.contextmanager(lambda out_dir: iter([".elsewhere"])))
    summary = collect.generate(config("sent"), 5, 2, progress=False, backend=Backend("ray", cluster))
    assert summary.new_episodes == 5 and summary.skipped == 2  # seeds 0 and 5 are too short
    assert rollout_files(tmp_path / "sent") == rollout_files(tmp_path / "local")


def test_ray_worker_killed_mid_task_is_retried(cluster, tmp_path):
    cmd = [sys.executable, str(ROOT / "01_generate_data.py"), "doom", "--total_episodes", "24", "--max_steps", "300",
           "--logdir", "ray", "--backend", "ray", "--ray_address", cluster, "--no_progress"]
    stage = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, engines, deadline = None, [], time.monotonic() + 60
    while victim is None and stage.poll() is None and time.monotonic() < deadline:
        busy = subprocess.run(["pgrep", "-f", "ray::_Host.run"], capture_output=True, text=True).stdout.split()
        engines = _children(int(busy[0]), b"vizdoom") if busy else []
        if engines:  # a worker in the middle of an episode, its game engine running
            victim = int(busy[0])
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.05)
    out, err = stage.communicate(timeout=240)
    assert victim is not None, "no Ray worker was seen running a task"
    assert stage.returncode == 0, err
    assert "working_dir" not in err, err  # Ray's notes on packaging the code are silenced
    assert "24 new, 24 in folder" in out and "retrying" in err
    run_stage("01_generate_data.py", *cmd[2:7], "--logdir", "local", "--workers", 2, "--no_progress")
    assert rollout_files(tmp_path / "ray" / "rollouts") == rollout_files(tmp_path / "local" / "rollouts")
    deadline = time.monotonic() + 20  # Ray's subreaper kills the dead worker's game engine within ~10 s
    while _alive(engines) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(engines), "a killed Ray worker left its ViZDoom engine running"


def _children(parent: int, name: bytes) -> list[int]:
    """The PIDs of `parent`'s child processes whose program path contains `name`."""
    return [pid for pid, proc in processes().items() if proc.parent == parent and name in proc.program]


def _alive(pids: list[int]) -> list[int]:
    """Those of `pids` still running (a zombie is not: its process has ended)."""
    table = processes()
    return [pid for pid in pids if pid in table and table[pid].state != "Z"]


def _busy_workers() -> list[int]:
    return [int(pid) for pid in
            subprocess.run(["pgrep", "-f", "ray::_Host"], capture_output=True, text=True).stdout.split()]


def test_ctrl_c_stops_the_clusters_tasks(cluster):
    cmd = [sys.executable, str(ROOT / "01_generate_data.py"), "doom", "--total_episodes", "200", "--logdir", "ray",
           "--backend", "ray", "--ray_address", cluster, "--no_progress"]
    stage = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _busy_workers() and stage.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stage.send_signal(signal.SIGINT)
    _, err = stage.communicate(timeout=60)
    assert stage.returncode == 130 and "interrupted" in err
    deadline = time.monotonic() + 20
    while _busy_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _busy_workers(), "the run's Ray workers outlived Ctrl-C"


def test_real_mode_cma_history_and_scores_match_local(cluster, tmp_path):
    from world_fixture import make_tiny_world

    histories, scores = {}, {}
    for backend in ("local", "ray"):
        run = make_tiny_world(tmp_path / backend)
        extra = ["--backend", "ray", "--ray_address", cluster] if backend == "ray" else ["--workers", 2]
        out = run_stage("05_train_controller.py", "--logdir", run, "--mode", "real", "--pop_size", 4,
                        "--num_rollouts", 2, "--max_steps", 30, "--eval_every", 2, "--eval_episodes", 2,
                        "--max_generations", 2, "--no_progress", *extra).stdout
        assert "2 generations done" in out
        histories[backend] = [{k: v for k, v in row.items() if k != "seconds"}
                              for row in read_csv(run / "controller" / "log.csv")]
        run_stage("06_test_controller.py", "--logdir", run, "--episodes", 3, "--max_steps", 30, "--no_progress",
                  *extra)
        scores[backend] = [(r["seed"], r["score"], r["length"])  # the other columns name the run's own paths
                           for r in read_csv(run / "scores" / "real_controller.csv")]
    assert histories["local"] == histories["ray"] and len(histories["ray"]) == 2
    assert scores["local"] == scores["ray"]
    assert np.isfinite(float(histories["ray"][1]["eval_score"]))


@pytest.fixture
def without_ray(tmp_path):
    """An environment in which `import ray` fails, as on a default install."""
    shim = tmp_path / "no_ray"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['ray'] = None  # as if not installed\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)])}


@pytest.mark.parametrize("script,args", [
    ("01_generate_data.py", ["doom", "--total_episodes", 1]),
    ("05_train_controller.py", ["--logdir", "run", "--mode", "real"]),
    ("06_test_controller.py", ["--logdir", "run"]),
])
def test_without_ray_backend_ray_is_one_line_error(without_ray, script, args):
    result = run_stage(script, *args, "--backend", "ray", check=False, env=without_ray)
    assert_one_line_error(result, "--backend ray needs Ray", "pip install -r requirements-ray.txt")


def test_ray_address_needs_backend_ray():
    result = run_stage("01_generate_data.py", "doom", "--ray_address", "auto", check=False)
    assert_one_line_error(result, "--ray_address needs --backend ray")
