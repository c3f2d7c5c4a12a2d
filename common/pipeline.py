"""A whole run as one command: the stage scripts in order, each timed, resumable as a whole.

Each stage runs as its own process (exactly the command a user would type, printed first), so a
stage's flags, errors and resume rules are the stage's own. A finished stage appends a row to
`timings.csv` in the run folder (its wall time and the throughput its last line reports); a rerun
skips the stages that have a row and reruns the one that was interrupted, which continues where it
stopped. The time an interrupted stage had already spent (saved every half minute, so a kill loses
little) is added to the row of the run that finishes it: a row is the stage's whole cost. Presets
are the recipes (`paper`: the reference's scale; `cpu`: the 2-core recipes, `make cpu-recipe` for
Doom and `make carracing`; `demo`: `make demo`, Doom in minutes; `tiny`: a minute-long check).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common.atomic import write_json_atomic
from common.csvlog import CsvLog, read_csv
from common.errors import UserError
from common.seeds import TRAINING_DATA_SEED, TRAINING_SEED_STRIDE
from common.stops import stops_handled_by
from common.workers import sigterm_when_parent_dies

TIMINGS_CSV = "timings.csv"
TIMING_FIELDS = ["stage", "seconds", "throughput", "unit", "command", "finished"]
SPENT_JSON = "timings_unfinished.json"  # seconds spent so far on stages interrupted before they finished
SPENT_EVERY_S = 30.0
ROOT = Path(__file__).resolve().parents[1]
# C for `make carracing`: CMA-ES in the real game on V's mean (V uses ~8 of its 32 dimensions; a sample feeds C
# the other 24 as noise); generations 1-14 cut training episodes after 20 steps without a new tile (cheap while
# the car learns to drive), 15-25 play them whole (learning to recover). Measured on seed 0: 726.8 in ~2 h 22 min,
# the 60-generation sample recipe's score (744.0) in ~1 h less; 30 generations scored lower (677.6)
CARRACING_CPU_CONTROLLER = ("--pop_size", "32", "--num_rollouts", "8", "--max_generations", "25",
                            "--eval_every", "5", "--eval_episodes", "32", "--stop_after_negative", "20",
                            "--whole_episodes_from", "15", "--z_input", "mean")
_RATE = re.compile(r"([\d.]+(?:e[+-]?\d+)?) (frames/s|img/s|timesteps/s)")


@dataclass(frozen=True)
class Stage:
    name: str  # unique within a preset: the timings.csv key
    script: str
    args: tuple[str, ...]

    def command(self, logdir: Path, device: str) -> list[str]:
        args = [a.replace("{logdir}", str(logdir)).replace("{device}", device) for a in self.args]
        return [sys.executable, str(ROOT / self.script), *args]


@dataclass(frozen=True)
class Recipe:
    """Each stage's own flags; `episodes`: stage 06's count, then any flags of its own (same for both scorings).

    `rounds`: stage 07's flags (with `--rounds N`) when the recipe ends in iterative training: then its last
    round's controller is scored too, on the same test seeds, against the same random scores.
    """
    data: tuple[str, ...]
    vae: tuple[str, ...]
    mdn: tuple[str, ...]
    ctrl: tuple[str, ...]
    episodes: tuple[str, ...]
    rounds: tuple[str, ...] = ()


def _doom(preset: str) -> Recipe:
    rounds: tuple[str, ...] = ()  # no stage 07
    if preset == "paper":  # the reference's Doom recipe at its scale, with what the CPU recipe taught (sticky_mixed)
        data = ("doom", "--total_episodes", "10000", "--min_length", "100", "--policy", "sticky_mixed")
        vae, mdn = ("--epochs", "10"), ("--epochs", "400")
        ctrl = ("--pop_size", "64", "--num_rollouts", "16", "--max_generations", "200", "--eval_every", "25")
        episodes = ("100",)
    elif preset == "cpu":  # `make cpu-recipe` (docs/notebook.md)
        data = ("doom", "--total_episodes", "1000", "--policy", "sticky_mixed")
        vae = ("--epochs", "1", "--max_frames", "200000", "--lr", "0.001")
        mdn = ("--epochs", "30", "--batch_size", "16")
        ctrl = ("--pop_size", "32", "--num_rollouts", "16", "--max_generations", "30", "--eval_every", "10",
                "--eval_episodes", "256")
        episodes = ("100",)
        # one round of stage 07 at C's size: M sees where the dream-trained C goes (docs/notebook.md, R3-07)
        rounds = ("--rounds", "1", "--episodes", "200", "--mdnrnn_epochs", "10", "--generations", "30",
                  "--eval_every", "10", "--calibration_episodes", "32")
    elif preset == "demo":  # `make demo`: 2,000 episodes, a small V and M, C in the dream (notebook D15)
        # on 1,000 episodes the dream-trained C was a lottery even after a round (D7-D14, D15's first run);
        # 2,000 episodes with M's steps unchanged won at every size tried (R5-R8)
        data = ("doom", "--total_episodes", "2000", "--policy", "sticky_mixed")
        vae = ("--epochs", "1", "--max_frames", "60000", "--lr", "0.001")
        mdn = ("--epochs", "15", "--batch_size", "16", "--hidden", "256")
        ctrl = ("--pop_size", "32", "--num_rollouts", "16", "--max_generations", "10", "--eval_every", "5",
                "--eval_episodes", "256")
        episodes = ("100",)
    else:  # tiny
        data = ("doom", "--total_episodes", "12", "--max_steps", "80", "--policy", "sticky_mixed")
        vae = ("--epochs", "1", "--max_frames", "400", "--batch_size", "32")
        mdn = ("--epochs", "1", "--batch_size", "4")
        ctrl = ("--pop_size", "4", "--num_rollouts", "2", "--max_generations", "2", "--eval_every", "2",
                "--eval_episodes", "4", "--max_steps", "50", "--calibration_episodes", "0")
        episodes = ("4", "--max_steps", "50")
        rounds = ("--rounds", "1", "--episodes", "4", "--mdnrnn_epochs", "1", "--generations", "2",
                  "--eval_every", "2", "--eval_episodes", "4", "--calibration_episodes", "0")
    return Recipe(data, vae, mdn, ("--mode", "dream", *ctrl), episodes, rounds)


def _carracing(preset: str) -> Recipe:
    if preset == "paper":  # the reference: 10,000 episodes, V 10 epochs, M 20 epochs, C in the real env (1,800 gens)
        data = ("carracing", "--total_episodes", "10000")
        vae, mdn = ("--epochs", "10"), ("--epochs", "20")
        ctrl = ("--pop_size", "64", "--num_rollouts", "16", "--max_generations", "200", "--eval_every", "25")
        episodes = ("100",)
    elif preset == "cpu":  # `make carracing`: the 2-core recipe (docs/notebook_carracing.md)
        data = ("carracing", "--total_episodes", "400")
        vae = ("--epochs", "1", "--max_frames", "200000", "--lr", "0.001")
        mdn = ("--epochs", "20")
        ctrl = CARRACING_CPU_CONTROLLER
        episodes = ("100",)
    elif preset == "tiny":  # the cpu recipe's shape at a size that runs in a minute
        data = ("carracing", "--total_episodes", "4", "--max_steps", "60")
        vae = ("--epochs", "1", "--max_frames", "200", "--batch_size", "32")
        mdn = ("--epochs", "1", "--batch_size", "2")
        ctrl = ("--pop_size", "4", "--num_rollouts", "1", "--max_generations", "1", "--eval_every", "1",
                "--eval_episodes", "2", "--max_steps", "30", "--stop_after_negative", "20")
        episodes = ("2", "--max_steps", "50")  # a check of the plumbing, not a score: short episodes
    else:
        raise UserError(f"--preset {preset}: the demo is Doom's; carracing has paper, cpu and tiny")
    return Recipe(data, vae, mdn, ("--mode", "real", *ctrl), episodes)


def _stages(recipe: Recipe, seed: int) -> list[Stage]:
    """`seed` moves every training stage: stage 01's episodes by 10,000 per seed (far above the test seeds), V's, M's
    and C's own seeds, stage 07's episodes like stage 01's; stage 03 has none and stage 06 always plays the test
    seeds.
    """
    data = (*recipe.data, "--seed", str(TRAINING_DATA_SEED + TRAINING_SEED_STRIDE * seed))
    vae, mdn, ctrl = ((*flags, "--seed", str(seed)) for flags in (recipe.vae, recipe.mdn, recipe.ctrl))
    run, dev = ("--logdir", "{logdir}"), ("--device", "{device}")
    scoring = (*run, "--episodes", *recipe.episodes, "--no_progress")
    stages = [
        Stage("01_data", "01_generate_data.py", (*data, *run, "--no_progress")),
        Stage("02_vae", "02_train_vae.py", (*run, *vae, *dev, "--no_progress")),
        Stage("03_series", "03_generate_rnn_data.py", (*run, *dev, "--no_progress")),
        Stage("04_mdnrnn", "04_train_mdnrnn.py", (*run, *mdn, *dev, "--no_progress")),
        Stage("05_controller", "05_train_controller.py", (*run, *ctrl, *dev, "--no_progress")),
        Stage("06_controller", "06_test_controller.py", scoring),
        Stage("06_random", "06_test_controller.py", (*scoring, "--random")),
    ]
    if recipe.rounds:  # stage 07 (its own real scores left to stage 06), then stage 06 on its last round's C and M
        last = "{logdir}/iterate/round_" + recipe.rounds[recipe.rounds.index("--rounds") + 1]
        world = ("--controller", f"{last}/controller/best.pt", "--mdnrnn", f"{last}/mdnrnn/best.pt")
        stages += [Stage("07_rounds", "07_iterative_training.py",
                         (*run, *recipe.rounds, "--seed", str(seed), "--test_episodes", "0", *dev, "--no_progress")),
                   Stage("06_round", "06_test_controller.py", (*scoring, *world))]
    return stages


PRESETS = ("paper", "cpu", "demo", "tiny")
ENVS = {"doom": _doom, "carracing": _carracing}


def stages(env: str, preset: str, seed: int = 0) -> list[Stage]:
    """The stage commands of a recipe; `seed` changes every stage's seed (a second training seed)."""
    if env not in ENVS:
        raise UserError(f"--env {env}: the presets cover {sorted(ENVS)}")
    if preset not in PRESETS:  # checked once here, so each env's recipe list may end in its last preset
        raise UserError(f"--preset {preset}: one of {', '.join(PRESETS)}")
    return _stages(ENVS[env](preset), seed)


