import math

import pytest
import torch
from torch.distributions import Normal

from models.mdnrnn import (
    CARRACING_CONFIG,
    DOOM_CONFIG,
    MDNRNN,
    MDNOutput,
    MDNRNNConfig,
    done_from_logit,
    done_loss,
    gmm_nll,
    mdnrnn_loss,
    sample_next_z,
)

Z, A, H, K = 4, 2, 16, 3


@pytest.fixture(autouse=True)
def _few_threads():
    # One thread: these tiny models gain nothing from more, and oneDNN's fused LSTM kernels spin-wait
    # for a descheduled sibling thread when other jobs share the CPU (100x slower on a busy box).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_model(predict_done: bool = True, predict_reward: bool = True) -> MDNRNN:
    torch.manual_seed(0)
    return MDNRNN(Z, A, H, K, predict_done=predict_done, predict_reward=predict_reward)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_doom_parameter_count_matches_paper():
    model = MDNRNN(64, 1, 512, 5, predict_done=True, predict_reward=False)
    assert model.input_size == 66 and model.output_size == 961
    assert count_params(model) == 1_678_785
    assert count_params(MDNRNN.from_config(DOOM_CONFIG)) == 1_678_785


def test_carracing_parameter_count_matches_paper():
    model = MDNRNN(32, 3, 256, 5, predict_done=False, predict_reward=False)
    assert model.input_size == 35 and model.output_size == 480
    assert count_params(model) == 422_368
    assert count_params(MDNRNN.from_config(CARRACING_CONFIG)) == 422_368


def test_forget_gate_bias_starts_near_one():
    model = MDNRNN.from_config(CARRACING_CONFIG)
    bias = model.cell.bias.detach().view(4, -1)  # torch gate order (i, f, g, o)
    assert bias[1].mean().item() == pytest.approx(1.0, abs=0.01)
    for gate in (0, 2, 3):
        assert bias[gate].abs().max().item() < 0.1


def test_sequence_output_shapes():
    model = small_model()
    out, (h, c) = model(torch.randn(2, 5, Z), torch.randn(2, 5, A), torch.zeros(2, 5))
    assert isinstance(out, MDNOutput)
    assert out.logpi.shape == out.mu.shape == out.logsigma.shape == (2, 5, Z, K)
    assert out.done_logit.shape == out.reward.shape == (2, 5)
    assert h.shape == c.shape == (2, H)
    assert torch.allclose(out.logpi.exp().sum(-1), torch.ones(2, 5, Z), atol=1e-6)


def test_optional_heads_absent_when_disabled():
    model = small_model(predict_done=False, predict_reward=False)
    out, _ = model(torch.randn(2, 3, Z), torch.randn(2, 3, A))
    assert out.done_logit is None and out.reward is None
    step_out, _ = model.step(torch.randn(2, Z), torch.randn(2, A))
    assert step_out.mu.shape == (2, Z, K)


def test_scalar_actions_accept_missing_trailing_axis():
    model = MDNRNN(Z, 1, H, K, predict_done=True)
    z, action = torch.randn(2, 3, Z), torch.randn(2, 3)
    out_flat, _ = model(z, action)
    out_axis, _ = model(z, action.unsqueeze(-1))
    assert torch.equal(out_flat.mu, out_axis.mu)


@pytest.mark.parametrize("predict_done", [True, False])
def test_stepping_reproduces_sequence_with_restarts(predict_done):
    model = small_model(predict_done=predict_done)
    batch, steps = 3, 8
    z, action = torch.randn(batch, steps, Z), torch.randn(batch, steps, A)
    restart = torch.zeros(batch, steps)
    restart[:, 0] = 1
    restart[0, 3] = 1
    restart[2, 5] = 1
    restart[1, 7] = 1
    start = (torch.randn(batch, H), torch.randn(batch, H))
    seq_out, seq_state = model(z, action, restart, start)

    state = start
    for t in range(steps):
        step_out, state = model.step(z[:, t], action[:, t], state, restart[:, t])
        for name in ("logpi", "mu", "logsigma", "done_logit", "reward"):
            seq_part = getattr(seq_out, name)
            if seq_part is None:
                assert getattr(step_out, name) is None
                continue
            assert torch.allclose(getattr(step_out, name), seq_part[:, t], atol=1e-5), (name, t)
    assert torch.allclose(state[0], seq_state[0], atol=1e-5)
    assert torch.allclose(state[1], seq_state[1], atol=1e-5)


