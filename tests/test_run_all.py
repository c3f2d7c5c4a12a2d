"""run_all.py: the stages in order on the tiny preset (CarRacing), timed in timings.csv, resumable as a whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import assert_one_line_error, run_stage

from common import pipeline
from common.csvlog import read_csv
from common.errors import UserError
from common.pipeline import SPENT_JSON, stages


def test_tiny_carracing_recipe_runs_every_stage_then_a_rerun_runs_only_what_is_missing(tmp_path):
    """The shape of `make carracing` at a tiny size (real-env CMA-ES with the early stop), and run_all's resume."""
    out = run_stage("run_all.py", "--env", "carracing", "--preset", "tiny", "--logdir", "run", "--device", "cpu",
                    timeout=600).stdout
    rows = read_csv(tmp_path / "run" / "timings.csv")
    assert [r["stage"] for r in rows] == [s.name for s in stages("carracing", "tiny")]
    rates = {r["stage"]: r["unit"] for r in rows}
    assert rates["01_data"] == "frames/s" and rates["02_vae"] == "img/s" and rates["04_mdnrnn"] == "timesteps/s"
    assert all(float(r["seconds"]) > 0 for r in rows) and "7 stages run this time" in out
    assert (tmp_path / "run" / "controller" / "best.pt").exists()
    log = read_csv(tmp_path / "run" / "controller" / "log.csv")
    assert log[-1]["eval_score"] and int(log[-1]["frames"]) > 0
    assert "same 2 seeds" in out  # the second scoring run tests controller vs random

    again = run_stage("run_all.py", "--env", "carracing", "--preset", "tiny", "--logdir", "run").stdout
    assert "0 stages run this time" in again and again.count("skipped") == 7

    # As if the run had been killed during the last stage after 1,000 s: only that one runs again, and its row
    # counts the time spent before the kill.
    (tmp_path / "run" / "timings.csv").write_text("\n".join(
        (tmp_path / "run" / "timings.csv").read_text().splitlines()[:-1]) + "\n")
    (tmp_path / "run" / SPENT_JSON).write_text(json.dumps({"06_random": 1000.0}))
    resumed = run_stage("run_all.py", "--env", "carracing", "--preset", "tiny", "--logdir", "run").stdout
    assert "1 stages run this time" in resumed and "[06_random] continues after 1000 s" in resumed
    rows = read_csv(tmp_path / "run" / "timings.csv")
    assert len(rows) == 7 and 1000 < float(rows[-1]["seconds"]) < 1000 + 300
    assert json.loads((tmp_path / "run" / SPENT_JSON).read_text()) == {}


def test_a_second_training_seed_changes_every_training_seed_and_no_test_seed():
    cpu = [s.args for s in stages("carracing", "cpu")]
    other = [s.args for s in stages("carracing", "cpu", seed=1)]
    data_seed = int(dict(zip(cpu[0], cpu[0][1:]))["--seed"])
    assert data_seed >= 1_000_000 + 1024 and "--stop_after_negative" in cpu[4]  # data after stage 05's eval seeds
    assert "--whole_episodes_from" in cpu[4]  # the early stop ends before the last generations
    changed = [a != b for a, b in zip(cpu, other)]
    assert changed == [True, True, False, True, True, False, False]  # 01, 02, 04, 05; 03 has none; 06 = test
    # the Doom recipes take their seeds the same way; the CPU recipe then ends in a round of stage 07 (its
    # episodes moved by the seed) and scores its controller; the demo and the paper preset do not
    demo = [s.args for s in stages("doom", "demo")]
    assert [a != b for a, b in zip(demo, [s.args for s in stages("doom", "demo", seed=1)])] == changed
    assert int(dict(zip(demo[0], demo[0][1:]))["--seed"]) >= 1_000_000 + 1024
    names = [s.name for s in stages("doom", "cpu")]
    assert names == ["01_data", "02_vae", "03_series", "04_mdnrnn", "05_controller", "06_controller",
                     "06_random", "07_rounds", "06_round"]
    doom, other = ({n: s.args for n, s in zip(names, stages("doom", "cpu", seed=seed), strict=True)}
                   for seed in (0, 1))
    assert [doom[n] != other[n] for n in names[:5]] == changed[:5] and doom["06_random"] == other["06_random"]
    assert int(dict(zip(doom["01_data"], doom["01_data"][1:]))["--seed"]) >= 1_000_000 + 1024
    assert [run["07_rounds"][run["07_rounds"].index("--seed") + 1] for run in (doom, other)] == ["0", "1"]
    assert other["06_round"] == doom["06_round"]
    assert "iterate/round_1/controller/best.pt" in " ".join(doom["06_round"])
    assert len(stages("doom", "paper")) == 7
    assert_one_line_error(run_stage("run_all.py", "--env", "carracing", "--preset", "demo", check=False),
                          "--preset demo")


