"""Bad input to any CLI: one line on stderr naming the flag or file, exit code 2, before any heavy work.

Each case runs the real script in a subprocess, as a user would. Output paths are checked before the
work (a --record into a missing folder used to fail only after every episode was scored), refused
commands leave no folders behind, and absurd numbers (1e30, nan, 10**30) are refused by name instead
of overflowing in numpy/torch or exhausting the machine.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_one_line_error
from world_fixture import make_tiny_world

from common.checkpoints import save_checkpoint

BIG = "1" + "0" * 30  # parses as an int, overflows every C integer


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A tiny run with a controller, and the wrong kinds of file: text, a plain file as a folder, npz as .pt."""
    root = tmp_path_factory.mktemp("cli_errors")
    run = make_tiny_world(root / "run")
    save_checkpoint(run / "controller" / "best.pt", "controller", {"env": "doom"}, {"params": torch.zeros(40)})
    (root / "notes.txt").write_text("not a checkpoint\n")
    (root / "afile").write_text("a file, not a folder\n")
    (root / "d.gif").mkdir()  # a folder with a file's name
    with open(root / "rollout.pt", "wb") as f:  # an episode file under a checkpoint's name
        np.savez(f, obs=np.zeros((2, 64, 64, 3), np.uint8))
    return root


# (script and flags, with {root} for the fixture's folder; what the error line must name)
CASES = [
    ("06_test_controller.py --logdir {root}/run --record missing_dir/x.gif", ["--record", "missing_dir"]),
    ("06_test_controller.py --logdir {root}/run --record {root}/afile/x.gif", ["--record", "afile is a file"]),
    ("06_test_controller.py --logdir {root}/run --record /proc/x.gif", ["--record", "cannot write in", "/proc"]),
    ("06_test_controller.py --logdir {root}/run --record x.avi", ["--record", ".gif or .mp4"]),
    ("06_test_controller.py --logdir {root}/run --record {root}/d.gif", ["--record", "is a folder"]),
    ("06_test_controller.py --logdir {root}/afile", ["--logdir", "is a file, not a folder"]),
    ("06_test_controller.py --logdir missing_run", ["missing_run/mdnrnn/best.pt", "no such checkpoint"]),
    ("06_test_controller.py --logdir {root}/run --controller {root}/notes.txt", ["notes.txt", "not a checkpoint"]),
    ("06_test_controller.py --logdir {root}/run --controller {root}/rollout.pt", ["rollout.pt", "not a checkpoint"]),
    ("06_test_controller.py --logdir {root}/run --initial_z {root}/notes.txt", ["notes.txt", "not an .npz file"]),
    ("06_test_controller.py --logdir {root}/run --env_kwargs {{\"nosuch\":1}}", ["bad env option", "nosuch"]),
    ("06_test_controller.py --logdir {root}/run --episodes 0", ["--episodes", "> 0"]),
    ("06_test_controller.py --logdir {root}/run --episodes 1e30", ["--episodes", "integer"]),
    ("06_test_controller.py --logdir {root}/run --episodes " + BIG, ["--episodes", "<= 1,000,000"]),
    ("06_test_controller.py --logdir {root}/run --seed " + BIG, ["--seed", "<= 2,147,483,647"]),
    ("06_test_controller.py --logdir {root}/run --dream --temperature nan", ["--temperature", "nan"]),
    ("06_test_controller.py --logdir {root}/run --max_steps -5", ["--max_steps", "> 0"]),
    ("01_generate_data.py doom --logdir {root}/afile/sub", ["--logdir", "afile is a file"]),
    ("01_generate_data.py doom --store_folder {root}/notes.txt", ["--store_folder", "is a file"]),
    ("01_generate_data.py doom --logdir /proc/run", ["--logdir", "/proc"]),
    ("01_generate_data.py doom --logdir new_run --env_kwargs {{\"nosuch\":1}}", ["bad env option"]),
    ("01_generate_data.py doom --workers " + BIG, ["--workers", "<= 1,024"]),
    ("02_train_vae.py --logdir {root}/run --savefolder {root}/afile/vae", ["--savefolder", "afile is a file"]),
    ("02_train_vae.py --logdir {root}/run --lr 1e30", ["--lr", "must be <= 1, got 1e30"]),
    ("03_generate_rnn_data.py --input_data_folder {root}/notes.txt --vae {root}/run/vae/best.pt --savefolder s",
     ["--input_data_folder", "not a folder"]),
    ("04_train_mdnrnn.py --logdir {root}/run --hidden " + BIG, ["--hidden", "<= 8,192"]),
    ("04_train_mdnrnn.py --logdir {root}/run --savefolder /proc/m", ["--savefolder", "/proc"]),
    ("05_train_controller.py --logdir {root}/run --savefolder {root}/afile", ["--savefolder", "is a file"]),
    ("05_train_controller.py --logdir missing_run", ["missing_run/mdnrnn/best.pt", "no such checkpoint"]),
    ("05_train_controller.py --logdir {root}/notes.txt", ["--logdir", "is a file, not a folder"]),
    ("05_train_controller.py --logdir {root}/run --sigma_init 1e30", ["--sigma_init", "must be <= 10"]),
    ("05_train_controller.py --logdir {root}/run --target_return nan", ["--target_return", "finite"]),
    ("05_train_controller.py --logdir {root}/run --pop_size 1000 --num_rollouts 1001 --savefolder c",
     ["--pop_size", "--num_rollouts", "1,000,000"]),
    ("05_train_controller.py --logdir {root}/run --mdnrnn {root}/run/vae/best.pt --savefolder c",
     ["vae/best.pt", "expected mdnrnn"]),
    ("07_iterative_training.py --logdir {root}/afile", ["--logdir", "is a file"]),
    ("analyze.py reconstructions --logdir {root}/run --out {root}/afile/figs", ["--out", "afile is a file"]),
    ("analyze.py reconstructions --logdir {root}/run --count " + BIG, ["--count", "<= 256"]),
    ("analyze.py temperature --logdir {root}/run --temperatures 1,nan", ["--temperatures", "nan"]),
    ("play.py real doom --record missing_dir/x.gif", ["--record", "missing_dir"]),
    ("play.py real doom --screenshot /proc/x.png", ["--screenshot", "/proc"]),
    ("play.py dream --logdir {root}/run --scale 1e30", ["--scale", "integer"]),
    ("run_all.py --logdir {root}/afile/sub --preset tiny", ["--logdir", "afile is a file"]),
]


def listing(*folders) -> set:
    return {p for folder in folders for p in folder.rglob("*")}


@pytest.mark.parametrize("command, needles", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_naming_it(place, tmp_path, command, needles):
    args = command.format(root=place).split()
    before = listing(place, tmp_path)
    result = subprocess.run([sys.executable, str(ROOT / args[0]), *args[1:]], capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert_one_line_error(result, *[n.format(root=place) for n in needles])
    assert listing(place, tmp_path) == before, "a refused command left files or folders behind"


def test_a_worker_timeout_no_episode_can_meet_fails_in_one_line_instead_of_hanging(place):
    """A worker stopped in its first moments does not lead its process group yet; it used to survive the
    kill, and the pool waited on it forever."""
    result = subprocess.run([sys.executable, str(ROOT / "06_test_controller.py"), "--logdir", place / "run",
                             "--episodes", "1", "--max_steps", "5", "--workers", "1", "--no_progress",
                             "--worker_timeout", "0.001"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("failed 2 times; last: task ran longer than 0.001 s")
