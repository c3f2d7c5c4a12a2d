"""The mask reader: which actions are valid, read off V's latent z (bin packing's levels and item).

In the real env the valid actions come from the env. In the dream there is only z, so the dream asks
this small MLP, fit by stage 03 on the series' z and the masks of the real frames they encode. It is
trained on sampled z (mu + sigma * eps), the kind of z the dream produces, and reports how often it
reads a whole mask right on held-out episodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoints import load_checkpoint, load_state_dict_checked, save_checkpoint

MASK_READER_FILE = "mask_reader.pt"


class MaskReader(nn.Module):
    def __init__(self, z_size: int, action_size: int, hidden_size: int = 256) -> None:
        super().__init__()
        self.z_size, self.action_size, self.hidden_size = z_size, action_size, hidden_size
        self.net = nn.Sequential(nn.Linear(z_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, hidden_size),
                                 nn.ReLU(), nn.Linear(hidden_size, action_size))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (..., A) of 'action a is valid'."""
        return self.net(z)

    @torch.no_grad()
    def valid(self, z: torch.Tensor) -> torch.Tensor:
        """Boolean mask (..., A); action 0 is taken to be always valid only if the data said so."""
        return self.forward(z) > 0

    @property
    def config(self) -> dict[str, int]:
        return {"z_size": self.z_size, "action_size": self.action_size, "hidden_size": self.hidden_size}


def fit_mask_reader(mu: np.ndarray, logvar: np.ndarray, masks: np.ndarray, val_rows: np.ndarray, epochs: int = 8,
                    batch_size: int = 1024, lr: float = 1e-3, seed: int = 0) -> tuple[MaskReader, dict[str, float]]:
    """Fit on the rows not in val_rows; returns the reader and its held-out accuracy (per action, whole mask)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mu_t, logvar_t = torch.from_numpy(mu.astype(np.float32)), torch.from_numpy(logvar.astype(np.float32))
    target = torch.from_numpy(masks.astype(np.float32))
    is_val = torch.zeros(len(mu), dtype=torch.bool)
    is_val[torch.as_tensor(val_rows, dtype=torch.long)] = True
    train = torch.nonzero(~is_val).squeeze(-1)
    reader = MaskReader(mu.shape[1], masks.shape[1])
    optimizer = torch.optim.Adam(reader.parameters(), lr=lr)
    for _ in range(epochs):
        order = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            z = mu_t[rows] + torch.exp(logvar_t[rows] / 2) * torch.randn(len(rows), mu.shape[1], generator=generator)
            loss = F.binary_cross_entropy_with_logits(reader(z), target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    reader.eval()
    rows = torch.nonzero(is_val).squeeze(-1) if bool(is_val.any()) else train
    z = mu_t[rows] + torch.exp(logvar_t[rows] / 2) * torch.randn(len(rows), mu.shape[1], generator=generator)
    right = reader.valid(z) == (target[rows] > 0)
    stats = {"action_accuracy": float(right.float().mean()), "mask_accuracy": float(right.all(-1).float().mean()),
             "rows": int(len(rows))}
    return reader, stats


def save_mask_reader(path: str | Path, reader: MaskReader, stats: dict[str, Any], vae_sha256: str) -> None:
    save_checkpoint(path, "mask_reader", reader.config, reader, extra={"stats": stats, "vae_sha256": vae_sha256})


def load_mask_reader(path: str | Path, device: torch.device | str = "cpu") -> MaskReader:
    state = load_checkpoint(path, "mask_reader")
    reader = MaskReader(**state["config"])
    load_state_dict_checked(reader, state, path)
    reader.vae_sha256 = state.get("extra", {}).get("vae_sha256")
    return reader.to(device).eval()