def finished_stages(logdir: Path) -> set[str]:
    path = logdir / TIMINGS_CSV
    return {row["stage"] for row in read_csv(path)} if path.exists() else set()


def throughput(output: str) -> tuple[str, str]:
    """The last rate a stage printed (frames/s, img/s, timesteps/s), or nothing."""
    found = _RATE.findall(output)
    return (found[-1][0], found[-1][1]) if found else ("", "")


def run_pipeline(env: str, preset: str, logdir: Path, device: str, log=print, seed: int = 0) -> list[dict]:
    """Run every stage that timings.csv does not list yet; return the rows written this time."""
    logdir.mkdir(parents=True, exist_ok=True)
    done = finished_stages(logdir)
    timings = CsvLog(logdir / TIMINGS_CSV, TIMING_FIELDS)
    rows = []
    for stage in stages(env, preset, seed):
        if stage.name in done:
            log(f"[{stage.name}] done before (see {TIMINGS_CSV}); skipped")
            continue
        command = stage.command(logdir, device)
        log(f"[{stage.name}] {' '.join(command[1:])}")
        before = spent_before(logdir).get(stage.name, 0.0)
        if before:
            log(f"[{stage.name}] continues after {before:.0f} s spent before an interruption")
        returncode, stdout, seconds, stopped = _run_timed(command, logdir, stage.name, before)
        log(stdout.rstrip())
        if returncode != 0:
            raise UserError(f"stage {stage.name} exited {returncode}; fix what it said and rerun this "
                            "command to continue from it")
        rate, unit = throughput(stdout)
        row = {"stage": stage.name, "seconds": round(seconds, 1), "throughput": rate, "unit": unit,
               "command": " ".join(command[1:]), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        timings.append(row)
        _save_spent(logdir, stage.name, None)
        rows.append(row)
        log(f"[{stage.name}] {seconds:.1f} s" + (f", {rate} {unit}" if rate else ""))
        if stopped:  # Ctrl-C or SIGTERM as the stage finished: it counts, the next one waits for a rerun
            raise KeyboardInterrupt
    return rows


def spent_before(logdir: Path) -> dict[str, float]:
    """Seconds each unfinished stage spent in earlier, interrupted runs."""
    path = logdir / SPENT_JSON
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}
    except (ValueError, AttributeError, TypeError):
        raise UserError(f"{path}: not a JSON object of stage -> seconds; delete it to continue (the stages' "
                        "times in timings.csv then leave out the interrupted runs)") from None


