"""Stage 04: window/target alignment, padding and masking, then the CLI (outputs, resume, refusals, bad input)."""

from __future__ import annotations

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
from conftest import (
    ROOT,
    assert_every_flag_has_its_own_help,
    assert_one_line_error,
    run_cli,
    run_stage,
    script_parser,
)

from common.checkpoints import save_checkpoint
from common.csvlog import read_csv
from data.episodes import write_meta
from data.series import save_initial_z, save_series
from models.mdnrnn import MDNRNN
from training.mdnrnn import (
    batch_losses,
    collate,
    cut_windows,
    iter_batches,
    learning_rate,
    window_ranges,
)

Z = 3
TINY = ("--logdir", "runs/doom", "--hidden", 8, "--seq_len", 8, "--batch_size", 4, "--num_mixtures", 2,
        "--num_threads", 1, "--no_progress")



def episode(length: int, episode_id: int = 0, died: bool = True) -> dict[str, np.ndarray]:
    """mu[t] = (episode_id, t, 0): every z says where it came from; done only on the last step."""
    mu = np.zeros((length, Z), np.float32)
    mu[:, 0], mu[:, 1] = episode_id, np.arange(length)
    done = np.zeros(length, bool)
    done[-1] = died
    return {"mu": mu.astype(np.float16), "logvar": np.full((length, Z), -20, np.float16),
            "action": np.arange(length, dtype=np.float32)[:, None] / 100, "reward": np.ones(length, np.float32),
            "done": done}


