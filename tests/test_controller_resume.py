"""Stage 05 resumes exactly: the CMA-ES state round-trips bit for bit, and a kill at any write point of a
generation, then a rerun, ends with the same log, state and controllers as a run that was never stopped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from world_fixture import make_tiny_world

from common.checkpoints import load_checkpoint
from common.csvlog import CsvLog, read_csv
from control import train
from control.cmaes import CMAES
from control.train import ControllerTrainConfig, train_controller
from control.world import WorldPaths


def _sphere(x: np.ndarray) -> np.ndarray:
    return -np.sum((x - 0.3) ** 2, axis=1)


def _leaves(obj, path="es", out=None, seen=None):
    """Every number and array reachable from a cma object (wall-clock timers and the unused file logger aside)."""
    out, seen = ({} if out is None else out), (set() if seen is None else seen)
    if isinstance(obj, (int, float, bool, str, type(None), np.generic, np.ndarray)):
        out[path] = np.array(obj, copy=True) if isinstance(obj, np.ndarray) else obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _leaves(v, f"{path}[{k!r}]", out, seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _leaves(v, f"{path}[{i}]", out, seen)
    elif type(obj).__module__.startswith("cma") and hasattr(obj, "__dict__") and id(obj) not in seen:
        seen.add(id(obj))
        for k, v in vars(obj).items():
            if "timer" not in k and k != "logger":
                _leaves(v, f"{path}.{k}", out, seen)
    return out


def _assert_same_state(a: CMAES, b: CMAES) -> None:
    left, right = _leaves(a.es), _leaves(b.es)
    assert left.keys() == right.keys()
    for key, value in left.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, right[key], equal_nan=True), key
        else:
            assert value == right[key] or (value != value and right[key] != right[key]), key


@pytest.mark.parametrize(("dimension", "stop_at", "popsize", "started_at"),
                         [(40, 0, 12, "zero"), (40, 1, 12, "zero"), (40, 7, 12, "zero"), (400, 1, 12, "zero"),
                          (400, 7, 12, "zero"), (400, 7, 4, "zero"), (400, 7, 12, "a controller")])
def test_resumed_cma_es_follows_the_unbroken_history(tmp_path, dimension, stop_at, popsize, started_at):
    """14 generations: long enough for cma's lazy eigendecompositions to happen on both sides. 40 parameters
    adapt sigma by CSA, 400 (like both paper controllers, 867 and 1,088) by TPA, which carries mean-shift
    directions from one generation's tell to the next one's ask. A population of 4 is where cma would add
    selective mirrors by default; a run may also start from a controller's parameters (--init_controller)."""
    assert type(CMAES(dimension, 0.1, 12).es.adapt_sigma).__name__ == ("CMAAdaptSigmaCSA" if dimension == 40
                                                                        else "CMAAdaptSigmaTPA")
    x0 = None if started_at == "zero" else np.random.default_rng(5).normal(0, 0.5, dimension)
    unbroken, history = CMAES(dimension, 0.1, popsize, seed=3, x0=x0), []
    if x0 is not None:
        assert np.array_equal(unbroken.mean, x0)
    for _ in range(14):
        x = unbroken.ask()
        unbroken.tell(x, _sphere(x))
        history.append(x)

    first = CMAES(dimension, 0.1, popsize, seed=3, x0=x0)
    for g in range(stop_at):
        x = first.ask()
        assert np.array_equal(x, history[g])
        first.tell(x, _sphere(x))
    first.save(tmp_path / "es_state.npz", {"note": "kept"})
    np.random.seed(99)  # other users of numpy's global generator must not matter
    np.random.randn(17)
    resumed, extra = CMAES.load(tmp_path / "es_state.npz")
    assert extra == {"note": "kept"} and resumed.generation == stop_at
    for g in range(stop_at, 14):
        x = resumed.ask()
        assert np.array_equal(x, history[g]), f"generation {g + 1} differs"
        resumed.tell(x, _sphere(x))
    _assert_same_state(resumed, unbroken)


def test_seeded_runs_keep_the_stream_cma_draws_with_that_seed():
    """Our private generator replays what cma's own seeding gave (seed + 1 on numpy's global one)."""
    import cma

    ours = CMAES(6, 0.1, 8, seed=3)
    theirs = cma.CMAEvolutionStrategy(np.zeros(6), 0.1, {"popsize": 8, "seed": 4, "verbose": -9})
    for _ in range(5):
        x, y = ours.ask(), np.asarray(theirs.ask())
        assert np.array_equal(x, y)
        ours.tell(x, _sphere(x))
        theirs.tell(list(y), (-_sphere(y)).tolist())


# --- stage 05: a kill at every write point of a generation -------------------------------------------------

CONFIG = ControllerTrainConfig(mode="dream", pop_size=6, num_rollouts=2, max_steps=40, max_generations=4,
                               eval_every=2, eval_episodes=4, seed=5)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (the atomic writers drop their temp file, as a kill would)."""


def _train(run, out, **kwargs) -> None:
    train_controller(CONFIG, WorldPaths.from_logdir(run), out, {}, progress=False, **kwargs)


def _outcome(out) -> dict:
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(out / "log.csv")]
    es, extra = CMAES.load(out / "es_state.npz")
    extra["progress"].pop("seconds")
    return {"rows": rows, "es": es, "extra": extra,
            **{name: load_checkpoint(out / name, "controller")["model"]["params"] for name in ("best.pt", "last.pt")}}


# (what is written, before or after the write): every state a kill can leave a generation in
WRITE_POINTS = [("log", "before"), ("log", "after"), ("best.pt", "before"), ("best.pt", "after"), ("last.pt", "before"),
                ("last.pt", "after"), ("state", "before"), ("state", "after")]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    run = make_tiny_world(tmp_path_factory.mktemp("unbroken") / "run")
    _train(run, run / "controller")
    return _outcome(run / "controller")


@pytest.mark.parametrize("what,when", WRITE_POINTS)
def test_kill_at_each_write_point_then_resume_equals_an_unbroken_run(tmp_path, monkeypatch, unbroken, what,
                                                                    when):
    run = make_tiny_world(tmp_path / "run")
    out = run / "controller"
    kill_generation = 2  # an eval generation, so best.pt is written too

    def killing(write, label_of):
        def wrapper(*args, **kwargs):
            label = label_of(*args)
            armed = label == what and _generation_being_written(out) == kill_generation
            if armed and when == "before":
                raise Killed
            result = write(*args, **kwargs)
            if armed:
                raise Killed
            return result
        return wrapper

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(CsvLog, "append", killing(CsvLog.append, lambda log, row: "log"))
        patch.setattr(train, "save_checkpoint", killing(train.save_checkpoint, lambda path, *a: path.name))
        patch.setattr(CMAES, "save", killing(CMAES.save, lambda es, *a: "state"))
        _train(run, out)

    _train(run, out)
    resumed = _outcome(out)
    assert resumed["rows"] == unbroken["rows"]
    assert resumed["extra"] == unbroken["extra"]
    _assert_same_state(resumed["es"], unbroken["es"])
    for name in ("best.pt", "last.pt"):
        assert torch.equal(resumed[name], unbroken[name]), name


def _generation_being_written(out) -> int:
    """The committed generation + 1: the one whose files are being written now."""
    if not (out / "es_state.npz").exists():
        return 1
    return CMAES.load(out / "es_state.npz")[0].generation + 1