def test_failing_stage_is_one_line_and_dry_run_prints_the_commands(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "rollouts").write_text("not a folder")  # stage 01 cannot write there
    result = run_stage("run_all.py", "--preset", "tiny", "--logdir", "run", check=False)
    last = result.stderr.splitlines()[-1]  # after the stage's own one-line error
    assert result.returncode == 2 and "stage 01_data exited 2" in last and "rerun this command" in last
    assert "Traceback" not in result.stderr
    dry = run_stage("run_all.py", "--preset", "paper", "--dry_run").stdout.splitlines()
    assert len(dry) == 7 and "--total_episodes 10000" in dry[0] and "--random" in dry[-1]


def test_a_running_stage_saves_its_time_so_far_for_a_rerun_after_a_kill(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "SPENT_EVERY_S", 0.2)
    code, out, seconds, stopped = pipeline._run_timed(
        [sys.executable, "-c", "import time; time.sleep(1.5); print('ok')"], tmp_path, "02_vae", before=5.0)
    assert (code, out.strip(), stopped) == (0, "ok", False) and 6.5 <= seconds < 5.0 + 60
    saved = pipeline.spent_before(tmp_path)["02_vae"]  # written while it ran: what a kill would have left
    assert 5.0 < saved <= round(seconds, 1)  # saved to 0.1 s: a save just before the end may round up past it
    (tmp_path / SPENT_JSON).write_text("[1, 2]")
    with pytest.raises(UserError, match=SPENT_JSON):
        pipeline.spent_before(tmp_path)


# A stand-in stage: logs each SIGINT/SIGTERM it gets, then stops (exit 130) as a stage does after Ctrl-C
_STAGE = """
import pathlib, signal, sys, time
folder = pathlib.Path(sys.argv[1])
def log(number, frame):
    with (folder / "signals").open("a") as f:
        f.write(f"{number}\\n")
signal.signal(signal.SIGTERM, log)
signal.signal(signal.SIGINT, log)
(folder / "ready").touch()
deadline = time.time() + 30
while time.time() < deadline and not (folder / "signals").exists():
    time.sleep(0.05)
time.sleep(0.5)  # room for a second signal, were one sent
sys.exit(130)
"""
_RUN_ALL = """
import sys
from pathlib import Path
from common import pipeline
from common.cli import run_main
folder = Path(sys.argv[1])
run_main(lambda: pipeline._run_timed([sys.executable, "-c", sys.argv[2], str(folder)], folder, "05_controller", 0.0)[0])
"""


@pytest.mark.parametrize("whole_group", [False, True], ids=["kill PID", "kill the group"])
def test_sigterm_stops_the_stage_once_and_keeps_its_time(tmp_path, whole_group):
    """A background run (which ignores SIGINT) is stopped by SIGTERM: the stage gets exactly one stop."""
    run_all = subprocess.Popen([sys.executable, "-c", _RUN_ALL, str(tmp_path), _STAGE], cwd=pipeline.ROOT,
                               start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "ready").exists() and time.time() < deadline and run_all.poll() is None:
        time.sleep(0.05)
    assert (tmp_path / "ready").exists(), run_all.stderr.read() if run_all.poll() is not None else "stage not up"
    if whole_group:
        os.killpg(run_all.pid, signal.SIGTERM)
    else:
        os.kill(run_all.pid, signal.SIGTERM)
    _, stderr = run_all.communicate(timeout=60)
    assert run_all.returncode == 130 and "interrupted" in stderr
    assert (tmp_path / "signals").read_text().split() == [str(int(signal.SIGTERM))]
    assert pipeline.spent_before(tmp_path)["05_controller"] > 0
