"""Stage 03 end to end on real Doom episodes and a small real VAE: files, resume, refusals, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli, run_stage

from common.checkpoints import save_checkpoint
from common.errors import DataError
from data.encode import encode_frames
from data.rollouts import RolloutFolder
from data.series import (
    INITIAL_Z_FILE,
    SERIES_SCHEMA,
    SeriesFolder,
    load_initial_z,
    save_initial_z,
    save_series,
)
from models.vae import ConvVAE

Z = 8
ENCODE = ("--logdir", "runs/doom", "--no_progress")



@pytest.fixture(scope="module")
def doom_rollouts(tmp_path_factory) -> Path:
    """3 real Doom episodes of up to 40 steps, made once for the module."""
    where = tmp_path_factory.mktemp("doom")
    run_stage("01_generate_data.py", "doom", "--total_episodes", 3, "--max_steps", 40, "--workers", 1,
              "--logdir", where, cwd=where)
    return where / "rollouts"


def save_vae(path: Path | str, env: str = "doom", seed: int = 0) -> ConvVAE:
    torch.manual_seed(seed)
    vae = ConvVAE(Z)
    save_checkpoint(path, "vae", {"env": env, "z_size": Z}, vae, progress={"epoch": 1, "step": 7})
    return vae.eval()


@pytest.fixture
def run(doom_rollouts, tmp_path) -> Path:
    """runs/doom with a private copy of the rollouts and a VAE at vae/best.pt."""
    logdir = tmp_path / "runs" / "doom"
    shutil.copytree(doom_rollouts, logdir / "rollouts")
    save_vae(logdir / "vae" / "best.pt")
    return logdir


def test_encodes_every_episode_with_posterior_and_copied_columns(run):
    result = run_stage("03_generate_rnn_data.py", *ENCODE)
    assert "3 encoded, 0 already there" in result.stdout and "img/s" in result.stdout
    rollouts, series = RolloutFolder(run / "rollouts"), SeriesFolder(run / "series")
    assert [p.name for p in series.paths] == [p.name for p in rollouts.paths]
    vae = ConvVAE(Z)
    vae.load_state_dict(torch.load(run / "vae" / "best.pt", weights_only=True)["model"])
    for i in range(len(rollouts)):
        ep, s = rollouts[i], series[i]
        assert s["mu"].dtype == s["logvar"].dtype == np.float16 and s["mu"].shape == (len(ep["obs"]), Z)
        for key in ("action", "reward", "done"):
            assert s[key].dtype == ep[key].dtype
            np.testing.assert_array_equal(s[key], ep[key])
        mu, logvar = encode_frames(vae.eval(), ep["obs"], batch_size=7)  # another batching, same numbers
        np.testing.assert_allclose(s["mu"], mu, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(s["logvar"], logvar, rtol=2e-3, atol=2e-3)
    initial = load_initial_z(run / "series")
    assert initial["mu"].shape == initial["logvar"].shape == (3, Z) and initial["mu"].dtype == np.float16
    assert list(initial["episode"]) == [p.name for p in series.paths]
    np.testing.assert_array_equal(initial["mu"][2], series[2]["mu"][0])
    np.testing.assert_array_equal(initial["logvar"][0], series[0]["logvar"][0])
    meta = json.loads((run / "series" / "meta.json").read_text())
    assert meta["env"] == "doom" and meta["z_size"] == Z and meta["vae"]["progress"]["step"] == 7
    assert len(meta["vae"]["sha256"]) == 64 and meta["rollouts_meta"]["policy"] == "sticky"


def test_rerun_encodes_only_what_is_missing(run):
    run_cli("03_generate_rnn_data.py", *ENCODE)
    folder = run / "series"
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("episode_*.npz")}
    kept = SeriesFolder(folder)[1]
    (folder / "episode_000001.npz").unlink()
    (folder / ".episode_000001.npz.abc123.tmp").write_bytes(b"half a file")  # what a kill -9 leaves
    result = run_cli("03_generate_rnn_data.py", *ENCODE)
    assert "1 encoded, 2 already there" in result.stdout
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("episode_*.npz")}
    assert after["episode_000000.npz"] == before["episode_000000.npz"]
    assert after["episode_000002.npz"] == before["episode_000002.npz"]
    assert not list(folder.glob(".*"))
    again = SeriesFolder(folder)[1]
    for key in kept:
        np.testing.assert_array_equal(again[key], kept[key])
    assert "0 encoded, 3 already there" in run_cli("03_generate_rnn_data.py", *ENCODE).stdout


def test_refuses_series_of_another_vae_until_new(run):
    run_cli("03_generate_rnn_data.py", *ENCODE)
    save_vae(run / "vae" / "best.pt", seed=1)  # retrained V: old latents no longer fit
    result = run_cli("03_generate_rnn_data.py", *ENCODE, check=False)
    assert_one_line_error(result, "encoded by another VAE", "--new")
    result = run_cli("03_generate_rnn_data.py", *ENCODE, "--new")
    assert "3 encoded, 0 already there" in result.stdout


def test_falls_back_to_last_checkpoint_and_explicit_paths(run, tmp_path):
    (run / "vae" / "best.pt").rename(run / "vae" / "last.pt")
    assert "3 encoded" in run_cli("03_generate_rnn_data.py", *ENCODE).stdout
    result = run_cli("03_generate_rnn_data.py", "--input_data_folder", run / "rollouts", "--vae",
                       run / "vae" / "last.pt", "--savefolder", "elsewhere", "--batch_size", 16, "--device", "cpu")
    assert "3 encoded" in result.stdout and len(SeriesFolder(tmp_path / "elsewhere")) == 3


def test_refuses_vae_trained_for_another_env(run):
    save_vae(run / "vae" / "best.pt", env="carracing")
    result = run_cli("03_generate_rnn_data.py", *ENCODE, check=False)
    assert_one_line_error(result, "env='carracing'", "env='doom'", "--vae")
    assert not (run / "series").exists() or not list((run / "series").glob("*.npz"))


@pytest.mark.parametrize("damage, needles", [
    ("no_vae", ["no VAE checkpoint", "02_train_vae.py"]),
    ("corrupt_vae", ["best.pt", "corrupt"]),
    ("no_rollouts", ["no such folder"]),
    ("empty_rollouts", ["no rollout files"]),
    ("no_logdir", ["--logdir"]),
])
def test_bad_input_is_one_line_exit_2(run, damage, needles):
    args = ENCODE
    if damage == "no_vae":
        shutil.rmtree(run / "vae")
    elif damage == "corrupt_vae":
        (run / "vae" / "best.pt").write_bytes(b"not a checkpoint")
    elif damage == "no_rollouts":
        shutil.rmtree(run / "rollouts")
    elif damage == "empty_rollouts":
        for path in (run / "rollouts").glob("*.npz"):
            path.unlink()
    elif damage == "no_logdir":
        args = ("--vae", "x.pt")
    assert_one_line_error(run_cli("03_generate_rnn_data.py", *args, check=False), *needles)


def test_stage_04_trains_on_real_series_and_names_a_corrupt_file(run):
    run_cli("03_generate_rnn_data.py", *ENCODE)
    tiny = ("--logdir", run, "--hidden", 16, "--seq_len", 8, "--batch_size", 4, "--epochs", 1, "--num_threads", 1,
            "--no_progress")
    result = run_cli("04_train_mdnrnn.py", *tiny)
    assert "1/1 epochs" in result.stdout and (run / "mdnrnn" / "best.pt").exists()
    (run / "series" / "episode_000001.npz").write_bytes(b"PK\x03\x04 truncated")
    result = run_cli("04_train_mdnrnn.py", *tiny, "--new_model", check=False)
    assert_one_line_error(result, "episode_000001.npz", "corrupt")


def test_series_folder_ignores_initial_z_and_needs_episodes(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    save_initial_z(folder, ["episode_000000.npz"], np.zeros((1, Z)), np.zeros((1, Z)))
    with pytest.raises(DataError, match="no series files"):
        SeriesFolder(folder)
    t = 5
    save_series(folder / "episode_000000.npz", np.full((t, Z), 1e6), np.zeros((t, Z)), np.zeros((t, 1), np.float32),
                np.ones(t, np.float32), np.zeros(t, bool))
    series = SeriesFolder(folder)
    assert [p.name for p in series.paths] == ["episode_000000.npz"] and series.lengths().tolist() == [t]
    assert np.isfinite(series[0]["mu"]).all()  # clipped to the float16 range, not inf
    assert series.schema is SERIES_SCHEMA
    (folder / INITIAL_Z_FILE).write_bytes(b"junk")
    with pytest.raises(DataError, match="initial_z"):
        load_initial_z(folder)
