"""V: the convolutional VAE that compresses each 64x64 RGB frame into a small latent z.

Layer sizes, activations and the loss follow the reference ConvVAE exactly (spec section 2), so the
parameter count matches the paper: 4,348,547 at z=32 and 4,446,915 at z=64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

IMAGE_SIZE = 64
ENCODED_FEATURES = 256 * 2 * 2  # the last conv leaves a 2x2x256 map


@dataclass(frozen=True)
class VAEConfig:
    """Everything needed to rebuild the network; stored in checkpoints and checked on load."""

    z_size: int = 64


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str | None = None,
                     channels_last: bool = False) -> torch.Tensor:
    """Turn stored frames (..., 64, 64, 3) into the float (B, 3, 64, 64) layout the network expects.

    uint8 frames are scaled to [0, 1]; float frames are assumed to be in [0, 1] already. A single
    frame (64, 64, 3) becomes a batch of one. `channels_last` keeps the stored pixel order (for a model
    in torch.channels_last, the fast layout for convolutions on a GPU) instead of copying to NCHW.
    """
    if isinstance(frames, torch.Tensor) and device is not None:
        x = frames.to(device, non_blocking=True)  # from pinned memory: the copy overlaps the GPU's work
    else:
        x = torch.as_tensor(frames, device=device)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or tuple(x.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"expected frames shaped (B, 64, 64, 3), got {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2)  # (B, 3, 64, 64) viewed over (B, 64, 64, 3) memory: channels-last already
    return x if channels_last else x.contiguous()


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """The way back: V's output (B, 3, 64, 64), or one (3, 64, 64), in [0, 1] -> uint8 frames as stored."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def _tf_glorot_uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(tensor, -limit, limit)


class ConvVAE(nn.Module):
    """The paper's V model; all convolutions are 'valid' with stride 2."""

    def __init__(self, z_size: int = 64) -> None:
        super().__init__()
        self.z_size = z_size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),  # -> 31x31
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),  # -> 14x14
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),  # -> 6x6
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),  # -> 2x2
            nn.Flatten(),
        )  # fmt: skip
        self.fc_mu = nn.Linear(ENCODED_FEATURES, z_size)
        self.fc_logvar = nn.Linear(ENCODED_FEATURES, z_size)
        self.fc_decode = nn.Linear(z_size, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),  # -> 5x5
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),  # -> 13x13
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),  # -> 30x30
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),  # -> 64x64
        )  # fmt: skip
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """TF1 layer defaults (Glorot-uniform kernels, zero biases), as the reference was trained with."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                receptive = module.weight[0][0].numel() if module.weight.dim() > 2 else 1
                # Conv: (out, in, k, k); ConvTranspose: (in, out, k, k); Glorot is symmetric in the two.
                fan_a = module.weight.shape[0] * receptive
                fan_b = module.weight.shape[1] * receptive
                _tf_glorot_uniform_(module.weight, fan_a, fan_b)
                nn.init.zeros_(module.bias)

    @property
    def config(self) -> dict[str, Any]:
        return asdict(VAEConfig(z_size=self.z_size))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConvVAE:
        return cls(**asdict(VAEConfig(**config)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior (mu, logvar); downstream stages store both, not a sample."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps; the controller and M see samples, never mu alone."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc_decode(z).view(-1, 1024, 1, 1)
        return self.decoder(h)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        return self.decode(z), mu, logvar


def vae_loss(
    recon: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_tolerance: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference loss: per-sample summed squared error plus a per-sample KL floored at kl_tolerance * z_size.

    The floor stops the KL from being squeezed below ~0.5 nat per dimension, which is why the
    reference logs show KL pinned at 32 for z=64. Returns (total, recon_loss, kl_loss), all batch means.
    """
    recon_loss = (recon - x).pow(2).flatten(1).sum(dim=1).mean()
    kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    kl = torch.clamp(kl, min=kl_tolerance * mu.shape[-1]).mean()
    return recon_loss + kl, recon_loss, kl
