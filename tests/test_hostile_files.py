"""Loading anything from a run folder never runs code: hostile files are refused with one line, no side effect.

Every payload here is first shown to be live (plain `pickle.loads` runs it and creates its marker file), so a
refusal means the loader stopped it, not that the payload was broken.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from world_fixture import make_tiny_world

from common.checkpoints import load_checkpoint
from common.errors import DataError
from control.cmaes import CMAES
from data.episodes import load_episode
from data.rollouts import ROLLOUT_SCHEMA
from data.series import SERIES_SCHEMA, load_initial_z

MARKER = "PWNED"


def _code(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def getattr_chain(marker: Path) -> bytes:
    """getattr(copyreg._reconstructor, '__globals__') -> __builtins__ -> eval(code), built from allowed names."""
    g = b"cbuiltins\ngetattr\n"
    builtins_dict = g + b"(" + g + b"(ccopyreg\n_reconstructor\nV__globals__\ntRVget\ntR(V__builtins__\ntR"
    return g + b"(" + builtins_dict + b"Vget\ntR(Veval\ntR(V" + _code(marker).encode() + b"\ntR."


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def reduce_system(marker: Path) -> bytes:
    return pickle.dumps(_System(marker))


def numpy_function(marker: Path) -> bytes:
    """A numpy function (np.save) called from a pickle: writes <marker>.npy."""
    return b"cnumpy\nsave\n(V" + str(marker).encode() + b"\nI1\ntR."


def object_array_npz(marker: Path) -> bytes:
    """An .npz whose member is an object array holding a __reduce__ payload."""
    array = np.empty(1, dtype=object)
    array[0] = _System(marker)
    member = io.BytesIO()
    np.lib.format.write_array(member, array, allow_pickle=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in ("meta", "obs", "mu", "logvar", "action", "reward", "done"):
            zf.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


PICKLES = {"getattr chain": getattr_chain, "__reduce__ os.system": reduce_system, "numpy.save": numpy_function}
PAYLOADS = {**PICKLES, "object array in npz": object_array_npz}


def _markers(marker: Path) -> list[Path]:
    return [marker, marker.with_name(marker.name + ".npy")]


@pytest.mark.parametrize("name", list(PICKLES))
def test_payloads_are_live(tmp_path, name):
    marker = tmp_path / MARKER
    pickle.loads(PICKLES[name](marker))
    assert any(m.exists() for m in _markers(marker))


def _refused(load, path: Path, marker: Path) -> str:
    with pytest.raises(DataError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert not any(m.exists() for m in _markers(marker)), "the payload ran"
    return message


LOADERS = {
    "CMA-ES state": CMAES.load,
    "checkpoint": lambda p: load_checkpoint(p, "controller"),
    "rollout episode": lambda p: load_episode(p, ROLLOUT_SCHEMA),
    "series episode": lambda p: load_episode(p, SERIES_SCHEMA),
    "initial_z": load_initial_z,
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_every_loader_refuses_every_payload(tmp_path, loader, payload):
    marker = tmp_path / MARKER
    path = tmp_path / "hostile.file"
    path.write_bytes(PAYLOADS[payload](marker))
    _refused(LOADERS[loader], path, marker)


def test_checkpoint_with_a_reduce_payload_inside_a_real_torch_file_is_refused(tmp_path):
    marker = tmp_path / MARKER
    path = tmp_path / "last.pt"
    torch.save({"kind": "controller", "model": {}, "config": _System(marker)}, path)
    _refused(lambda p: load_checkpoint(p, "controller"), path, marker)


def _real_state(tmp_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    es = CMAES(5, 0.1, 6, seed=0)
    for _ in range(3):
        x = es.ask()
        es.tell(x, -np.sum(x**2, axis=1))
    es.save(tmp_path / "real.npz", {"progress": {"generation": 3}})
    with np.load(tmp_path / "real.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(bytes(arrays.pop("meta")).decode()), arrays


def _write_state(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    return path


TAMPERED = {
    # an attribute outside the list (a function-valued one, or a dunder)
    "unknown attribute": lambda m, a: m["state"].update({"sm.randn": 1.0}),
    "dunder attribute": lambda m, a: m["state"].update({"__class__": 1}),
    # a string where cma might later eval it, a dict where a number belongs
    "string value": lambda m, a: m["state"].update({"sigma": _code(Path(MARKER))}),
    "dict value": lambda m, a: m["state"].update({"countiter": {"a": 1}}),
    "array of the wrong shape": lambda m, a: a.update({"sm.C": np.zeros((3, 3))}),
    "text array": lambda m, a: a.update({"mean": np.array(["a"] * 5)}),
    "array missing": lambda m, a: a.pop("mean"),
    "negative popsize": lambda m, a: m.update({"popsize": -1}),
    "huge dimension": lambda m, a: m.update({"num_params": 10**12}),
    "other format": lambda m, a: m.update({"format": "something else"}),
    "rng state of the wrong size": lambda m, a: a.update({"rng.keys": np.zeros(10, np.uint32)}),
    "starting mean of the wrong size": lambda m, a: a.update({"x0": np.ones(4)}),
    "starting mean not finite": lambda m, a: a.update({"x0": np.full(5, np.nan)}),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_tampered_state_is_refused(tmp_path, name):
    meta, arrays = _real_state(tmp_path)
    TAMPERED[name](meta, arrays)
    _refused(CMAES.load, _write_state(tmp_path / "es_state.npz", meta, arrays), tmp_path / MARKER)


def test_real_state_round_trips_and_truncated_state_is_refused(tmp_path):
    meta, arrays = _real_state(tmp_path)
    es, extra = CMAES.load(_write_state(tmp_path / "ok.npz", meta, arrays))
    assert es.generation == 3 and extra == {"progress": {"generation": 3}}
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    _refused(CMAES.load, tmp_path / "cut.npz", tmp_path / MARKER)


def test_state_of_another_dimension_is_refused_before_it_is_built(tmp_path):
    meta, arrays = _real_state(tmp_path)
    meta["num_params"] = 10**6  # a 10^6 x 10^6 covariance if it were built
    message = _refused(lambda p: CMAES.load(p, num_params=5), _write_state(tmp_path / "big.npz", meta, arrays),
                       tmp_path / MARKER)
    assert "num_params 1000000, this run's controller has 5" in message


def test_stage_05_refuses_an_old_pickled_state_in_one_line(tmp_path):
    from conftest import assert_one_line_error, run_stage

    run = make_tiny_world(tmp_path / "run")
    (run / "controller").mkdir()
    (run / "controller" / "es_state.pkl").write_bytes(getattr_chain(tmp_path / MARKER))
    result = run_stage("05_train_controller.py", "--logdir", run, "--pop_size", 4, "--num_rollouts", 1,
                       "--max_generations", 1, "--calibration_episodes", 0, check=False)
    assert_one_line_error(result, "es_state.pkl", "--new_model")
    assert not (tmp_path / MARKER).exists()