def write_series(folder: Path, lengths: list[int], env: str = "doom", seed: int = 0) -> list[Path]:
    """A stage-03-style series folder of smooth random latents (learnable, so losses fall)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, length in enumerate(lengths):
        t = np.arange(length)[:, None]
        mu = np.sin(t / 5 + rng.normal(size=(1, Z)) * 3) + 0.1 * rng.normal(size=(length, Z))
        done = np.zeros(length, bool)
        done[-1] = i % 2 == 0
        path = folder / f"episode_{i:06d}.npz"
        save_series(path, mu, np.full((length, Z), -4.0), rng.uniform(-1, 1, (length, 1)).astype(np.float32),
                    np.ones(length, np.float32), done)
        paths.append(path)
    save_initial_z(folder, [p.name for p in paths], np.zeros((len(paths), Z)), np.zeros((len(paths), Z)))
    write_meta(folder, {"env": env, "z_size": Z, "vae": {"sha256": "v1"}, "rollouts_meta": {}})
    return paths


@pytest.fixture
def series(tmp_path) -> Path:
    folder = tmp_path / "runs" / "doom" / "series"
    write_series(folder, [30, 5, 17, 40, 12, 9])  # 6 episodes: 5 train, 1 validation (val_fraction 0.05)
    return folder


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# -- windows, targets, padding ----------------------------------------------------------------------
@pytest.mark.parametrize("length, seq_len, offset, expected", [
    (5, 8, 0, [(0, 5)]),
    (8, 8, 3, [(0, 8)]),
    (20, 8, 0, [(0, 8), (8, 16), (16, 20)]),
    (20, 8, 3, [(0, 3), (3, 11), (11, 19), (19, 20)]),
])
def test_windows_cover_every_step_once(length, seq_len, offset, expected):
    assert window_ranges(length, seq_len, offset) == expected


@pytest.mark.parametrize("skip_ahead", [1, 3])
def test_targets_are_z_at_t_plus_k_and_done_at_t(skip_ahead):
    ep = episode(20)
    windows = cut_windows(ep, seq_len=8, skip_ahead=skip_ahead, offset=3)
    batch = collate(windows, skip_ahead)
    ranges = [(0, 3), (3, 11), (11, 19), (19, 20)]
    assert batch.action.shape == (4, 8, 1) and batch.z_mu.shape == (4, 8 + skip_ahead, Z)
    for row, (start, stop) in enumerate(ranges):
        for i in range(8):
            t = start + i
            real = t < stop
            assert batch.step_mask[row, i] == real
            assert batch.z_mask[row, i] == (real and t + skip_ahead < 20)
            if real:
                assert batch.z_mu[row, i, 1] == t  # input z is z[t]
                assert batch.action[row, i, 0] == pytest.approx(t / 100)
                assert batch.done[row, i] == (t == 19)  # action t ended the episode
            if batch.z_mask[row, i]:
                assert batch.z_mu[row, i + skip_ahead, 1] == t + skip_ahead  # target is z[t + K]
        assert batch.restart[row].tolist() == [float(start == 0)] + [0.0] * 7  # restart only at t = 0
    # the terminal step is trained for done even though its z target does not exist
    last_row, last_i = 3, 0
    assert batch.done[last_row, last_i] == 1 and batch.step_mask[last_row, last_i]
    assert not batch.z_mask[last_row, last_i]


def test_short_episode_is_padded_and_padding_cannot_change_the_loss():
    torch.manual_seed(0)
    model = MDNRNN(Z, 1, 8, 2, predict_done=True, predict_reward=True)
    batch = collate(cut_windows(episode(3, 1), 8, 1) + cut_windows(episode(8, 2), 8, 1), 1)
    assert batch.step_mask.sum(1).tolist() == [3, 8] and batch.z_mask.sum(1).tolist() == [2, 7]
    generator = torch.Generator().manual_seed(1)
    losses, counts = batch_losses(model, batch, 1, torch.device("cpu"), generator)
    assert counts == {"z": 9, "done": 11, "reward": 11}
    for array in (batch.z_mu, batch.z_logvar, batch.action, batch.done, batch.reward):
        array[0, 4:] = 1e3  # garbage beyond the short episode's end (and beyond its z span)
    again, _ = batch_losses(model, batch, 1, torch.device("cpu"), generator.manual_seed(1))
    for part in losses:
        assert again[part].item() == pytest.approx(losses[part].item(), rel=1e-6), part
    assert all(torch.isfinite(v) for v in losses.values())


def test_batches_cover_each_step_once_and_replay_from_the_seed(tmp_path):
    lengths = [30, 5, 17, 40, 12]
    paths = []
    for i, length in enumerate(lengths):
        paths.append(tmp_path / f"episode_{i:06d}.npz")
        save_series(paths[-1], **episode(length, i))

    def seen(batches):
        steps = []
        for b in batches:
            assert b.action.shape[1] <= 8 and b.z_mu.shape[0] <= 4
            rows, cols = np.nonzero(b.step_mask)
            steps += [(int(b.z_mu[r, c, 0]), int(b.z_mu[r, c, 1])) for r, c in zip(rows, cols)]
        return steps

    first = seen(iter_batches(paths, 4, 8, 2, seed=5, buffer_windows=6))
    assert sorted(first) == [(i, t) for i, n in enumerate(lengths) for t in range(n)]
    assert seen(iter_batches(paths, 4, 8, 2, seed=5, buffer_windows=6)) == first
    assert seen(iter_batches(paths, 4, 8, 2, seed=6, buffer_windows=6)) != first
    in_order = seen(iter_batches(paths, 4, 8, 2, seed=0, shuffle=False))
    assert in_order == [(i, t) for i, n in enumerate(lengths) for t in range(n)]


def test_learning_rate_schedule_matches_the_reference():
    assert learning_rate(0, 1e-3, 1e-5, 0.99999) == pytest.approx(1e-3)
    assert learning_rate(100_000, 1e-3, 1e-5, 0.99999) == pytest.approx(0.99e-3 * 0.99999**100_000 + 1e-5)
    assert learning_rate(10**9, 1e-3, 1e-5, 0.99999) == pytest.approx(1e-5)
    assert learning_rate(10**6, 1e-3, 1e-5, 1.0) == pytest.approx(1e-3)


# -- the stage ----------------------------------------------------------------------------------------
def test_trains_writes_outputs_and_resumes(series):
    out = series.parent / "mdnrnn"
    result = run_stage("04_train_mdnrnn.py", *TINY, "--epochs", 2)
    assert "2/2 epochs" in result.stdout and "timesteps/s" in result.stdout
    rows = read_csv(out / "losses.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0]["val_loss"] and rows[0]["train_done"]
    assert rows[0]["train_reward"] == ""  # doom: no reward head by default
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_z", "val_done"))
    state = ckpt(out / "last.pt")
    assert state["kind"] == "mdnrnn" and state["config"]["env"] == "doom" and state["optimizer"]
    config = {k: v for k, v in state["config"].items() if k != "env"}
    assert config == {"z_size": Z, "action_size": 1, "hidden_size": 8, "num_mixtures": 2, "predict_done": True,
                      "predict_reward": False}
    assert state["extra"]["data"]["skip_ahead"] == 1 and state["extra"]["vae_sha256"] == "v1"
    MDNRNN.from_config(config).load_state_dict(ckpt(out / "best.pt")["model"])
    steps = state["progress"]["step"]

    assert "already finished (2 of 2" in run_cli("04_train_mdnrnn.py", *TINY, "--epochs", 2).stdout
    result = run_cli("04_train_mdnrnn.py", *TINY, "--epochs", 3)
    assert "resuming" in result.stdout and "3/3 epochs" in result.stdout
    assert ckpt(out / "last.pt")["progress"]["step"] == steps * 3 // 2
    assert len(read_csv(out / "losses.csv")) == 3

    result = run_cli("04_train_mdnrnn.py", *TINY, "--epochs", 1, "--new_model", "--predict_reward")
    rows = read_csv(out / "losses.csv")
    assert len(rows) == 1 and rows[0]["train_reward"] and ckpt(out / "last.pt")["progress"]["step"] == steps // 2


def test_kill_mid_epoch_then_rerun_gives_the_uninterrupted_result(tmp_path):
    write_series(tmp_path / "runs" / "doom" / "series", [60] * 40)
    args = [*TINY, "--epochs", 1, "--checkpoint_every_steps", 3]
    proc = subprocess.Popen([sys.executable, str(ROOT / "04_train_mdnrnn.py"), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = tmp_path / "runs" / "doom" / "mdnrnn" / "last.pt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not last.exists() and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt(last)["progress"]["batch"] > 0  # stopped mid-epoch
    run_cli("04_train_mdnrnn.py", *args)
    run_cli("04_train_mdnrnn.py", *args, "--savefolder", "fresh")
    resumed, fresh = ckpt(last), ckpt(tmp_path / "fresh" / "last.pt")
    assert resumed["progress"]["step"] == fresh["progress"]["step"]
    for key in fresh["model"]:
        torch.testing.assert_close(resumed["model"][key], fresh["model"][key], rtol=1e-5, atol=1e-6)
    a = read_csv(tmp_path / "runs" / "doom" / "mdnrnn" / "losses.csv")[0]
    b = read_csv(tmp_path / "fresh" / "losses.csv")[0]
    for key in ("train_loss", "train_z", "train_done", "val_loss"):  # timing columns differ, losses must not
        assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4), key


def test_refuses_to_resume_another_configuration(series):
    run_cli("04_train_mdnrnn.py", *TINY, "--epochs", 1)
    result = run_cli("04_train_mdnrnn.py", *TINY, "--epochs", 2, "--hidden", 16, check=False)
    assert_one_line_error(result, "hidden_size=8", "hidden_size=16", "--new_model")
    result = run_cli("04_train_mdnrnn.py", *TINY, "--epochs", 2, "--skip_ahead", 2, check=False)
    assert_one_line_error(result, "--skip_ahead 1", "--new_model")
    write_meta(series, {"env": "doom", "z_size": Z, "vae": {"sha256": "v2"}})  # stage 03 rerun with a new V
    result = run_cli("04_train_mdnrnn.py", *TINY, "--epochs", 2, check=False)
    assert_one_line_error(result, "another VAE", "--new_model")
    (series.parent / "mdnrnn" / "last.pt").write_bytes(b"garbage")
    result = run_cli("04_train_mdnrnn.py", *TINY, "--epochs", 2, check=False)
    assert_one_line_error(result, "last.pt", "corrupt", "--new_model")
    save_checkpoint(series.parent / "mdnrnn" / "last.pt", "vae", {"env": "doom"}, torch.nn.Linear(1, 1))
    assert_one_line_error(run_cli("04_train_mdnrnn.py", *TINY, check=False), "is a vae checkpoint", "--new_model")


@pytest.mark.parametrize("args, needles", [
    (("--seq_len", 0), ["--seq_len", "must be > 0"]),
    (("--skip_ahead", 0), ["--skip_ahead", "must be > 0"]),
    (("--val_fraction", 1), ["--val_fraction", "[0, 1)"]),
    (("--lr_decay", 1.5), ["--lr_decay"]),
    (("--min_lr", 1), ["--min_lr"]),
    (("--skip_ahead", 50), ["--skip_ahead 50", "no training episode is longer"]),
    (("--device", "cuda:7"), ["--device"]),
])
def test_bad_flags_are_one_line_exit_2(series, args, needles):
    if args[0] == "--device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    assert_one_line_error(run_cli("04_train_mdnrnn.py", *TINY, *map(str, args), check=False), *needles)


@pytest.mark.parametrize("damage, needles", [
    ("missing", ["series", "no such folder"]),
    ("empty", ["no series files", "03_generate_rnn_data.py"]),
    ("only_initial_z", ["no series files"]),
    ("no_meta", ["meta.json"]),
    ("truncated", ["episode_000002.npz", "corrupt"]),
    ("other_z_size", ["episode_000003.npz", "z size 5"]),
])
def test_bad_series_folder_is_one_line_exit_2(series, damage, needles):
    if damage == "missing":
        shutil.rmtree(series)
    elif damage in ("empty", "only_initial_z"):
        for path in series.iterdir():
            if damage == "empty" or path.name != "initial_z.npz":
                path.unlink()
    elif damage == "no_meta":
        (series / "meta.json").unlink()
    elif damage == "truncated":
        data = (series / "episode_000002.npz").read_bytes()
        (series / "episode_000002.npz").write_bytes(data[: len(data) // 2])
    elif damage == "other_z_size":
        ep = episode(10)
        save_series(series / "episode_000003.npz", np.zeros((10, 5)), np.zeros((10, 5)), ep["action"],
                    ep["reward"], ep["done"])
    assert_one_line_error(run_cli("04_train_mdnrnn.py", *TINY, check=False), *needles)


def test_help_explains_every_flag():
    parser = script_parser("04_train_mdnrnn.py")
    assert_every_flag_has_its_own_help(parser)
    assert {"--logdir", "--input_data_folder", "--savefolder", "--epochs", "--num_mixtures", "--hidden", "--seq_len",
            "--batch_size", "--lr", "--min_lr", "--lr_decay", "--grad_clip", "--skip_ahead", "--predict_reward",
            "--no_predict_reward", "--val_fraction", "--seed", "--device",
            "--new_model"} <= {f for a in parser._actions for f in a.option_strings}


def test_carracing_series_train_without_done_head_on_whole_episodes(tmp_path):
    folder = tmp_path / "runs" / "carracing" / "series"
    paths = write_series(folder, [12, 20], env="carracing")
    for path in paths:  # CarRacing actions are (steer, gas, brake)
        ep = dict(np.load(path))
        save_series(path, ep["mu"], ep["logvar"], np.zeros((len(ep["done"]), 3), np.float32), ep["reward"],
                    np.zeros_like(ep["done"]))
    run_cli("04_train_mdnrnn.py", "--logdir", "runs/carracing", "--hidden", 8, "--num_mixtures", 2,
            "--batch_size", 4, "--num_threads", 1, "--no_progress", "--epochs", 1)
    state = ckpt(folder.parent / "mdnrnn" / "last.pt")
    assert state["config"]["predict_done"] is False and state["config"]["action_size"] == 3
    assert state["extra"]["data"]["seq_len"] == 1000  # the reference's whole-episode sequences
    row = read_csv(folder.parent / "mdnrnn" / "losses.csv")[0]
    assert row["train_done"] == "" and float(row["train_loss"]) == pytest.approx(float(row["train_z"]))
