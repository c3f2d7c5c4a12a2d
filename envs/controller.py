"""The paper's controller fitted to an env: its shape from the env's spec, its tanh outputs as the env's actions.

models/controller.py knows the linear controller for any shape; which inputs, bias and action bounds an env
asks for is the env's business, so that mapping lives here, beside the specs.
"""

from __future__ import annotations

import torch

from envs.registry import EnvSpec
from models.controller import ControllerConfig


def controller_config(spec: EnvSpec, z_size: int, hidden_size: int) -> ControllerConfig:
    """The controller the paper uses for this env, given V's z size and M's hidden size."""
    input_size = z_size + hidden_size * {"z": 0, "zh": 1, "zch": 2}[spec.controller_inputs]
    return ControllerConfig(input_size, spec.action_dim, spec.controller_bias, spec.controller_inputs)


def model_actions(spec: EnvSpec, raw: torch.Tensor) -> torch.Tensor:
    """tanh controller outputs -> model actions (the torch twin of EnvSpec.controller_to_action)."""
    scale, offset = (torch.as_tensor(a, device=raw.device, dtype=raw.dtype) for a in spec.controller_affine())
    low = torch.as_tensor(spec.action_low, device=raw.device, dtype=raw.dtype)
    high = torch.as_tensor(spec.action_high, device=raw.device, dtype=raw.dtype)
    return torch.clamp(raw * scale + offset, low, high)


def canonical_actions(spec: EnvSpec, actions: torch.Tensor) -> torch.Tensor:
    """What M was trained on for these model actions (one-hot for discrete envs, as recorded)."""
    if spec.action_kind == "discrete":
        return torch.nn.functional.one_hot(actions.argmax(-1), actions.shape[-1]).to(actions.dtype)
    if spec.action_kind == "binary":
        return (actions > 0).to(actions.dtype)
    low = torch.as_tensor(spec.action_low, device=actions.device, dtype=actions.dtype)
    high = torch.as_tensor(spec.action_high, device=actions.device, dtype=actions.dtype)
    return torch.clamp(actions, low, high)
