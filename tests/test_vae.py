import numpy as np
import pytest
import torch

from models.vae import ConvVAE, VAEConfig, frames_to_tensor, tensor_to_frames, vae_loss


@pytest.fixture(autouse=True)
def _few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("z_size", "expected"), [(64, 4_446_915), (32, 4_348_547)])
def test_parameter_count_matches_paper(z_size, expected):
    assert count_params(ConvVAE(z_size)) == expected


def test_forward_shapes_and_ranges():
    vae = ConvVAE(z_size=16)
    x = torch.rand(3, 3, 64, 64)
    recon, mu, logvar = vae(x)
    assert recon.shape == (3, 3, 64, 64)
    assert mu.shape == logvar.shape == (3, 16)
    assert recon.min() >= 0 and recon.max() <= 1
    assert vae.decode(torch.randn(5, 16)).shape == (5, 3, 64, 64)


def test_encoder_spatial_sizes_follow_valid_stride2_convs():
    vae = ConvVAE(z_size=8)
    h = torch.rand(1, 3, 64, 64)
    sizes = []
    for layer in vae.encoder:
        h = layer(h)
        if isinstance(layer, torch.nn.Conv2d):
            sizes.append(h.shape[-1])
    assert sizes == [31, 14, 6, 2]
    assert h.shape == (1, 1024)


def test_frames_to_tensor_layout_and_scale():
    frames = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    frames[1, 5, 7, 2] = 255
    frames[0, 0, 0, 0] = 51
    x = frames_to_tensor(frames)
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert x[1, 2, 5, 7] == 1.0
    assert x[0, 0, 0, 0] == pytest.approx(0.2)
    assert x.sum() == pytest.approx(1.2)
    assert frames_to_tensor(torch.from_numpy(frames[0])).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError):
        frames_to_tensor(np.zeros((2, 3, 64, 64), dtype=np.uint8))


def test_tensor_to_frames_inverts_frames_to_tensor_and_clips():
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = frames_to_tensor(frames)
    assert np.array_equal(tensor_to_frames(x), frames)
    assert np.array_equal(tensor_to_frames(x[1]), frames[1])  # one frame (3, 64, 64) -> (64, 64, 3)
    assert tensor_to_frames(torch.full((3, 64, 64), 1.5)).min() == 255
    assert tensor_to_frames(torch.full((3, 64, 64), -0.5)).max() == 0


def test_kl_below_floor_gives_exactly_the_floor():
    z_size = 32
    x = torch.rand(4, 3, 64, 64)
    mu = torch.zeros(4, z_size)
    logvar = torch.zeros(4, z_size)  # KL to the prior is exactly 0
    total, recon_loss, kl = vae_loss(x, x, mu, logvar, kl_tolerance=0.5)
    assert kl.item() == 16.0
    assert recon_loss.item() == 0.0
    assert total.item() == 16.0


def test_kl_floor_is_applied_per_sample_before_the_batch_mean():
    z_size = 4
    mu = torch.zeros(2, z_size)
    mu[1] = 10.0  # KL = 0.5 * 4 * 100 = 200, above the floor of 2
    logvar = torch.zeros(2, z_size)
    x = torch.zeros(2, 3, 64, 64)
    _, _, kl = vae_loss(x, x, mu, logvar, kl_tolerance=0.5)
    assert kl.item() == pytest.approx((2.0 + 200.0) / 2)


def test_recon_loss_sums_over_pixels_and_averages_over_batch():
    x = torch.zeros(2, 3, 64, 64)
    recon = x.clone()
    recon[0] += 0.5  # 0.25 * 12288 = 3072
    _, recon_loss, _ = vae_loss(recon, x, torch.zeros(2, 8), torch.zeros(2, 8))
    assert recon_loss.item() == pytest.approx(3072.0 / 2)


def test_reparameterize_is_reproducible_and_uses_logvar():
    mu = torch.randn(3, 8)
    tight = ConvVAE.reparameterize(mu, torch.full((3, 8), -40.0))
    assert torch.allclose(tight, mu, atol=1e-6)
    a = ConvVAE.reparameterize(mu, torch.zeros(3, 8), generator=torch.Generator().manual_seed(1))
    b = ConvVAE.reparameterize(mu, torch.zeros(3, 8), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, mu)


def test_config_round_trip():
    vae = ConvVAE(z_size=32)
    assert vae.config == {"z_size": 32}
    rebuilt = ConvVAE.from_config(vae.config)
    assert rebuilt.z_size == 32 and rebuilt.config == VAEConfig(32).__dict__
    with pytest.raises(TypeError):
        ConvVAE.from_config({"z_size": 32, "bogus": 1})


def test_overfits_a_fixed_batch():
    torch.manual_seed(0)
    vae = ConvVAE(z_size=16)
    # Blocky random images: pure per-pixel noise cannot be memorized in a few dozen steps.
    x = torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4), size=64, mode="nearest")
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        recon, mu, logvar = vae(x, generator=generator)
        loss, _, _ = vae_loss(recon, x, mu, logvar)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
