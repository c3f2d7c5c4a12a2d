"""C: the paper's linear controller, a = tanh(W x [+ b]), evaluated for a whole population at once.

Parameter layouts follow the reference (spec §4) so saved vectors mean the same thing:
- without bias (Doom): W of shape (input_size, output_size), row-major; 1,088 params for [z64, c512, h512] -> 1.
- with bias (CarRacing): output_size biases first, then W row-major; 867 params for [z32, h256] -> 3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ControllerConfig:
    input_size: int
    output_size: int
    bias: bool
    inputs: str  # "z", "zh" or "zch": which of z, c, h feed the controller, in that order

    @property
    def num_params(self) -> int:
        return self.input_size * self.output_size + (self.output_size if self.bias else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def controller_inputs(config: ControllerConfig, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Concatenate [z, c, h] (Doom), [z, h] (CarRacing) or [z] alone (bin packing) along the last axis."""
    parts = {"z": (z,), "zh": (z, h), "zch": (z, c, h)}[config.inputs]
    return torch.cat(parts, dim=-1)


def unpack(config: ControllerConfig, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(..., num_params) flat vectors -> W (..., input, output) and b (..., output) or None."""
    if params.shape[-1] != config.num_params:
        raise ValueError(f"controller expects {config.num_params} params, got {params.shape[-1]}")
    lead = params.shape[:-1]
    offset = config.output_size if config.bias else 0
    weight = params[..., offset:].reshape(*lead, config.input_size, config.output_size)
    bias = params[..., :offset] if config.bias else None
    return weight, bias


def act(config: ControllerConfig, params: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """tanh outputs for inputs (N, input_size); params is one vector (P,) or one per row (N, P)."""
    weight, bias = unpack(config, params.to(inputs.dtype))
    if weight.dim() == 2:
        out = inputs @ weight
    else:
        out = torch.bmm(inputs.unsqueeze(1), weight).squeeze(1)
    if bias is not None:
        out = out + bias
    return torch.tanh(out)
