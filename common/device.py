"""The --device flag: CPU by default where no GPU exists, never a hard GPU requirement."""

from __future__ import annotations

import torch

from common.errors import UserError

DEVICE_HELP = "auto = cuda if a GPU is available, else cpu; cuda[:N] fails clearly without a GPU"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: expected auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    return device
