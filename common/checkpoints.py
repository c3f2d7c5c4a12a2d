"""Checkpoints: one `.pt` dict per model, written atomically, loaded with weights_only=True.

Layout: {"kind": "vae" | "mdnrnn" | "controller", "format": 1, "config": {...}, "model": state_dict,
"optimizer": state_dict | None, "progress": {...}, "extra": {...}}. `config` holds everything needed to
rebuild the model plus what it was trained for (env, z size...), so a stage can refuse a checkpoint made
for another configuration. weights_only=True means loading a checkpoint can never run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from common.atomic import atomic_path
from common.errors import DataError

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, kind: str, config: dict[str, Any], model: torch.nn.Module | dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, progress: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    state = {
        "kind": kind,
        "format": FORMAT_VERSION,
        "config": dict(config),
        "model": {k: v.detach().cpu() for k, v in _state_dict(model).items()},
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "progress": dict(progress or {}),
        "extra": dict(extra or {}),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, kind: str, expect: dict[str, Any] | None = None,
                    hint: str = "") -> dict[str, Any]:
    """Load and check a checkpoint; DataError (naming the file) if unreadable, foreign or mismatched.

    `expect` lists config entries that must match (e.g. {"env": "doom", "z_size": 64}); `hint` is
    appended to a mismatch message (e.g. "use --new_model to start over").
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails on garbage in many ways (KeyError, UnpicklingError...)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: corrupt or not a checkpoint ({first_line[:200]})") from None
    if not isinstance(state, dict) or "kind" not in state or "model" not in state:
        raise DataError(f"{path}: not a checkpoint of this project")
    if state["kind"] != kind:
        raise DataError(f"{path}: is a {state['kind']} checkpoint, expected {kind}")
    config = state.get("config", {})
    for key, value in (expect or {}).items():
        if key in config and config[key] != value:
            suffix = f"; {hint}" if hint else ""
            raise DataError(f"{path}: {kind} checkpoint has {key}={config[key]!r}, "
                            f"this run needs {key}={value!r}{suffix}")
    return state


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """load_state_dict, but a shape/key mismatch becomes a DataError naming the file."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        first_line = str(e).strip().splitlines()[0]
        raise DataError(f"{path}: weights do not fit the model ({first_line[:200]})") from None


def _state_dict(model: torch.nn.Module | dict[str, Any]) -> dict[str, Any]:
    return model if isinstance(model, dict) else model.state_dict()
