"""Tests of the blind-spot network (DeepDenoiseLib.nets.blindspot): the output at a pixel never depends on
that pixel's own value in the denoised channel, while its neighbours and the context slices' centre
pixel do; the noise-fusion posterior and likelihood match their closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from DeepDenoiseLib.nets.blindspot import (
    LOG_VARIANCE_RANGE,
    BlindSpotNet,
    UpwardConv,
    UpwardUNet,
    gaussian_prior_nll,
    posterior,
    shift_down,
)
from Testing.support.phantoms import single_thread  # noqa: F401

NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def input_gradient(net: BlindSpotNet, shape: tuple[int, ...], pixel: tuple[int, int], out_channel: int, seed: int = 0) -> torch.Tensor:
    """d output[0, out_channel, pixel] / d input, in float64 (so 'exactly zero' means zero)."""
    torch.manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    out = net(x)
    assert out.shape == (shape[0], net.fusion[-1].out_channels, *shape[2:])
    out[0, out_channel, pixel[0], pixel[1]].backward()
    return x.grad[0]


@pytest.mark.parametrize("size", [(16, 16), (16, 24), (24, 16), (20, 12)])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("pixel_kind", ["interior", "corner", "edge"])
def test_output_never_sees_its_own_pixel_but_sees_its_four_neighbours(size: tuple, depth: int, pixel_kind: str) -> None:
    torch.manual_seed(depth)
    net = BlindSpotNet(in_channels=3, out_channels=2, depth=depth, base_channels=4).double().eval()
    height, width = size
    pixel = {"interior": (height // 2 - 1, width // 2 + 1), "corner": (0, width - 1), "edge": (height - 1, 5)}[pixel_kind]
    for out_channel in (0, 1):  # the prior mean and its log variance
        grad = input_gradient(net, (2, 3, height, width), pixel, out_channel)
        assert grad[0, pixel[0], pixel[1]] == 0.0
        for dy, dx in NEIGHBOURS:
            y, x = pixel[0] + dy, pixel[1] + dx
            if 0 <= y < height and 0 <= x < width:
                assert grad[0, y, x] != 0.0, f"neighbour {(dy, dx)} does not reach the output"
        # the context slices' own centre pixel joins the fusion directly
        assert grad[1, pixel[0], pixel[1]] != 0.0
        assert grad[2, pixel[0], pixel[1]] != 0.0
    # the samples of a batch stay independent (the four rotations share the batch axis inside)
    torch.manual_seed(0)
    x = torch.randn(2, 3, height, width, dtype=torch.float64, requires_grad=True)
    net(x)[0].sum().backward()
    assert x.grad[1].abs().max() == 0.0


def test_blind_spot_holds_for_every_pixel_by_perturbation() -> None:
    """Changing the centre pixel's value alone leaves that pixel's output bit-for-bit unchanged."""
    torch.manual_seed(3)
    net = BlindSpotNet(in_channels=1, out_channels=1, depth=2, base_channels=4).double().eval()
    x = torch.randn(1, 1, 12, 16, dtype=torch.float64)
    with torch.no_grad():
        base = net(x)
        for y in range(0, 12, 3):
            for col in range(0, 16, 5):
                changed = x.clone()
                changed[0, 0, y, col] += 10.0
                out = net(changed)
                assert out[0, 0, y, col] == base[0, 0, y, col]
                assert (out - base).abs().max() > 0  # it does change other pixels


def test_output_shape_and_fusion_width() -> None:
    net = BlindSpotNet(in_channels=5, out_channels=2, depth=2, base_channels=4)
    # four rotated half-plane branches of base_channels each, plus the four context centre values
    assert net.fusion[0].in_channels == 4 * 4 + 4
    assert net(torch.randn(3, 5, 8, 12)).shape == (3, 2, 8, 12)


def test_shift_down_moves_rows_and_enters_zeros() -> None:
    x = torch.arange(12.0).reshape(1, 1, 4, 3)
    shifted = shift_down(x)
    assert torch.equal(shifted[0, 0, 0], torch.zeros(3))
    assert torch.equal(shifted[0, 0, 1:], x[0, 0, :3])
    assert torch.equal(shift_down(x, 2)[0, 0, 2:], x[0, 0, :2])


def test_upward_conv_and_branch_never_look_below() -> None:
    torch.manual_seed(0)
    for module in (UpwardConv(1, 2), UpwardUNet(1, depth=2, base_channels=4)):
        module = module.double()
        x = torch.randn(1, 1, 16, 8, dtype=torch.float64, requires_grad=True)
        out = module(x)
        row = 9
        out[0, :, row].sum().backward()
        rows_seen = (x.grad[0, 0].abs().sum(dim=1) > 0).nonzero().flatten()
        limit = row if isinstance(module, UpwardConv) else row - 1  # the branch ends with a one-row shift
        assert rows_seen.max() == limit
        if isinstance(module, UpwardConv):
            assert rows_seen.min() == row - 2  # a 3x3 kernel padded two rows above: rows r-2..r
        else:
            assert rows_seen.min() < row - 4  # the UNet reaches much further up


# --- noise fusion ----------------------------------------------------------------------------------


def test_posterior_is_the_precision_weighted_average() -> None:
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(2, 5, 7))
    log_var = rng.uniform(-8, 2, size=(2, 5, 7))
    observed = rng.normal(size=(2, 5, 7))
    noise_variance = 0.05
    output = torch.from_numpy(np.stack([mean, log_var], axis=1))
    post_mean, post_var = posterior(output, torch.from_numpy(observed), noise_variance)
    prior_precision, noise_precision = np.exp(-log_var), 1.0 / noise_variance
    expected_mean = (mean * prior_precision + observed * noise_precision) / (prior_precision + noise_precision)
    expected_var = 1.0 / (prior_precision + noise_precision)
    np.testing.assert_allclose(post_mean.numpy(), expected_mean, rtol=1e-10)
    np.testing.assert_allclose(post_var.numpy(), expected_var, rtol=1e-10)


def test_posterior_follows_a_sure_prior_and_keeps_the_voxel_under_an_unsure_one() -> None:
    observed = torch.tensor([[[0.9]]], dtype=torch.float64)
    sure = torch.tensor([[[[0.2]], [[-16.0]]]], dtype=torch.float64)  # prior variance e^-16
    unsure = torch.tensor([[[[0.2]], [[4.0]]]], dtype=torch.float64)  # prior variance e^4 = 54.6
    assert float(posterior(sure, observed, 0.01)[0]) == pytest.approx(0.2, abs=1e-5)
    assert float(posterior(unsure, observed, 0.01)[0]) == pytest.approx(0.9, abs=2e-4)


def test_log_variance_is_clamped_to_its_range() -> None:
    observed = torch.zeros(1, 1, 1, dtype=torch.float64)
    low, high = LOG_VARIANCE_RANGE
    too_high = torch.tensor([[[[1.0]], [[50.0]]]], dtype=torch.float64)
    too_low = torch.tensor([[[[1.0]], [[-80.0]]]], dtype=torch.float64)
    noise_variance = 0.1
    _, var_high = posterior(too_high, observed, noise_variance)
    _, var_low = posterior(too_low, observed, noise_variance)
    assert float(var_high) == pytest.approx(math.exp(high) * noise_variance / (math.exp(high) + noise_variance))
    assert float(var_low) == pytest.approx(math.exp(low) * noise_variance / (math.exp(low) + noise_variance))


def test_gaussian_prior_nll_matches_a_hand_computation() -> None:
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(3, 4, 6))
    log_var = rng.uniform(-6, 1, size=(3, 4, 6))
    observed = rng.normal(size=(3, 4, 6))
    noise_variance = 0.02
    output = torch.from_numpy(np.stack([mean, log_var], axis=1))
    nll = float(gaussian_prior_nll(output, torch.from_numpy(observed), noise_variance))
    variance = np.exp(log_var) + noise_variance
    expected = 0.5 * np.mean(np.log(variance) + (observed - mean) ** 2 / variance)
    assert nll == pytest.approx(expected, rel=1e-12)
    # one voxel by hand: mean 0, log variance log(0.03), observed 0.5, noise variance 0.02
    single = torch.tensor([[[[0.0]], [[math.log(0.03)]]]], dtype=torch.float64)
    value = float(gaussian_prior_nll(single, torch.tensor([[[0.5]]], dtype=torch.float64), 0.02))
    assert value == pytest.approx(0.5 * (math.log(0.05) + 0.25 / 0.05), rel=1e-12)


def test_gaussian_prior_nll_is_smallest_at_the_true_mean_and_variance() -> None:
    """For observations N(mu, s^2 + n), the expected NLL is minimised by prior mean mu and prior
    variance s^2: the network is pushed to predict the clean signal's distribution."""
    rng = np.random.default_rng(2)
    mu, prior_var, noise_var = 0.3, 0.04, 0.01
    observed = torch.from_numpy(rng.normal(mu, math.sqrt(prior_var + noise_var), size=(1, 200, 200)))

    def nll(mean: float, var: float) -> float:
        output = torch.tensor([mean, math.log(var)], dtype=torch.float64).reshape(1, 2, 1, 1).expand(1, 2, 200, 200)
        return float(gaussian_prior_nll(output, observed, noise_var))

    best = nll(mu, prior_var)
    for mean, var in ((mu + 0.1, prior_var), (mu - 0.1, prior_var), (mu, prior_var * 3), (mu, prior_var / 3)):
        assert nll(mean, var) > best
