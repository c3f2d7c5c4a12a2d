"""Stage 02 end to end on real Doom frames: outputs, resume (between and within epochs), bad input."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_every_flag_has_its_own_help, assert_one_line_error, run_stage, script_parser
from PIL import Image

from common.csvlog import read_csv
from common.errors import DataError, UserError
from data.episodes import split_by_episode
from models.vae import ConvVAE, VAEConfig, frames_to_tensor
from training.vae import (
    CSV_FIELDS,
    VAETrainConfig,
    VAETrainer,
    prepare_data,
    skip_frames,
    train_vae,
)

FAST = ("--batch_size", 8, "--max_frames", 16, "--val_max_frames", 16, "--no_progress")


@pytest.fixture(scope="module")
def doom_rollouts(tmp_path_factory) -> Path:
    """4 real Doom episodes of up to 60 steps (3 train, 1 validation), made once for the module."""
    where = tmp_path_factory.mktemp("doom")
    run_stage("01_generate_data.py", "doom", "--total_episodes", 4, "--max_steps", 60, "--workers", 1,
              "--logdir", where, cwd=where)
    return where / "rollouts"


@pytest.fixture
def rollouts(doom_rollouts, tmp_path) -> Path:
    """A private copy in runs/doom/rollouts, so tests may damage it."""
    dest = tmp_path / "runs" / "doom" / "rollouts"
    shutil.copytree(doom_rollouts, dest)
    return dest


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def config(rollouts: Path, **kw) -> VAETrainConfig:
    base = dict(input_folder=str(rollouts), savefolder=str(rollouts.parent / "vae"), batch_size=8, max_frames=16,
                val_max_frames=16, z_size=16, progress=False)
    return VAETrainConfig(**{**base, **kw})


def test_run_resume_and_finish(rollouts):
    vae = rollouts.parent / "vae"
    first = run_stage("02_train_vae.py", "--logdir", "runs/doom", "--epochs", 1, *FAST)
    assert "3 training episodes" in first.stdout and "1 validation episode" in first.stdout
    assert "runs/doom/vae: 1/1 epochs, 2 steps, 16 frames" in first.stdout
    rows = read_csv(vae / "losses.csv")
    assert len(rows) == 1 and list(rows[0]) == CSV_FIELDS and rows[0]["epoch"] == "1"
    assert all(np.isfinite(float(v)) for v in rows[0].values())
    assert float(rows[0]["train_kl"]) >= 32 - 1e-3  # the KL floor: kl_tolerance * z_size
    with Image.open(vae / "recon_epoch001.png") as png:
        assert png.size == (8 * 64, 2 * 64) and png.mode == "RGB"

    last, best = ckpt(vae / "last.pt"), ckpt(vae / "best.pt")
    assert last["config"] == {"env": "doom", "z_size": 64} and last["optimizer"] is not None
    assert last["progress"]["epoch"] == 1 and last["progress"]["batch"] == 0 and last["progress"]["step"] == 2
    assert best["progress"]["best_epoch"] == 1
    vae_model = ConvVAE.from_config({k: best["config"][k] for k in VAEConfig.__dataclass_fields__})
    vae_model.load_state_dict(best["model"])  # strict: every weight fits the paper's architecture
    frames = np.load(rollouts / "episode_000003.npz")["obs"][:4]
    mu, logvar = vae_model.encode(frames_to_tensor(frames))
    assert mu.shape == (4, 64) and torch.isfinite(logvar).all()

    second = run_stage("02_train_vae.py", "--logdir", "runs/doom", "--epochs", 2, *FAST)
    assert "resuming from runs/doom/vae/last.pt: epoch 2, step 2" in second.stdout
    assert [r["epoch"] for r in read_csv(vae / "losses.csv")] == ["1", "2"]
    assert ckpt(vae / "last.pt")["progress"]["step"] == 4 and (vae / "recon_epoch002.png").exists()

    third = run_stage("02_train_vae.py", "--logdir", "runs/doom", "--epochs", 2, *FAST)
    assert "already finished (2 of 2 epochs done" in third.stdout and "--new_model" in third.stdout
    assert len(read_csv(vae / "losses.csv")) == 2


def test_new_model_starts_over(rollouts):
    vae = rollouts.parent / "vae"
    train_vae(config(rollouts, epochs=2), log=lambda *_: None)
    assert (vae / "recon_epoch002.png").exists()
    summary = train_vae(config(rollouts, epochs=1, new_model=True), log=lambda *_: None)
    assert summary.progress.step == 2 and summary.progress.epoch == 1
    assert [r["epoch"] for r in read_csv(vae / "losses.csv")] == ["1"]
    assert not (vae / "recon_epoch002.png").exists()
    assert ckpt(vae / "best.pt")["progress"]["best_epoch"] == 1


def test_mid_epoch_kill_resumes_at_the_checkpointed_step(rollouts):
    args = ["--logdir", "runs/doom", "--epochs", 1, "--batch_size", 4, "--max_frames", 60, "--z_size", 16,
            "--val_max_frames", 16, "--checkpoint_every_steps", 5, "--no_progress"]
    last = rollouts.parent / "vae" / "last.pt"
    proc = subprocess.Popen([sys.executable, str(ROOT / "02_train_vae.py"), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not last.exists() and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    progress = ckpt(last)["progress"]
    assert progress["epoch"] == 0 and 5 <= progress["batch"] < 15, progress
    done = progress["batch"]

    result = run_stage("02_train_vae.py", *args)
    assert f"epoch 1 at batch {done} ({4 * done} frames done)" in result.stdout
    progress = ckpt(last)["progress"]
    assert progress["epoch"] == 1 and progress["step"] == 15 and progress["frames"] == 60  # not 60 + done


def test_resumed_epoch_streams_exactly_the_rest(rollouts):
    cfg = config(rollouts, max_frames=None, batch_size=7, buffer_episodes=2)
    trainer = VAETrainer(cfg, prepare_data(cfg), torch.device("cpu"))
    full = np.concatenate(list(trainer.epoch_batches(1)))
    assert len(full) == 180
    rest = np.concatenate(list(skip_frames(trainer.epoch_batches(1), 40)))
    np.testing.assert_array_equal(rest, full[40:])
    assert not np.array_equal(np.concatenate(list(trainer.epoch_batches(2))), full)  # reshuffled per epoch


def test_split_by_episode():
    assert split_by_episode(1, 0.05) == ([0], [])
    assert split_by_episode(4, 0.05) == ([0, 1, 2], [3])
    train, val = split_by_episode(100, 0.05)
    assert val == list(range(19, 100, 20)) and len(train) == 95
    assert split_by_episode(120, 0.05)[1][:5] == val  # adding episodes keeps the held-out ones held out
    assert split_by_episode(5, 0) == ([0, 1, 2, 3, 4], [])


def test_single_episode_validates_on_training_frames(rollouts):
    for p in sorted(rollouts.glob("*.npz"))[1:]:
        p.unlink()
    data = prepare_data(config(rollouts))
    assert data.val_is_train and len(data.train) == 1 and "only 1 episode" in data.line()


def test_checkpoint_for_other_z_or_corrupt(rollouts):
    cfg = config(rollouts, epochs=1)  # z 16
    VAETrainer(cfg, prepare_data(cfg), torch.device("cpu")).save(rollouts.parent / "vae" / "last.pt")
    result = run_stage("02_train_vae.py", "--logdir", "runs/doom", *FAST, check=False)  # doom default z 64
    assert_one_line_error(result, "last.pt", "z_size=16", "z_size=64", "--new_model")
    (rollouts.parent / "vae" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="last.pt: corrupt.*--new_model"):
        train_vae(cfg, log=lambda *_: None)


def test_checkpoint_for_other_env(rollouts):
    cfg = config(rollouts, epochs=1)
    trainer = VAETrainer(cfg, prepare_data(cfg), torch.device("cpu"))
    trainer.data.env = "carracing"
    trainer.save(trainer.last_path)  # a last.pt as if made on carracing frames
    with pytest.raises(DataError, match="env='carracing'.*env='doom'.*--new_model"):
        train_vae(cfg, log=lambda *_: None)


def test_empty_or_missing_folder_and_missing_meta(tmp_path):
    (tmp_path / "runs" / "doom" / "rollouts").mkdir(parents=True)
    result = run_stage("02_train_vae.py", "--logdir", "runs/doom", check=False)
    assert_one_line_error(result, "runs/doom/rollouts", "no rollout files")
    assert not (tmp_path / "runs" / "doom" / "vae").exists()
    with pytest.raises(DataError, match="nowhere: no such folder"):
        prepare_data(config(tmp_path / "nowhere"))


def test_missing_meta_needs_env(rollouts):
    (rollouts / "meta.json").unlink()
    with pytest.raises(UserError, match="no meta.json.*pass --env"):
        prepare_data(config(rollouts, z_size=None))
    assert prepare_data(config(rollouts, env="doom", z_size=None)).z_size == 64


def test_corrupt_rollout_met_during_training(rollouts):
    path = rollouts / "episode_000000.npz"
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2  # inside the compressed frames; the small `done` array at the end still reads
    raw[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    result = run_stage("02_train_vae.py", "--logdir", "runs/doom", "--z_size", 16, *FAST, check=False)
    assert "3 training episodes" in result.stdout  # setup passed: the damage was met while streaming frames
    assert_one_line_error(result, "episode_000000.npz", "corrupt")


@pytest.mark.parametrize("args, needles", [
    (["--batch_size", "0"], ["--batch_size", "must be > 0"]),
    (["--lr=-1e-4"], ["--lr", "must be > 0"]),
    (["--kl_tolerance=-0.1"], ["--kl_tolerance", "must be >= 0"]),
    (["--epochs", "0"], ["--epochs", "must be > 0"]),
    (["--val_fraction", "1"], ["--val_fraction", "[0, 1)"]),
])
def test_impossible_flags(capsys, args, needles):
    cli = importlib.import_module("02_train_vae")
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["--logdir", "runs/doom", *args])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in needles), lines


def test_library_refuses_impossible_config(tmp_path):
    for bad in (dict(epochs=0), dict(batch_size=0), dict(lr=-1.0), dict(kl_tolerance=-1.0)):
        with pytest.raises(UserError, match=next(iter(bad))):
            train_vae(config(tmp_path, **bad))


def test_help_explains_every_flag():
    parser = script_parser("02_train_vae.py")
    assert_every_flag_has_its_own_help(parser)
    text = parser.format_help()
    assert {"--logdir", "--input_data_folder", "--savefolder", "--env", "--epochs", "--batch_size", "--lr",
            "--kl_tolerance", "--z_size", "--max_frames", "--val_fraction", "--val_max_frames", "--seed",
            "--buffer_episodes", "--num_threads", "--device", "--new_model", "--checkpoint_every_minutes",
            "--checkpoint_every_steps", "--no_progress"} <= {f for a in parser._actions for f in a.option_strings}
    assert "(default: 0.0001)" in text and "(default: 100)" in text
