"""--tensorboard: the CSV rows of stages 04 and 05 also land as TensorBoard scalars; a resume purges what
the interrupted run logged past its checkpoint; without the package, a one-line error."""

from __future__ import annotations

import os
import signal

from conftest import ROOT, assert_one_line_error, run_cli, run_stage
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_train_mdnrnn import series  # noqa: F401 - fixture
from world_fixture import make_tiny_world

from common.csvlog import read_csv

M_ARGS = ("--logdir", "runs/doom", "--batch_size", 2, "--seq_len", 16, "--hidden", 8, "--num_mixtures", 2,
          "--no_progress", "--tensorboard")


def scalars(folder) -> EventAccumulator:
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    return events


def test_stage04_epochs_as_scalars_and_a_resumed_run_continues_them(series, tmp_path):  # noqa: F811
    run_cli("04_train_mdnrnn.py", *M_ARGS, "--epochs", 2)
    run_cli("04_train_mdnrnn.py", *M_ARGS, "--epochs", 3)
    events = scalars(tmp_path / "runs" / "doom" / "mdnrnn")
    tags = events.Tags()["scalars"]
    assert {"train_loss", "val_loss", "train_z", "timesteps_per_s", "lr"} <= set(tags)
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2, 3]


def test_stage05_generations_as_scalars(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    run_cli("05_train_controller.py", "--logdir", run, "--pop_size", 4, "--num_rollouts", 2, "--max_steps", 20,
            "--max_generations", 2, "--eval_every", 2, "--eval_episodes", 4, "--calibration_episodes", 0,
            "--no_progress", "--tensorboard")
    events = scalars(run / "controller")
    assert [e.step for e in events.Scalars("mean_fitness")] == [1, 2]
    assert [e.step for e in events.Scalars("eval_score")] == [2]


def test_a_run_killed_past_its_checkpoint_resumes_with_each_generation_logged_once(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    args = ("05_train_controller.py", "--logdir", run, "--pop_size", 4, "--num_rollouts", 2, "--max_steps", 20,
            "--eval_every", 2, "--eval_episodes", 2, "--calibration_episodes", 0, "--max_generations", 4,
            "--no_progress", "--tensorboard")
    # The crash: SIGKILL right after generation 3's row reached the event file, before its checkpoint.
    shim = tmp_path / "kill_at_3"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import os, signal\nfrom common import scalars\nwrite = scalars.ScalarMirror.write\n\n"
        "def write_then_die(self, row):\n    write(self, row)\n"
        "    if int(float(row[self.step_key])) == 3:\n        os.kill(os.getpid(), signal.SIGKILL)\n\n"
        "scalars.ScalarMirror.write = write_then_die\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)])}
    killed = run_stage(*args, check=False, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ctrl = run / "controller"
    assert [e.step for e in scalars(ctrl).Scalars("mean_fitness")] == [1, 2, 3]  # 3 is past the checkpoint
    assert [r["generation"] for r in read_csv(ctrl / "log.csv")] == ["1", "2", "3"]

    out = run_stage(*args).stdout
    assert "4 generations done" in out
    assert [r["generation"] for r in read_csv(ctrl / "log.csv")] == ["1", "2", "3", "4"]  # generation 3 was redone
    events = scalars(ctrl)
    first, second = sorted((ctrl / "tensorboard").glob("events.out.tfevents.*"))  # one file per run
    resumed = EventAccumulator(str(second))
    resumed.Reload()
    assert [e.step for e in resumed.Scalars("mean_fitness")] == [3, 4]  # the checkpoint was at 2: 3 is redone
    for tag in ("mean_fitness", "sigma", "mean_length"):
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3, 4], tag
    assert [e.step for e in events.Scalars("eval_score")] == [2, 4]


def test_without_tensorboard_the_flag_is_one_line_error(series, tmp_path):  # noqa: F811
    shim = tmp_path / "no_tb"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['tensorboard'] = None  # as if not installed\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)])}
    result = run_stage("04_train_mdnrnn.py", *M_ARGS, "--epochs", 1, check=False, env=env)
    assert_one_line_error(result, "--tensorboard needs the tensorboard package", "pip install tensorboard")