def test_lstm_has_one_bias_the_weight_of_a_constant_input():
    model = small_model()
    lstm = model.cell.lstm
    assert not lstm.bias and [name for name, _ in lstm.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert lstm.weight_ih_l0.shape == (4 * H, model.input_size + 1)
    assert model.cell.bias.data_ptr() == lstm.weight_ih_l0[:, -1].data_ptr()  # a view, not a copy
    with torch.no_grad():
        model.cell.bias.add_(0.5)  # moving the column moves the gates like a bias does
    z, action = torch.randn(2, 4, Z), torch.randn(2, 4, A)
    out, _ = model(z, action)
    state = None
    for t in range(4):
        step_out, state = model.step(z[:, t], action[:, t], state)
        assert torch.allclose(step_out.mu, out.mu[:, t], atol=1e-5)


@pytest.mark.parametrize("mid_restarts", [False, True])
def test_sequence_gradients_match_stepping(mid_restarts):
    """The fused nn.LSTM path (and its split-at-restarts fallback) trains exactly the stepped cell."""
    model = small_model()
    z, action = torch.randn(3, 7, Z), torch.randn(3, 7, A)
    restart = torch.zeros(3, 7)
    restart[:, 0] = 1
    if mid_restarts:
        restart[0, 2] = restart[2, 5] = 1
    target = torch.randn(3, 7, Z)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    out, _ = model(z, action, restart)
    fused = grads(mdnrnn_loss(out, target, restart, torch.zeros(3, 7))["total"])
    state, parts = None, []
    for t in range(7):
        step_out, state = model.step(z[:, t], action[:, t], state, restart[:, t])
        parts.append(step_out)
    stacked = MDNOutput(*(torch.stack([getattr(p, f) for p in parts], 1) for f in MDNOutput._fields))
    stepped = grads(mdnrnn_loss(stacked, target, restart, torch.zeros(3, 7))["total"])
    for a, b in zip(fused, stepped):
        assert torch.allclose(a, b, atol=1e-5)


def test_restart_zeroes_state_before_the_step():
    model = small_model()
    z, action = torch.randn(1, 6, Z), torch.randn(1, 6, A)
    restart = torch.zeros(1, 6)
    restart[0, 2] = 1
    out, _ = model(z, action, restart, (torch.randn(1, H), torch.randn(1, H)))
    fresh, _ = model(z[:, 2:], action[:, 2:], restart[:, 2:])  # zero state from step 2 on
    assert torch.allclose(out.mu[:, 2:], fresh.mu, atol=1e-6)
    assert torch.allclose(out.done_logit[:, 2:], fresh.done_logit, atol=1e-6)
    # Before the restart the history matters.
    assert not torch.allclose(out.mu[:, :2], model(z[:, :2], action[:, :2], restart[:, :2])[0].mu)


def test_state_carries_across_chunks():
    model = small_model()
    z, action = torch.randn(2, 10, Z), torch.randn(2, 10, A)
    restart = (torch.rand(2, 10) < 0.2).float()
    whole, whole_state = model(z, action, restart)
    first, state = model(z[:, :4], action[:, :4], restart[:, :4])
    second, second_state = model(z[:, 4:], action[:, 4:], restart[:, 4:], state)
    assert torch.allclose(torch.cat([first.mu, second.mu], 1), whole.mu, atol=1e-6)
    assert torch.allclose(second_state[1], whole_state[1], atol=1e-6)


def test_initial_state_is_zero():
    h, c = small_model().initial_state(5)
    assert h.shape == c.shape == (5, H)
    assert not h.any() and not c.any()


def test_config_round_trip():
    model = small_model()
    assert model.config == {
        "z_size": Z,
        "action_size": A,
        "hidden_size": H,
        "num_mixtures": K,
        "predict_done": True,
        "predict_reward": True,
    }
    rebuilt = MDNRNN.from_config(model.config)
    assert count_params(rebuilt) == count_params(model)
    assert MDNRNN.from_config(MDNRNNConfig(**model.config)).config == model.config


def random_mixture(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logpi = torch.log_softmax(torch.randn(*shape, K), dim=-1)
    return logpi, torch.randn(*shape, K), 0.5 * torch.randn(*shape, K)


def direct_nll(logpi, mu, logsigma, target):
    """Loop over components with torch.distributions; returns per-element NLL (..., Z)."""
    density = torch.zeros_like(target, dtype=torch.float64)
    for k in range(K):
        normal = Normal(mu[..., k].double(), logsigma[..., k].double().exp())
        density += logpi[..., k].double().exp() * normal.log_prob(target.double()).exp()
    return -density.log()


def test_gmm_nll_matches_direct_computation():
    torch.manual_seed(1)
    logpi, mu, logsigma = random_mixture((3, 5, Z))
    target = torch.randn(3, 5, Z)
    expected = direct_nll(logpi, mu, logsigma, target).mean()
    assert gmm_nll(logpi, mu, logsigma, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_gmm_nll_mask_ignores_padded_steps():
    torch.manual_seed(2)
    logpi, mu, logsigma = random_mixture((2, 6, Z))
    target = torch.randn(2, 6, Z)
    mask = torch.ones(2, 6)
    mask[1, 4:] = 0
    per_element = direct_nll(logpi, mu, logsigma, target)
    target[1, 4:] = float("nan")  # padding garbage must not leak in
    expected = torch.cat([per_element[0].flatten(), per_element[1, :4].flatten()]).mean()
    got = gmm_nll(logpi, mu, logsigma, target, mask)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_done_loss_weights_positives_and_masks():
    logit = torch.tensor([[0.3, -1.0, 2.0]])
    target = torch.tensor([[1.0, 0.0, 1.0]])
    p = torch.sigmoid(logit)
    per_step = -(target * p.log() * 10 + (1 - target) * (1 - p).log())
    assert done_loss(logit, target).item() == pytest.approx(per_step.mean().item(), rel=1e-5)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert done_loss(logit, target, mask).item() == pytest.approx(per_step[0, :2].mean().item(), rel=1e-5)
    plain = done_loss(logit, target, pos_weight=1.0)
    assert plain.item() == pytest.approx(torch.nn.functional.binary_cross_entropy(p, target).item(), rel=1e-5)


def test_mdnrnn_loss_sums_parts_and_requires_targets():
    model = small_model()
    z, action = torch.randn(2, 4, Z), torch.randn(2, 4, A)
    out, _ = model(z, action)
    done, reward = torch.zeros(2, 4), torch.ones(2, 4)
    losses = mdnrnn_loss(out, z, done, reward)
    assert set(losses) == {"z", "done", "reward", "total"}
    assert losses["total"].item() == pytest.approx(sum(losses[k].item() for k in ("z", "done", "reward")))
    with pytest.raises(ValueError):
        mdnrnn_loss(out, z, None, reward)


def fixed_mixture(n: int, z_size: int) -> MDNOutput:
    """Component 2 dominates; components sit far apart with small sigma so samples identify them."""
    logits = torch.tensor([0.0, 0.0, 6.0])
    centers = torch.tensor([-10.0, 0.0, 10.0])
    return MDNOutput(
        logpi=torch.log_softmax(logits, -1).expand(n, z_size, K),
        mu=centers.expand(n, z_size, K),
        logsigma=torch.full((n, z_size, K), math.log(0.1)),
        done_logit=None,
        reward=None,
    )


def test_small_temperature_concentrates_on_dominant_component():
    out = fixed_mixture(500, 8)
    z, index = sample_next_z(out, tau=0.01, generator=torch.Generator().manual_seed(0), return_components=True)
    assert (index == 2).all()
    assert (z - 10.0).abs().max().item() < 0.1  # sigma * sqrt(tau) = 0.01


def test_zero_temperature_returns_mode_component_mean():
    z = sample_next_z(fixed_mixture(4, 3), tau=0.0)
    assert torch.equal(z, torch.full((4, 3), 10.0))


def test_forced_component_is_the_only_one_used():
    out = fixed_mixture(300, 8)
    z, index = sample_next_z(out, tau=1.0, component=0, return_components=True)
    assert (index == 0).all()
    assert (z + 10.0).abs().max().item() < 1.0
    per_dim = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1])
    z, index = sample_next_z(out, tau=1.0, component=per_dim, return_components=True)
    assert torch.equal(index, per_dim.expand(300, 8))
    assert (z - out.mu[0, 0][per_dim]).abs().max().item() < 1.0
    with pytest.raises(ValueError):
        sample_next_z(out, component=K)


def test_component_frequencies_follow_tempered_weights():
    n, z_size = 4000, 4
    logits = torch.tensor([0.0, 0.5, 1.0])
    out = fixed_mixture(n, z_size)._replace(logpi=torch.log_softmax(logits, -1).expand(n, z_size, K))
    for tau in (1.0, 2.0):
        _, index = sample_next_z(out, tau=tau, generator=torch.Generator().manual_seed(3), return_components=True)
        freq = torch.bincount(index.flatten(), minlength=K).float() / index.numel()
        assert torch.allclose(freq, torch.softmax(logits / tau, -1), atol=0.02)


def test_temperature_scales_sigma_by_sqrt_tau():
    n = 20000
    out = MDNOutput(
        logpi=torch.zeros(n, 1, 1), mu=torch.zeros(n, 1, 1), logsigma=torch.zeros(n, 1, 1), done_logit=None, reward=None
    )
    z = sample_next_z(out, tau=2.0, generator=torch.Generator().manual_seed(4))
    assert z.var().item() == pytest.approx(2.0, rel=0.05)


def test_batched_sampling_from_model_step():
    model = MDNRNN(8, 1, 32, 5, predict_done=True)
    n = 2000
    state = model.initial_state(n)
    with torch.no_grad():
        out, state = model.step(torch.randn(n, 8), torch.rand(n) * 2 - 1, state, torch.ones(n))
        z = sample_next_z(out, tau=1.15, generator=torch.Generator().manual_seed(5))
        again = sample_next_z(out, tau=1.15, generator=torch.Generator().manual_seed(5))
    assert z.shape == (n, 8) and torch.isfinite(z).all()
    assert torch.equal(z, again)
    assert done_from_logit(out.done_logit).shape == (n,)


def test_done_from_logit_thresholds_at_half():
    logit = torch.tensor([-2.0, -1e-4, 0.0, 1e-4, 3.0])
    assert done_from_logit(logit).tolist() == [False, False, False, True, True]


def test_nll_decreases_on_a_tiny_fixed_sequence():
    torch.manual_seed(0)
    model = MDNRNN(Z, A, H, K, predict_done=True)
    z, action = torch.randn(2, 10, Z), torch.randn(2, 10, A)
    restart = torch.zeros(2, 10)
    restart[:, 0] = 1
    done = torch.zeros(2, 9)
    done[0, -1] = 1
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        out, _ = model(z[:, :-1], action[:, :-1], restart[:, :-1])
        loss = mdnrnn_loss(out, z[:, 1:], done)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
