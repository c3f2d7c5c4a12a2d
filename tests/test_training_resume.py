"""Stages 02 and 04 resume exactly: a kill at every write point, or a Ctrl-C that lands inside an optimizer
step, then a rerun, ends with the weights (bit for bit), optimizer, progress and losses of an unbroken run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from test_series import doom_rollouts  # noqa: F401 - fixture: 3 real Doom episodes
from test_train_mdnrnn import write_series

from common.csvlog import CsvLog, read_csv
from training import trainer as trainer_module
from training.mdnrnn import MDNTrainConfig, train_mdnrnn
from training.vae import VAETrainConfig, train_vae

TIME_FIELDS = {"seconds", "epoch_seconds", "img_per_s", "timesteps_per_s"}


@pytest.fixture(scope="module")
def series_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("series") / "series"
    write_series(folder, [30, 25, 17, 40, 12, 20])
    return folder


def _vae(inputs: Path, out: Path):
    cfg = VAETrainConfig(input_folder=str(inputs), savefolder=str(out), epochs=2, batch_size=4, max_frames=16,
                         val_max_frames=8, z_size=8, num_threads=1, device="cpu", checkpoint_every_steps=3,
                         progress=False)
    return lambda: train_vae(cfg, log=lambda *a: None)


def _mdnrnn(inputs: Path, out: Path):
    cfg = MDNTrainConfig(input_folder=str(inputs), savefolder=str(out), epochs=2, hidden=8, seq_len=8,
                         batch_size=4, num_mixtures=2, num_threads=1, device="cpu", checkpoint_every_steps=3,
                         progress=False)
    return lambda: train_mdnrnn(cfg, log=lambda *a: None)


STAGES = {"02 vae": (_vae, "doom_rollouts"), "04 mdnrnn": (_mdnrnn, "series_folder")}


def _outcome(out: Path) -> dict:
    def checkpoint(name: str) -> dict:
        state = torch.load(out / name, map_location="cpu", weights_only=True)
        return {"model": state["model"], "optimizer": state["optimizer"],
                "progress": {k: v for k, v in state["progress"].items() if k not in TIME_FIELDS}}
    rows = [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in read_csv(out / "losses.csv")]
    return {"last": checkpoint("last.pt"), "best": checkpoint("best.pt"), "rows": rows}


def _assert_same(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and where.startswith(".rows"):
        assert a == pytest.approx(b, rel=1e-6), where  # loss sums: the flush points may differ in the last bit
    elif isinstance(a, str) and where.startswith(".rows") and a and a[0] in "-0123456789":
        assert float(a) == pytest.approx(float(b), rel=1e-5), where
    else:
        assert a == b, where


class Killed(BaseException):
    """Stands for SIGKILL: nothing runs on the way out (atomic writers drop their temp file, as a kill would)."""


def _with_writes_recorded(monkeypatch, on_write):
    """Route every checkpoint and CSV row of the trainers through on_write(label, write)."""
    save, append = trainer_module.save_checkpoint, CsvLog.append
    monkeypatch.setattr(trainer_module, "save_checkpoint",
                        lambda path, *a, **k: on_write(Path(path).name, lambda: save(path, *a, **k)))
    monkeypatch.setattr(CsvLog, "append", lambda log, row: on_write(log.path.name, lambda: append(log, row)))


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_at_every_write_point_then_rerun_equals_an_unbroken_run(stage, tmp_path, monkeypatch, request):
    make, inputs = STAGES[stage]
    inputs = request.getfixturevalue(inputs)
    writes: list[str] = []
    with monkeypatch.context() as patch:
        _with_writes_recorded(patch, lambda label, write: (writes.append(label), write())[1])
        make(inputs, tmp_path / "unbroken")()
    unbroken = _outcome(tmp_path / "unbroken")
    assert {"last.pt", "best.pt", "losses.csv"} <= set(writes) and len(writes) >= 6, writes

    for index, label in enumerate(writes):
        for when in ("before", "after"):
            out = tmp_path / f"{index}_{when}"
            count = iter(range(len(writes)))

            def killing(label, write, index=index, when=when, count=count):
                armed = next(count) == index
                if armed and when == "before":
                    raise Killed
                write()
                if armed:
                    raise Killed
            with monkeypatch.context() as patch, pytest.raises(Killed):
                _with_writes_recorded(patch, killing)
                make(inputs, out)()
            make(inputs, out)()
            _assert_same(_outcome(out), unbroken, f" kill {when} write {index} ({label})")


# Steps with at least one step since the last checkpoint (else nothing is saved on the way out), in epoch 1 and 2
@pytest.mark.parametrize("stage,at_step,stop", [("02 vae", 2, signal.SIGINT), ("02 vae", 6, signal.SIGINT),
                                                ("04 mdnrnn", 2, signal.SIGINT), ("04 mdnrnn", 8, signal.SIGTERM)])
def test_ctrl_c_inside_an_optimizer_step_then_rerun_equals_an_unbroken_run(stage, at_step, stop, tmp_path,
                                                                           monkeypatch, request):
    """The signal lands right after Adam has updated the weights, before the trainer counts the step.

    SIGTERM is handled as the stages' run_main sets it up: like Ctrl-C."""
    make, inputs = STAGES[stage]
    inputs = request.getfixturevalue(inputs)
    make(inputs, tmp_path / "unbroken")()
    unbroken = _outcome(tmp_path / "unbroken")

    step, calls = torch.optim.Adam.step, []

    def interrupted_step(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == at_step:
            signal.raise_signal(stop)
        return result
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(torch.optim.Adam, "step", interrupted_step)
            make(inputs, tmp_path / "run")()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(calls) == at_step  # stopped at the next safe point, before another step
    saved = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert saved["progress"]["step"] == at_step  # the weights and the counter agree
    make(inputs, tmp_path / "run")()
    _assert_same(_outcome(tmp_path / "run"), unbroken)
