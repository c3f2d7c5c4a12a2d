"""Stage 05: CMA-ES in the dream and in the real env, resume, config checks, a worker killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from conftest import ROOT, assert_one_line_error, processes, run_cli, run_stage
from world_fixture import make_tiny_world, other_member

from common.checkpoints import load_checkpoint, save_checkpoint
from common.csvlog import read_csv
from control.cmaes import CMAES
from control.real import ENVS_PER_WORKER, task_chunks
from envs import get_spec
from models.loading import weights_sha256

SMALL = ["--pop_size", 6, "--num_rollouts", 3, "--max_steps", 60, "--eval_every", 2, "--eval_episodes", 16,
         "--calibration_episodes", 0]  # the pre-flight check has its own tests (test_calibration)


def test_dream_training_writes_logs_checkpoints_and_resumes(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    out = run_stage("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 2).stdout
    assert "2 generations done" in out and "best eval" in out
    ctrl = run / "controller"
    assert {"es_state.npz", "last.pt", "best.pt", "log.csv", "progress.png"} <= {p.name for p in ctrl.iterdir()}
    rows = read_csv(ctrl / "log.csv")
    assert [r["generation"] for r in rows] == ["1", "2"] and rows[1]["eval_score"] and not rows[0]["eval_score"]
    best = load_checkpoint(ctrl / "best.pt", "controller")
    assert best["model"]["params"].numel() == 8 + 16 + 16 and best["progress"]["generation"] == 2

    run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 3)
    assert [r["generation"] for r in read_csv(ctrl / "log.csv")] == ["1", "2", "3"]
    again = run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 3).stdout
    assert "3 generations done" in again and len(read_csv(ctrl / "log.csv")) == 3

    run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1, "--new_model")
    assert len(read_csv(ctrl / "log.csv")) == 1


def test_average_of_runs_saves_the_mean_of_their_best_means_and_resumes(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    args = ["--logdir", run, *SMALL, "--max_generations", 2, "--average_of", 3, "--seed", 5]
    out = run_stage("05_train_controller.py", *args).stdout
    ctrl = run / "controller"
    runs = [load_checkpoint(ctrl / f"run_{k}" / "best.pt", "controller") for k in range(3)]
    assert [r["config"]["seed"] for r in runs] == [5, 6, 7]
    assert not torch.equal(runs[0]["model"]["params"], runs[1]["model"]["params"])
    best = load_checkpoint(ctrl / "best.pt", "controller")
    expected = torch.stack([r["model"]["params"].double() for r in runs]).mean(0).float()
    assert torch.allclose(best["model"]["params"], expected)
    assert best["config"]["average_of"] == 3 and best["config"]["seed"] == 5
    assert [r["seed"] for r in best["progress"]["runs"]] == [5, 6, 7] and "eval of the mean of 3 runs" in out
    assert not (ctrl / "es_state.npz").exists()  # each run keeps its own state

    again = run_cli("05_train_controller.py", *args).stdout
    assert "as before" in again and torch.equal(load_checkpoint(ctrl / "best.pt", "controller")["model"]["params"],
                                                best["model"]["params"])
    more = run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 3, "--average_of", 3,
                   "--seed", 5)
    assert "3 generations done" in more.stdout and "as before" not in more.stdout
    single = run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1, check=False)
    assert_one_line_error(single, "averaged controller", "--new_model")
    run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1, "--new_model")
    assert (ctrl / "es_state.npz").exists() and not list(ctrl.glob("run_*"))


def test_average_of_refuses_a_single_run_folder(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1)
    result = run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1, "--average_of", 2,
                     check=False)
    assert_one_line_error(result, "single CMA-ES run", "--new_model")
    run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1, "--average_of", 2,
            "--new_model")
    ctrl = run / "controller"
    assert not (ctrl / "es_state.npz").exists() and (ctrl / "run_1" / "es_state.npz").exists()


def test_resume_with_other_settings_is_refused(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1)
    result = run_cli("05_train_controller.py", "--logdir", run, *SMALL[2:], "--pop_size", 8,
                     "--max_generations", 2, check=False)
    assert_one_line_error(result, "pop_size=6", "--new_model")


def test_target_return_stops_early(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    out = run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--eval_every", 1,
                  "--target_return", 1, "--max_generations", 5).stdout
    assert "target return reached" in out and len(read_csv(run / "controller" / "log.csv")) == 1


def test_real_mode_runs_in_worker_processes(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    out = run_stage("05_train_controller.py", "--logdir", run, "--mode", "real", "--pop_size", 4,
                    "--num_rollouts", 2, "--max_steps", 15, "--eval_every", 2, "--eval_episodes", 2,
                    "--max_generations", 2, "--workers", 2).stdout
    assert "2 generations done" in out
    rows = read_csv(run / "controller" / "log.csv")
    assert float(rows[0]["mean_length"]) <= 15 and float(rows[1]["eval_score"]) > 0


def _worker_pids(parent: int) -> list[int]:
    """The pool workers under `parent`: its descendants that lead their own process group (each worker does;
    the resource tracker and the game engines do not)."""
    table = processes()

    def descends(pid: int) -> bool:
        while pid in table and pid > 1:
            pid = table[pid].parent
            if pid == parent:
                return True
        return False

    return [pid for pid, proc in table.items() if proc.group == pid and descends(pid)]


# Loaded by every process of the stage (PYTHONPATH): the first episode task any worker starts writes
# "<worker pid> <task id>" to MARKER and holds its task until the test kills that worker; every task that
# finishes appends its id to MARKER.done.
HOLD_FIRST_TASK = """
import hashlib, importlib.machinery, os, pickle, sys, time

