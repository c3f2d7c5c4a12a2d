"""Stage 06: per-episode scores and mean ± std, the random baseline on the same seeds, dream, recording."""

from __future__ import annotations

import re

import torch
from conftest import assert_one_line_error, run_cli, run_stage
from PIL import Image
from world_fixture import make_tiny_world, other_member

from common.checkpoints import save_checkpoint
from common.csvlog import read_csv, write_csv
from models.vae import ConvVAE

EPISODE_LINE = re.compile(r"^episode +\d+ +seed +\d+ +score +[\d.]+ +steps +\d+$")


def trained_run(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    run_stage("05_train_controller.py", "--logdir", run, "--pop_size", 4, "--num_rollouts", 2, "--max_steps", 30,
              "--eval_every", 1, "--eval_episodes", 4, "--max_generations", 1, "--calibration_episodes", 0)
    return run


def saved_controller_run(tmp_path):
    """A tiny world with a controller saved directly (stage 05's own output is tested above and in its tests)."""
    run = make_tiny_world(tmp_path / "run")
    save_checkpoint(run / "controller" / "best.pt", "controller", {"env": "doom"}, {"params": torch.full((40,), 0.3)})
    return run


def check_report(stdout, episodes, label):
    lines = stdout.strip().splitlines()
    episode_lines = [line for line in lines if line.startswith("episode ")]
    assert len(episode_lines) == episodes and all(EPISODE_LINE.match(line) for line in episode_lines), stdout
    summary = next(line for line in lines if line.startswith(label))
    assert re.search(rf"[\d.]+ ± [\d.]+ over {episodes} episodes", summary), summary
    return [float(line.split()[5]) for line in episode_lines]


def test_real_scores_random_baseline_and_recording(tmp_path):
    run = trained_run(tmp_path)
    out = run_stage("06_test_controller.py", "--logdir", run, "--episodes", 3, "--max_steps", 25,
                    "--record", "ep.gif").stdout
    scores = check_report(out, 3, "controller (real)")
    assert all(0 < s <= 25 for s in scores)
    gif = Image.open("ep.gif")
    steps = int(re.search(r"recorded episode 0 \(seed 0, score [\d.]+, (\d+) steps\)", out).group(1))
    real_width = round(160 * 256 / 120)  # Doom's 160x120 screen at the recording's height
    assert gif.n_frames == steps and gif.size == (real_width + 2 * (4 + 256), 256)  # real | input | reconstruction
    random_out = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 3, "--max_steps", 25,
                         "--random").stdout
    seeds = [line.split()[3] for line in random_out.splitlines() if line.startswith("episode ")]
    assert seeds == ["0", "1", "2"]
    check_report(random_out, 3, "random policy (sticky, real)")
    comparison = next(line for line in random_out.splitlines() if line.startswith("same 3 seeds: "))
    assert re.search(r"controller \(real\) [\d.]+ ± [\d.]+ \(n 3\) vs random policy \(sticky, real\)", comparison)
    assert re.search(r"Welch t -?[\d.]+, df \d+, p [\d.e-]+", comparison), comparison
    assert (run / "scores" / "real_controller.csv").exists() and (run / "scores" / "real_random_sticky.csv").exists()
    left = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 2, "--random", "--random_policy",
                   "constant:-1").stdout
    check_report(left, 2, "random policy (constant:-1, real)")
    bad = run_cli("06_test_controller.py", "--logdir", run, "--random", "--random_policy", "constant:x", check=False)
    assert bad.returncode == 2 and "constant:x" in bad.stderr


def test_dream_scores_and_recording(tmp_path):
    run = saved_controller_run(tmp_path)
    out = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 5, "--dream", "--max_steps", 40,
                  "--record", "dream.gif").stdout
    check_report(out, 5, "controller (dream, tau=1.15)")
    assert Image.open("dream.gif").size == (256, 256)
    member = other_member(run, 5)
    run_cli("06_test_controller.py", "--logdir", run, "--episodes", 5, "--dream", "--max_steps", 40,
            "--ensemble", member)
    assert {p.name for p in (run / "scores").iterdir()} == {"dream_controller_tau1.15_threshold.csv",
                                                            "dream_controller_tau1.15_threshold_ensemble2.csv"}
    result = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 2, "--ensemble", member, check=False)
    assert_one_line_error(result, "--ensemble", "add --dream")


def test_controller_for_other_models_is_refused(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    save_checkpoint(run / "controller" / "best.pt", "controller", {"env": "doom"}, {"params": torch.zeros(7)})
    result = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 2, check=False)
    assert_one_line_error(result, "controller has 7 params", "need 40")
    result = run_cli("06_test_controller.py", "--logdir", run, "--controller", "missing.pt", check=False)
    assert_one_line_error(result, "missing.pt", "no such checkpoint")


