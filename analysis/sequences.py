"""Running M over a latent sequence: teacher-forced on real latents, then open-loop on its own samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.mdnrnn import MDNRNN, sample_next_z


@dataclass
class Rollout:
    """predicted[t] is M's z for step t + 1, made after seeing step t (and so are logpi[t], components[t])."""

    predicted: torch.Tensor  # (N, Z)
    logpi: torch.Tensor  # (N, Z, K): the model's log mixture weights (before temperature)
    components: torch.Tensor  # (N, Z): the component each z-dimension was sampled from


@torch.no_grad()
def rollout(mdnrnn: MDNRNN, context: torch.Tensor, actions: torch.Tensor, tau: float,
            generator: torch.Generator | None = None, component: int | None = None,
            expected: bool = False) -> Rollout:
    """Step M with actions (N, A): inputs are the given latents context[t] while t < len(context)
    (teacher forcing, e.g. to warm the LSTM up), then M's own previous prediction (open loop).

    `component` forces that mixture component for every step and dimension ("committed" dreams);
    tau = 0 takes the most likely component's mean, or with `expected` the mixture's mean sum_k pi_k mu_k
    (the best guess under squared error; the top component's mean can sit far off where M spreads weight).
    """
    steps = actions.shape[0]
    device = next(mdnrnn.parameters()).device
    state = mdnrnn.initial_state(1, device)
    z = context[:1].to(device).float()
    predicted, logpis, components = [], [], []
    for t in range(steps):
        if t < len(context):
            z = context[t:t + 1].to(device).float()
        restart = torch.full((1,), 1.0 if t == 0 else 0.0, device=device)
        out, state = mdnrnn.step(z, actions[t:t + 1].to(device).float(), state, restart)
        z, index = sample_next_z(out, tau, generator, component=component, return_components=True)
        if expected and tau == 0 and component is None:
            z = (out.logpi.exp() * out.mu).sum(-1)
        predicted.append(z[0])
        logpis.append(out.logpi[0])
        components.append(index[0])
    return Rollout(torch.stack(predicted), torch.stack(logpis), torch.stack(components))