def _save_spent(logdir: Path, name: str, seconds: float | None) -> None:
    spent = spent_before(logdir)
    if seconds is None:
        spent.pop(name, None)
    else:
        spent[name] = round(seconds, 1)
    write_json_atomic(logdir / SPENT_JSON, spent)


def _run_timed(command: list[str], logdir: Path, name: str, before: float) -> tuple[int, str, float, bool]:
    """Run a stage; return its exit code, stdout, total seconds (counting `before`) and whether it was stopped.

    The running total is saved every SPENT_EVERY_S seconds and on Ctrl-C, so a rerun after an interruption
    (or a kill) adds the time already spent instead of timing only its own part. The stage runs in its own
    process group and gets each Ctrl-C or SIGTERM from here, exactly once, whether one was typed, sent to
    run_all alone or to its whole group; it stops at a safe point and this raises KeyboardInterrupt after it
    (unless it had finished all the same: then the caller records it and stops).
    """
    started = time.perf_counter()

    def total() -> float:
        return before + time.perf_counter() - started

    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None, text=True, process_group=0,
                          preexec_fn=sigterm_when_parent_dies) as process, \
            _forwarding_stops(process) as stops:
        while True:
            try:
                stdout, _ = process.communicate(timeout=SPENT_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                _save_spent(logdir, name, total())
    if stops and process.returncode != 0:
        _save_spent(logdir, name, total())
        raise KeyboardInterrupt
    return process.returncode, stdout, total(), bool(stops)


@contextmanager
def _forwarding_stops(process: subprocess.Popen) -> Iterator[list[int]]:
    """While the stage runs, pass each SIGINT/SIGTERM that would stop run_all on to it; yield those received."""
    received: list[int] = []

    def forward(number: int, frame: object) -> None:
        received.append(number)
        if process.poll() is None:
            process.send_signal(number)
    with stops_handled_by(forward):
        yield received
