"""M: the MDN-RNN that predicts a distribution over the next latent z (and, for Doom, whether the episode ends).

Follows the reference (spec section 3): an LSTM with a single bias vector and +1 forget bias, whose hidden
state feeds a linear head laid out per z-dimension as [K logits | K means | K log-sigmas], with the Doom
done logit in column 0. The mixture is factored: each z-dimension has its own K-component 1-D GMM.

The same cell serves teacher-forced training over whole sequences (`forward`) and one-step rollouts
in the dream or real env (`step`), so both paths always share weights and restart semantics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (B, hidden_size)

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class MDNOutput(NamedTuple):
    """Head outputs; shapes are (..., Z, K) for the mixture and (...) for the scalars.

    `...` is (B, T) from `MDNRNN.forward` and (B,) from `MDNRNN.step`.
    """

    logpi: torch.Tensor  # log mixture weights, log-softmax normalized over K
    mu: torch.Tensor
    logsigma: torch.Tensor
    done_logit: torch.Tensor | None  # only when predict_done
    reward: torch.Tensor | None  # only when predict_reward


@dataclass(frozen=True)
class MDNRNNConfig:
    """Everything needed to rebuild the network; stored in checkpoints and checked on load."""

    z_size: int = 64
    action_size: int = 1
    hidden_size: int = 512
    num_mixtures: int = 5
    predict_done: bool = True
    predict_reward: bool = False


# The two sizes used in the paper (spec 3.2 and 3.3).
DONE_POS_WEIGHT = 10.0  # the reference's restart_factor: done positives weigh x10 in the loss

DOOM_CONFIG = MDNRNNConfig(z_size=64, action_size=1, hidden_size=512, num_mixtures=5, predict_done=True)
CARRACING_CONFIG = MDNRNNConfig(z_size=32, action_size=3, hidden_size=256, num_mixtures=5, predict_done=False)


def _uniform_(tensor: torch.Tensor, limit: float) -> None:
    nn.init.uniform_(tensor, -limit, limit)


class SingleBiasLSTM(nn.Module):
    """torch.nn.LSTM with one bias vector, like TF's cell, so the parameter count matches the paper.

    nn.LSTM carries two biases (b_ih and b_hh), which would add 4H parameters. Here the LSTM has no
    biases and sees a constant 1.0 appended to its input, so the last column of `weight_ih_l0` *is*
    the single bias: 4H * (input + 1) + 4H * H parameters, as TF's (input + H, 4H) kernel plus bias.
    Whole sequences run in nn.LSTM's fused kernels (oneDNN on CPU, cuDNN on GPU) instead of a Python
    loop over time (bench/bench_mdnrnn.py compares them); `step` computes the same cell from the same
    weights for one-step rollouts.
    Gates use torch's order (i, f, g, o); porting TF weights (order i, j, f, o) means reordering
    the blocks, transposing, and adding TF's run-time forget_bias to the f block of the bias column.
    """

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.forget_bias = forget_bias
        self.lstm = nn.LSTM(input_size + 1, hidden_size, bias=False, batch_first=True)
        self.reset_parameters()

    @property
    def weight_ih(self) -> torch.Tensor:
        return self.lstm.weight_ih_l0[:, :-1]

    @property
    def weight_hh(self) -> torch.Tensor:
        return self.lstm.weight_hh_l0

    @property
    def bias(self) -> torch.Tensor:
        """The single bias: the weight column of the constant-1 input."""
        return self.lstm.weight_ih_l0[:, -1]

    def reset_parameters(self) -> None:
        """TF1 defaults: Glorot-uniform over the joint (input+H, 4H) kernel and over the 1-D bias.

        TF adds forget_bias=1.0 at run time; with a learnable torch bias the same effect is an
        initial +1.0 on the forget block.
        """
        hidden = self.hidden_size
        kernel_limit = math.sqrt(6.0 / (self.input_size + hidden + 4 * hidden))
        with torch.no_grad():
            _uniform_(self.lstm.weight_ih_l0, kernel_limit)
            _uniform_(self.lstm.weight_hh_l0, kernel_limit)
            bias = self.lstm.weight_ih_l0[:, -1]
            bias.uniform_(-math.sqrt(6.0 / (2 * 4 * hidden)), math.sqrt(6.0 / (2 * 4 * hidden)))
            bias[hidden : 2 * hidden] += self.forget_bias

    def forward(self, x: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """Run x (B, T, input) from state (h, c); return all hidden states (B, T, H) and the last state."""
        ones = torch.ones(*x.shape[:-1], 1, device=x.device, dtype=x.dtype)
        h, c = state
        hidden, (h, c) = self.lstm(torch.cat([x, ones], dim=-1), (h.unsqueeze(0), c.unsqueeze(0)))
        return hidden, (h.squeeze(0), c.squeeze(0))

    def step(self, x: torch.Tensor, state: LSTMState) -> LSTMState:
        """One step for x (B, input): the nn.LSTM cell written out, without nn.LSTM's per-call overhead."""
        h, c = state
        gates = F.linear(x, self.weight_ih, self.bias) + F.linear(h, self.weight_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class MDNRNN(nn.Module):
    """The paper's M model. State is (h, c); a restart flag of 1 zeroes it before that step runs."""

    def __init__(
        self,
        z_size: int,
        action_size: int,
        hidden_size: int,
        num_mixtures: int = 5,
        predict_done: bool = False,
        predict_reward: bool = False,
    ) -> None:
        super().__init__()
        self.z_size = z_size
        self.action_size = action_size
        self.hidden_size = hidden_size
        self.num_mixtures = num_mixtures
        self.predict_done = predict_done
        self.predict_reward = predict_reward
        # Doom feeds the restart flag as an input feature too (66 inputs for z=64, action=1).
        self.input_size = z_size + action_size + (1 if predict_done else 0)
        self._mdn_offset = 1 if predict_done else 0
        self.output_size = self._mdn_offset + z_size * num_mixtures * 3 + (1 if predict_reward else 0)
        self.cell = SingleBiasLSTM(self.input_size, hidden_size)
        self.head = nn.Linear(hidden_size, self.output_size)
        self._reset_head()

    def _reset_head(self) -> None:
        # Reference uses tf.get_variable for both, i.e. Glorot-uniform for the weight and the 1-D bias.
        _uniform_(self.head.weight, math.sqrt(6.0 / (self.hidden_size + self.output_size)))
        _uniform_(self.head.bias, math.sqrt(6.0 / (2 * self.output_size)))

    @property
    def config(self) -> dict[str, Any]:
        return asdict(
            MDNRNNConfig(
                z_size=self.z_size,
                action_size=self.action_size,
                hidden_size=self.hidden_size,
                num_mixtures=self.num_mixtures,
                predict_done=self.predict_done,
                predict_reward=self.predict_reward,
            )
        )

    @classmethod
    def from_config(cls, config: dict[str, Any] | MDNRNNConfig) -> MDNRNN:
        if not isinstance(config, MDNRNNConfig):
            config = MDNRNNConfig(**config)
        return cls(**asdict(config))

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> LSTMState:
        param = self.head.weight
        device = param.device if device is None else device
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=param.dtype)
        return zeros, zeros.clone()

    def _cell_inputs(self, z: torch.Tensor, action: torch.Tensor, restart: torch.Tensor | None) -> torch.Tensor:
        if action.dim() == z.dim() - 1:  # scalar actions given without a trailing axis
            action = action.unsqueeze(-1)
        parts = [z, action.to(z.dtype)]
        if self.predict_done:
            flag = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype) if restart is None else restart
            parts.append(flag.to(z.dtype).unsqueeze(-1))
        return torch.cat(parts, dim=-1)

    def split_head(self, raw: torch.Tensor) -> MDNOutput:
        """Cut the flat head output into named parts, following the reference column layout."""
        k = self.num_mixtures
        start, stop = self._mdn_offset, self._mdn_offset + self.z_size * k * 3
        mdn = raw[..., start:stop].reshape(*raw.shape[:-1], self.z_size, 3 * k)
        logits, mu, logsigma = mdn.split(k, dim=-1)
        return MDNOutput(
            logpi=F.log_softmax(logits, dim=-1),
            mu=mu,
            logsigma=logsigma,
            done_logit=raw[..., 0] if self.predict_done else None,
            reward=raw[..., -1] if self.predict_reward else None,
        )

    def forward(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        restart: torch.Tensor | None = None,
        state: LSTMState | None = None,
    ) -> tuple[MDNOutput, LSTMState]:
        """Teacher-forced pass over (B, T, ...) inputs; returns per-step outputs and the final state.

        restart (B, T) marks episode starts: where it is 1 the state is zeroed before step t, which is
        how Doom chunks of a concatenated episode stream stay separated (spec 3.2).
        """
        batch, steps = z.shape[:2]
        x = self._cell_inputs(z, action, restart)
        h, c = self.initial_state(batch, z.device) if state is None else state
        if restart is None:
            hidden, (h, c) = self.cell(x, (h, c))
            return self.split_head(self.head(hidden)), (h, c)
        # nn.LSTM cannot zero its state mid-sequence, so cut the time axis where any row restarts
        # (after t = 0) and zero those rows between the pieces. Windows that start an episode at
        # t = 0 and never restart later (how stage 04 batches) run as one piece.
        keep = (1.0 - restart.to(x.dtype)).unsqueeze(-1)
        cuts = [0, *(torch.nonzero(restart[:, 1:].any(dim=0)).flatten() + 1).tolist(), steps]
        pieces = []
        for start, stop in zip(cuts[:-1], cuts[1:]):
            h, c = h * keep[:, start], c * keep[:, start]
            hidden, (h, c) = self.cell(x[:, start:stop], (h, c))
            pieces.append(hidden)
        hidden = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return self.split_head(self.head(hidden)), (h, c)

    def step(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        state: LSTMState | None = None,
        restart: torch.Tensor | None = None,
    ) -> tuple[MDNOutput, LSTMState]:
        """One step for rollouts: z (B, Z), action (B, A) or (B,), restart (B,); outputs are (B, Z, K)."""
        h, c = self.advance(z, action, state, restart)
        return self.split_head(self.head(h)), (h, c)

    def advance(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        state: LSTMState | None = None,
        restart: torch.Tensor | None = None,
    ) -> LSTMState:
        """`step` without the mixture head: the memory update alone, all an agent in the real env needs."""
        h, c = self.initial_state(z.shape[0], z.device) if state is None else state
        if restart is not None:
            keep = (1.0 - restart.to(h.dtype)).unsqueeze(-1)
            h, c = h * keep, c * keep
        return self.cell.step(self._cell_inputs(z, action, restart), (h, c))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over entries whose mask is set; mask covers the leading dims of values (e.g. (B, T))."""
    if mask is None:
        return values.mean()
    weight = mask.to(values.dtype)
    while weight.dim() < values.dim():
        weight = weight.unsqueeze(-1)
    weight = weight.expand_as(values)
    # where() rather than a product, so garbage (even NaN) in padded steps cannot leak in.
    total = torch.where(weight > 0, values * weight, torch.zeros_like(values)).sum()
    return total / weight.sum().clamp_min(1.0)


def gmm_nll(
    logpi: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Average per-dimension negative log-likelihood of target (..., Z) under the factored GMM.

    Averaged (not summed) over z-dims as in the reference, so values are comparable across z sizes.
    """
    y = target.unsqueeze(-1)
    log_normal = -0.5 * ((y - mu) * torch.exp(-logsigma)).pow(2) - logsigma - _LOG_SQRT_2PI
    nll = -torch.logsumexp(logpi + log_normal, dim=-1)
    return _masked_mean(nll, mask)