MARKER = {marker!r}


def hold_first_task(module):
    run_task = module.agent_episodes_task

    def agent_episodes_task(*args):
        task_id = hashlib.sha256(pickle.dumps(args)).hexdigest()
        try:
            os.close(os.open(MARKER + ".claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            with open(MARKER + ".tmp", "w") as f:
                f.write(f"{{os.getpid()}} {{task_id}}")
            os.replace(MARKER + ".tmp", MARKER)
            time.sleep(600)
        episode = run_task(*args)
        with open(MARKER + ".done", "a") as f:
            f.write(task_id + "\\n")
        return episode

    agent_episodes_task.__module__, agent_episodes_task.__qualname__ = module.__name__, "agent_episodes_task"
    module.agent_episodes_task = agent_episodes_task  # what tasks are pickled as and unpickled to


class Hook:
    @staticmethod
    def find_spec(name, path, target=None):
        if name != "control.real":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            hold_first_task(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Hook)
"""


def test_worker_killed_mid_generation_is_replaced(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    shim, marker = tmp_path / "shim", tmp_path / "held_task_pid"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(HOLD_FIRST_TASK.format(marker=str(marker)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)])}
    cmd = [sys.executable, str(ROOT / "05_train_controller.py"), "--logdir", str(run), "--mode", "real",
           "--pop_size", 4, "--num_rollouts", 2, "--max_steps", 30, "--eval_every", 5, "--eval_episodes", 2,
           "--max_generations", 1, "--workers", 2, "--calibration_episodes", 0, "--no_progress"]
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "no worker started a task"
        pid, held = marker.read_text().split()
        pid = int(pid)
        assert pid in _worker_pids(proc.pid)  # a worker of the stage's pool, holding its task
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "worker process died (exit code -9)" in err and "retrying" in err
    assert "1 generations done" in out
    assert [r["generation"] for r in read_csv(run / "controller" / "log.csv")] == ["1"]
    done = Path(f"{marker}.done").read_text().split()
    tasks = len(task_chunks(4 * 2, 2, ENVS_PER_WORKER)) + len(task_chunks(2, 2, ENVS_PER_WORKER))  # training + eval
    assert held in done and len(done) == tasks  # the killed worker's task was played again; all were


def test_missing_models_are_one_line_errors(tmp_path):
    result = run_cli("05_train_controller.py", "--logdir", tmp_path / "nothing", check=False)
    assert_one_line_error(result, "no such checkpoint file", "mdnrnn")
    run = make_tiny_world(tmp_path / "run")
    (run / "series" / "initial_z.npz").unlink()
    result = run_cli("05_train_controller.py", "--logdir", run, *SMALL, check=False)
    assert_one_line_error(result, "initial_z.npz", "stage 03")
    result = run_cli("05_train_controller.py", "--logdir", run, "--pop_size", 1, check=False)
    assert_one_line_error(result, "--pop_size")


def test_whole_episodes_from_ends_the_early_stop_and_may_move_only_for_unplayed_generations(tmp_path):
    """Also: a resume that drops the early stop is refused, though a run without it records no such key."""
    run = make_tiny_world(tmp_path / "run", env="carracing")
    real = ["--logdir", run, "--mode", "real", "--pop_size", 4, "--num_rollouts", 2, "--max_steps", 40,
            "--eval_every", 10, "--eval_episodes", 2, "--workers", 1, "--stop_after_negative", 3]
    run_stage("05_train_controller.py", *real, "--max_generations", 1)
    moved = run_cli("05_train_controller.py", *real, "--max_generations", 1, "--whole_episodes_from", 1,
                    check=False)
    assert_one_line_error(moved, "generations 1-1", "whole_episodes_from=0")
    run_cli("05_train_controller.py", *real, "--max_generations", 3, "--whole_episodes_from", 3)
    lengths = [float(r["mean_length"]) for r in read_csv(run / "controller" / "log.csv")]
    assert lengths[0] < 40 and lengths[1] < 40 and lengths[2] == 40  # cut, cut, whole
    kept = run_cli("05_train_controller.py", *real, "--max_generations", 3, check=False)
    assert_one_line_error(kept, "whole_episodes_from=3")
    no_stop = run_cli("05_train_controller.py", *real[:-2], "--whole_episodes_from", 2, check=False)
    assert_one_line_error(no_stop, "--whole_episodes_from 2", "--stop_after_negative")
    dropped = run_cli("05_train_controller.py", *real[:-2], "--max_generations", 4, check=False)
    assert_one_line_error(dropped, "stop_after_negative=3", "stop_after_negative=0")  # recorded only when used


def test_ensemble_dream_is_recorded_and_resumes_only_with_the_same_members(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    member = other_member(run, 5)
    out = run_stage("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1,
                    "--ensemble", member.parent).stdout
    assert "1 generations done" in out
    assert load_checkpoint(run / "controller" / "best.pt", "controller")["config"]["ensemble"] == 2
    result = run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 2, check=False)
    assert_one_line_error(result, "dream of 2 M(s)", "--ensemble")
    result = run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--mode", "real", "--ensemble", member,
                     check=False)
    assert_one_line_error(result, "--ensemble", "--mode real")


def test_init_controller_starts_the_cma_mean_at_its_parameters_and_resumes_only_from_it(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    run_cli("05_train_controller.py", "--logdir", run, *SMALL, "--max_generations", 1)
    start = run / "controller" / "best.pt"
    params = load_checkpoint(start, "controller")["model"]["params"].double().numpy()
    out = run / "tuned"
    run_stage("05_train_controller.py", "--logdir", run, "--savefolder", out, *SMALL, "--max_generations", 1,
              "--init_controller", start)
    es, _ = CMAES.load(out / "es_state.npz")
    assert np.array_equal(es.x0, params) and params.any()
    assert load_checkpoint(out / "last.pt", "controller")["config"]["init_from"] == weights_sha256(
        {"params": torch.from_numpy(params)})
    result = run_cli("05_train_controller.py", "--logdir", run, "--savefolder", out, *SMALL, "--max_generations", 2,
                     check=False)
    assert_one_line_error(result, "started its CMA mean from the controller", "--init_controller")
    moved = tmp_path / "moved.pt"  # the digest, not the path, names the start
    moved.write_bytes(start.read_bytes())
    again = run_cli("05_train_controller.py", "--logdir", run, "--savefolder", out, *SMALL, "--max_generations", 2,
                    "--init_controller", moved).stdout
    assert "2 generations done" in again

    result = run_cli("05_train_controller.py", "--logdir", run, "--savefolder", run / "other", *SMALL,
                     "--init_controller", run / "mdnrnn" / "best.pt", check=False)
    assert_one_line_error(result, "mdnrnn checkpoint", "expected controller")
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, "controller", {"env": "doom"}, {"params": torch.zeros(7)})
    result = run_cli("05_train_controller.py", "--logdir", run, "--savefolder", run / "other", *SMALL,
                     "--init_controller", wrong, check=False)
    assert_one_line_error(result, "7 params", "other models")


def test_z_input_mean_is_recorded_resumes_only_with_it_and_stage_06_plays_it(tmp_path):
    run = make_tiny_world(tmp_path / "run", env="carracing", policy="brownian")
    real = ["--logdir", run, "--mode", "real", "--pop_size", 4, "--num_rollouts", 2, "--max_steps", 20,
            "--eval_every", 10, "--eval_episodes", 2, "--workers", 1]
    run_stage("05_train_controller.py", *real, "--max_generations", 1, "--z_input", "mean")
    trained = load_checkpoint(run / "controller" / "last.pt", "controller")
    assert trained["config"]["z_input"] == "mean"
    assert_one_line_error(run_cli("05_train_controller.py", *real, "--max_generations", 2, check=False),
                          "z_input='mean'", "z_input='sample'")
    dream = run_cli("05_train_controller.py", "--logdir", run, "--savefolder", run / "dream", *SMALL,
                    "--z_input", "mean", check=False)
    assert_one_line_error(dream, "--z_input mean", "--mode real")

    # stage 06 plays a controller the way it was trained: one that acts enough for V's noise to change its
    # scores, saved with and without the record
    from control.evaluate import evaluate_real
    from control.world import WorldPaths

    params = torch.from_numpy(np.random.default_rng(0).normal(size=trained["model"]["params"].numel()))
    scored = {}
    for z_input in ("mean", "sample"):
        path = run / z_input / "best.pt"
        save_checkpoint(path, "controller", {**trained["config"], "z_input": z_input}, {"params": params.float()})
        run_stage("06_test_controller.py", "--logdir", run, "--controller", path, "--episodes", 2, "--max_steps", 200,
                  "--workers", 1)
        scored[z_input] = [float(r["score"]) for r in read_csv(run / "scores" / f"real_controller_{z_input}.csv")]
        direct = evaluate_real(get_spec("carracing"), {}, WorldPaths.from_logdir(run), params.float().numpy(),
                               [0, 1], 200, 1, 120.0, "brownian", progress=False, z_input=z_input)
        assert scored[z_input] == [float(f"{x:g}") for x in direct.scores]  # as the file writes them
    assert scored["mean"] != scored["sample"]
