"""analyze.py: every analysis on a tiny but real pipeline writes readable pictures; bad input is one line."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.committed import committed_dream
from analysis.images import LABEL_WIDTH
from common.checkpoints import load_checkpoint, save_checkpoint
from common.csvlog import CsvLog, read_csv
from control.world import WorldPaths, load_world
from models.vae import ConvVAE
from tests.conftest import assert_one_line_error, run_cli, run_stage
from tests.world_fixture import Z_SIZE, make_tiny_world


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    """Two short real Doom rollouts, a tiny untrained V and M, a controller, and the three CSV logs."""
    run = tmp_path_factory.mktemp("analysis") / "run"
    run_stage("01_generate_data.py", "doom", "--total_episodes", 2, "--max_steps", 30, "--workers", 1,
              "--logdir", run, cwd=run.parent)
    make_tiny_world(run)
    world = load_world(WorldPaths.from_logdir(run), with_vae=False)
    save_checkpoint(run / "controller" / "best.pt", "controller", {"env": "doom"},
                    {"params": torch.zeros(world.controller.num_params)})
    vae_log = CsvLog(run / "vae" / "losses.csv", ["epoch", "train_loss", "val_loss", "train_recon", "train_kl"])
    m_log = CsvLog(run / "mdnrnn" / "losses.csv", ["epoch", "train_loss", "val_loss", "train_z", "train_done"])
    c_log = CsvLog(run / "controller" / "log.csv", ["generation", "mean_fitness", "max_fitness", "eval_score"])
    for i in range(1, 4):
        vae_log.append({"epoch": i, "train_loss": 100.0 / i, "val_loss": 110.0 / i, "train_recon": 60.0 / i,
                        "train_kl": 32.0})
        m_log.append({"epoch": i, "train_loss": 1.2 / i, "val_loss": 1.3 / i, "train_z": 1.0 / i, "train_done": 0.1})
        c_log.append({"generation": i, "mean_fitness": 100.0 * i, "max_fitness": 150.0 * i,
                      "eval_score": 120.0 * i if i == 2 else ""})
    return run


def _image(path: Path) -> Image.Image:
    assert path.is_file() and path.stat().st_size > 0, path
    image = Image.open(path)
    image.load()
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 10, f"{path} is (nearly) blank"
    return image


def _grid_width(columns: int, cell: int, gap: int = 3) -> int:
    return LABEL_WIDTH + columns * (cell + gap) + gap


def test_picture_analyses_write_images(world_dir):
    out = Path("figs")
    common = ["--logdir", world_dir, "--out", out]
    run_cli("analyze.py", "reconstructions", *common, "--count", 5)
    assert _image(out / "reconstructions.png").size[0] == _grid_width(5, 96)
    run_cli("analyze.py", "dream-vs-real", *common, "--warmup", 3, "--steps", 10, "--every", 2)
    assert _image(out / "dream_vs_real.png").size[0] == _grid_width(6, 80)  # steps 3..13 every 2nd
    assert _image(out / "dream_vs_real_error.png").size == (820, 420)
    gif = Image.open(out / "dream_vs_real.gif")
    assert gif.n_frames == 11
    run_cli("analyze.py", "mixture-weights", *common, "--frames", 4)
    run_cli("analyze.py", "mixture-weights", *common, "--dream", "--steps", 12, "--temperature", 1.0)
    for name in ("mixture_weights.png", "mixture_weights_dream.png"):
        assert _image(out / name).size[0] == 900
    run_cli("analyze.py", "committed", *common, "--steps", 8, "--every", 2, "--gif")
    assert _image(out / "committed.png").size == (_grid_width(5, 72), 18 + 14 + 6 * 75 + 3)  # free + 5 components
    assert Image.open(out / "committed.gif").n_frames == 9
    result = run_cli("analyze.py", "training", *common)
    for name in ("training_vae.png", "training_mdnrnn.png", "training_controller.png"):
        assert _image(out / name).size == (820, 440)
        assert name in result.stdout


def test_latents_names_the_dimensions_v_uses(world_dir, tmp_path):
    vae = ConvVAE(Z_SIZE)  # posterior std 0.1 in dimensions 0-2 for every frame, the prior's 1.0 elsewhere
    with torch.no_grad():
        vae.fc_logvar.weight.zero_()
        vae.fc_logvar.bias.copy_(torch.tensor([2 * math.log(0.1)] * 3 + [0.0] * (Z_SIZE - 3)))
    path = tmp_path / "vae.pt"
    save_checkpoint(path, "vae", {"env": "doom", "z_size": Z_SIZE}, vae)
    result = run_cli("analyze.py", "latents", "--logdir", world_dir, "--out", "figs", "--vae", path, "--frames", 20)
    rows = read_csv(Path("figs/latents.csv"))
    assert [r["used"] for r in rows] == ["1"] * 3 + ["0"] * (Z_SIZE - 3)
    assert [float(r["posterior_std"]) for r in rows] == pytest.approx([0.1] * 3 + [1.0] * (Z_SIZE - 3), abs=1e-4)
    assert f"V uses 3 of its {Z_SIZE} dimensions over 20 frames" in result.stdout
    assert _image(Path("figs/latents.png")).size[1] == 420


def test_committed_dream_uses_only_the_forced_component(world_dir):
    world = load_world(WorldPaths.from_logdir(world_dir), with_vae=False)
    z0, actions = world.initial_mu[0], torch.zeros(20, 1)
    free = committed_dream(world.mdnrnn, z0, actions, None, 1.0, seed=3)
    assert len(torch.unique(free.components)) > 1  # M's own choice mixes components...
    rows = []
    for k in range(world.mdnrnn.num_mixtures):
        result = committed_dream(world.mdnrnn, z0, actions, k, 1.0, seed=3)
        assert result.components.shape == (20, world.mdnrnn.z_size)
        assert bool((result.components == k).all())  # ...a committed dream never does
        rows.append(result.predicted)
    assert not torch.allclose(rows[0], rows[1])


def test_training_skips_missing_logs_and_fails_without_any(world_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world_dir, run)
    (run / "vae" / "losses.csv").unlink()
    result = run_cli("analyze.py", "training", "--logdir", run)
    assert "skipping" in result.stdout and (run / "figures" / "training_mdnrnn.png").is_file()
    (run / "mdnrnn" / "losses.csv").unlink()
    (run / "controller" / "log.csv").unlink()
    assert_one_line_error(run_cli("analyze.py", "training", "--logdir", run, check=False), "no training logs")


def test_temperature_scores_dream_per_tau_and_real_once(world_dir):
    result = run_cli("analyze.py", "temperature", "--logdir", world_dir, "--out", "figs", "--temperatures", "0.5,1.3",
                     "--dream_episodes", 3, "--real_episodes", 2, "--max_steps", 8, "--workers", 1, "--no_progress")
    assert _image(Path("figs/temperature.png")).size == (820, 440)
    rows = np.genfromtxt("figs/temperature.csv", delimiter=",", names=True)
    assert list(rows["temperature"]) == [0.5, 1.3]
    assert np.all(rows["real_mean"] == rows["real_mean"][0]) and 1 <= rows["real_mean"][0] <= 8
    assert "dream tau 1.3" in result.stdout


def test_bad_input_is_one_line(world_dir, tmp_path):
    assert_one_line_error(run_cli("analyze.py", "reconstructions", "--logdir", "nowhere", check=False),
                          "nowhere", "no such folder")
    assert_one_line_error(run_cli("analyze.py", "dream-vs-real", "--logdir", world_dir, "--out", "f",
                                  "--episode", 7, check=False), "--episode 7", "0..1")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("analyze.py", "committed", "--logdir", empty, check=False), "no such checkpoint")
    assert_one_line_error(run_cli("analyze.py", "committed", "--logdir", world_dir, "--steps", 0, check=False),
                          "--steps")
    result = run_cli("analyze.py", "all", "--logdir", empty, check=False)
    assert_one_line_error(result, "no analysis had its inputs")


def test_carracing_controller_curve_is_drawn_beside_the_references_by_frames(world_dir, tmp_path):
    from analysis.training import controller_against_reference

    run = tmp_path / "run"
    save_checkpoint(run / "controller" / "last.pt", "controller", {"env": "carracing"}, {"params": torch.zeros(3)})
    log = CsvLog(run / "controller" / "log.csv", ["generation", "mean_fitness", "max_fitness", "eval_score", "frames"])
    for i in range(1, 6):
        log.append({"generation": i, "mean_fitness": -50.0 + 40 * i, "max_fitness": 100.0 * i,
                    "eval_score": 300.0 if i == 5 else "", "frames": 200_000 * i})
    path = controller_against_reference(run, run / "figures")
    assert path is not None and Image.open(path).size == (900, 480)
    assert controller_against_reference(world_dir, tmp_path / "doom_figures") is None  # a Doom run: no such chart

    seed1 = tmp_path / "seed1"  # a second training seed, drawn on the same axes
    log = CsvLog(seed1 / "controller" / "log.csv", ["generation", "mean_fitness", "eval_score", "frames"])
    log.append({"generation": 1, "mean_fitness": 10.0, "eval_score": 40.0, "frames": 90_000_000})
    run_cli("analyze.py", "training", "--logdir", run, "--compare", seed1)
    assert Image.open(path).size == (900, 480 + 2 * 14)  # two more curves, two more legend rows
    assert_one_line_error(run_cli("analyze.py", "training", "--logdir", run, "--compare", world_dir, check=False),
                          "--compare", "no controller/log.csv with env frames")


def test_temperature_table_trains_one_controller_per_tau_and_a_rerun_reuses_everything(world_dir):
    args = ("analyze.py", "temperature-table", "--logdir", world_dir, "--out", "figs", "--temperatures", "1.3,0.5",
            "--pop_size", 4, "--num_rollouts", 2, "--max_generations", 2, "--eval_every", 2, "--eval_episodes", 3,
            "--dream_episodes", 3, "--real_episodes", 3, "--max_steps", 8, "--workers", 1, "--no_progress")
    first = run_cli(*args)
    rows = read_csv(Path("figs/temperature_table.csv"))
    assert [r["temperature"] for r in rows] == ["0.5", "1.3"]  # sorted, so the chart's lines run left to right
    assert all(r["generations"] == "2" and 1 <= float(r["real_mean"]) <= 8 for r in rows)
    assert [r["paper_real_mean"] for r in rows] == ["196", "753"]
    assert _image(Path("figs/temperature_table.png")).size == (820, 440)
    table = Path(world_dir) / "temperature_table"
    for tau in ("0.5", "1.3"):
        folder = table / f"tau_{tau}"
        assert len(read_csv(folder / "log.csv")) == 2
        assert (folder / "best.pt").exists() and (folder / "real_scores.csv").exists()
    assert load_checkpoint(table / "tau_1.3" / "best.pt", "controller")["config"]["temperature"] == 1.3
    made = {p: p.stat().st_mtime_ns for p in table.rglob("*") if p.is_file()}
    second = run_cli(*args)
    assert {p: p.stat().st_mtime_ns for p in table.rglob("*") if p.is_file()} == made  # nothing retrained or rescored
    assert second.stdout.split("\ntau ", 1)[1] == first.stdout.split("\ntau ", 1)[1]