def done_loss(
    done_logit: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    pos_weight: float = DONE_POS_WEIGHT,
) -> torch.Tensor:
    """Sigmoid cross-entropy weighted 1 + (pos_weight - 1) * target, as the reference's restart_factor.

    Deaths are rare (~1 step in 300), so without the up-weighting M learns to never predict them.
    """
    bce = F.binary_cross_entropy_with_logits(done_logit, target.to(done_logit.dtype), reduction="none")
    weight = 1.0 + (pos_weight - 1.0) * target.to(done_logit.dtype)
    return _masked_mean(bce * weight, mask)


def reward_loss(reward: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Plain MSE; an optional extra head, not part of either paper model."""
    return _masked_mean((reward - target.to(reward.dtype)).pow(2), mask)


def mdnrnn_loss(
    out: MDNOutput,
    target_z: torch.Tensor,
    done_target: torch.Tensor | None = None,
    reward_target: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    pos_weight: float = DONE_POS_WEIGHT,
) -> dict[str, torch.Tensor]:
    """Total loss = z NLL + done BCE (+ reward MSE), the reference's unweighted sum.

    Returns a dict with 'total', 'z' and, when the model has those heads, 'done' and 'reward'.
    """
    losses = {"z": gmm_nll(out.logpi, out.mu, out.logsigma, target_z, mask)}
    if out.done_logit is not None:
        if done_target is None:
            raise ValueError("model predicts done, so done_target is required")
        losses["done"] = done_loss(out.done_logit, done_target, mask, pos_weight)
    if out.reward is not None:
        if reward_target is None:
            raise ValueError("model predicts reward, so reward_target is required")
        losses["reward"] = reward_loss(out.reward, reward_target, mask)
    losses["total"] = sum(losses.values())
    return losses


def sample_next_z(
    out: MDNOutput,
    tau: float = 1.0,
    generator: torch.Generator | None = None,
    component: int | torch.Tensor | None = None,
    return_components: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Draw z (..., Z) from the mixture at temperature tau, independently per z-dimension.

    As in the reference dream env: weights are softmax(logits / tau), the component is picked by
    inverse CDF per dimension, and z = mu_k + exp(logsigma_k) * sqrt(tau) * eps. tau = 0 means
    the most likely component's mean. `component` forces a component (an int for all dims, or a
    long tensor broadcastable to (..., Z)); `return_components` also returns the chosen indices.
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    logpi, mu, logsigma = out.logpi, out.mu, out.logsigma
    k = logpi.shape[-1]
    if component is not None:
        if isinstance(component, int) and not 0 <= component < k:
            raise ValueError(f"component must be in [0, {k}), got {component}")
        index = torch.as_tensor(component, device=logpi.device, dtype=torch.long).expand(logpi.shape[:-1])
    elif tau == 0:
        index = logpi.argmax(dim=-1)
    else:
        cdf = torch.softmax(logpi / tau, dim=-1).cumsum(dim=-1)
        u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, device=cdf.device, dtype=cdf.dtype)
        # Rounding can leave the last CDF entry just below u; the last component takes that case.
        index = (cdf < u).sum(dim=-1).clamp_(max=k - 1)
    mu_k = mu.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    sigma_k = torch.exp(logsigma.gather(-1, index.unsqueeze(-1)).squeeze(-1))
    eps = torch.randn(mu_k.shape, generator=generator, device=mu_k.device, dtype=mu_k.dtype)
    z = mu_k + sigma_k * math.sqrt(tau) * eps
    return (z, index) if return_components else z


def done_probability(logit: torch.Tensor, pos_weight: float = DONE_POS_WEIGHT) -> torch.Tensor:
    """The hazard M believes in: training with positives x pos_weight shifts the logit by log(pos_weight)."""
    return torch.sigmoid(logit - math.log(pos_weight))


def done_from_logit(logit: torch.Tensor) -> torch.Tensor:
    """Hard threshold p(done) > 0.5 (logit > 0), not a Bernoulli draw; the paper found it more stable."""
    return logit > 0