def test_vae_other_than_the_one_m_learned_from_is_refused(tmp_path):
    run = saved_controller_run(tmp_path)
    save_checkpoint(run / "vae" / "best.pt", "vae", {"env": "doom", "z_size": 8}, ConvVAE(8))  # "retrained" V
    result = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 2, check=False)
    assert_one_line_error(result, "vae/best.pt", "not the VAE whose latents")


def refusal(stdout: str, *needles: str) -> str:
    """The one 'not compared' line, naming every needle, and no Welch line."""
    lines = [line for line in stdout.splitlines() if line.startswith("not compared")]
    assert len(lines) == 1, stdout
    assert not any(line.startswith("same ") for line in stdout.splitlines()), stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def compared(stdout: str, seeds: int) -> None:
    assert any(line.startswith(f"same {seeds} seeds: ") for line in stdout.splitlines()), stdout
    assert "not compared" not in stdout, stdout


def test_scores_are_compared_only_when_made_alike(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    controller = run / "controller" / "best.pt"
    save_checkpoint(controller, "controller", {"env": "doom"}, {"params": torch.full((40,), 0.3)})

    def score(*flags):
        return run_cli("06_test_controller.py", "--logdir", run, "--episodes", 2, "--workers", 1, "--no_progress",
                       *flags).stdout

    assert "rerun with --random" in score("--max_steps", 20)
    rows = read_csv(run / "scores" / "real_controller.csv")
    assert {(r["world"], r["policy"], r["max_steps"], r["env"]) for r in rows} == {("real", "controller", "20", "doom")}
    assert rows[0]["controller"] == str(controller) and len(rows[0]["controller_sha256"]) == 64

    refusal(score("--random", "--max_steps", 30), "scores/real_controller.csv", "max_steps 30 here vs 20 there",
            "rerun without --random")
    refusal(score("--random", "--max_steps", 20, "--env_kwargs", '{"screen_flashes": true}'),
            "env options", '"screen_flashes": true} here')
    compared(score("--random", "--max_steps", 20), 2)

    save_checkpoint(controller, "controller", {"env": "doom"}, {"params": torch.full((40,), -0.3)})  # retrained
    refusal(score("--random", "--max_steps", 20), "scores/real_controller.csv", "another controller",
            str(controller))
    compared(score("--max_steps", 20), 2)  # the new controller scored: its file matches the random one again
    compared(score("--random", "--max_steps", 20), 2)


def test_score_files_from_before_settings_were_recorded_are_not_compared(tmp_path):
    run = make_tiny_world(tmp_path / "run")
    save_checkpoint(run / "controller" / "best.pt", "controller", {"env": "doom"}, {"params": torch.zeros(40)})
    (run / "scores").mkdir()
    write_csv(run / "scores" / "real_controller.csv", ["seed", "score", "length", "invalid"],
              [{"seed": s, "score": 30 + s, "length": 30 + s, "invalid": ""} for s in range(2)])
    out = run_cli("06_test_controller.py", "--logdir", run, "--episodes", 2, "--max_steps", 20, "--random",
                  "--workers", 1, "--no_progress").stdout
    refusal(out, "real_controller.csv", "does not record the settings")


def test_two_checkpoints_of_one_folder_keep_their_own_score_files(tmp_path):
    import importlib
    scores_file = importlib.import_module("06_test_controller").scores_file
    names = {scores_file(False, False, "random", 0.0, controller=f"runs/a/controller-x/{stem}.pt")
             for stem in ("best", "mean-gen55", "mean-gen60")}
    assert names == {"real_controller_controller-x.csv", "real_controller_controller-x_mean-gen55.csv",
                     "real_controller_controller-x_mean-gen60.csv"}
    assert scores_file(False, False, "random", 0.0) == "real_controller.csv"


def test_scores_on_other_seeds_never_replace_the_test_scores():
    import importlib
    scores_file = importlib.import_module("06_test_controller").scores_file
    test = {scores_file(random, False, "sticky", 0.0) for random in (False, True)}
    other = {scores_file(random, False, "sticky", 0.0, first_seed=3_000_000) for random in (False, True)}
    assert test == {"real_controller.csv", "real_random_sticky.csv"}
    assert other == {"real_controller_seed3000000.csv", "real_random_sticky_seed3000000.csv"}
    assert scores_file(False, True, "sticky", 1.15, first_seed=5) == "dream_controller_tau1.15_threshold_seed5.csv"


def test_each_rounds_controller_keeps_its_own_score_file(tmp_path):
    import importlib
    scores_file = importlib.import_module("06_test_controller").scores_file
    names = [scores_file(False, False, "sticky", 0.0, controller=str(tmp_path / folder / "best.pt"), logdir=tmp_path)
             for folder in ("controller", "iterate/round_1/controller", "iterate/round_2/controller")]
    assert names == ["real_controller_controller.csv", "real_controller_iterate_round_1_controller.csv",
                     "real_controller_iterate_round_2_controller.csv"]
