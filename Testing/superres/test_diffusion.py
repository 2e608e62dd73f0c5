"""The diffusion schedule and samplers: the cosine alpha-bar's shape, endpoints and clipping, the
noising and v/eps maths, and DDPM/DDIM sampling that is reproducible with a seed and exact with an
oracle network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DeepDenoiseLib.nets.unet import UNet
from DeepDenoiseLib.superres.diffusion_sampler import (
    ddim_step,
    ddpm_step,
    q_sample,
    sample,
    split_prediction,
    training_target,
)
from DeepDenoiseLib.superres.diffusion_schedule import DiffusionSchedule, cosine_alpha_bar, cosine_schedule, design_alpha_bar
from Testing.support.phantoms import single_thread  # noqa: F401

# --- Schedule -------------------------------------------------------------------------------------


def test_cosine_alpha_bar_decreases_from_one_to_zero() -> None:
    schedule = cosine_schedule(1000)
    alpha_bar = schedule.alpha_bar
    assert alpha_bar.shape == (1000,)
    assert np.all(np.diff(alpha_bar) < 0)
    assert alpha_bar[0] == pytest.approx(1.0, abs=1e-4)
    assert alpha_bar[-1] < 1e-6
    # Half the signal variance is left about half-way: the cosine shape, not an early collapse.
    assert 0.4 < alpha_bar[499] < 0.6
    np.testing.assert_allclose(cosine_alpha_bar(np.array([0.0, 1.0])), [1.0, 0.0], atol=1e-12)


def test_betas_are_clipped_and_alpha_bar_is_their_running_product() -> None:
    schedule = cosine_schedule(1000)
    assert schedule.betas.max() == pytest.approx(0.999)
    assert np.all(schedule.betas <= 0.999) and np.all(schedule.betas > 0)
    np.testing.assert_allclose(schedule.alpha_bar, np.cumprod(1.0 - schedule.betas))
    clipped = cosine_schedule(1000, max_beta=0.5)
    assert clipped.betas.max() == pytest.approx(0.5)
    # Unclipped steps follow the closed form exactly.
    closed_form = cosine_alpha_bar(np.arange(1, 1001) / 1000)
    np.testing.assert_allclose(schedule.alpha_bar[:900], closed_form[:900], rtol=1e-9)


def test_the_literal_design_formula_leaves_almost_no_signal_after_a_fifth_of_the_steps() -> None:
    design = design_alpha_bar(1000)
    assert design[149] == pytest.approx(0.06, abs=0.005)
    assert design[199] == pytest.approx(0.0012, abs=0.0002)
    assert cosine_schedule(1000).alpha_bar[199] > 0.85


def test_variance_scale_is_kept_and_checked() -> None:
    assert cosine_schedule(100, variance_scale=0.3).variance_scale == 0.3
    with pytest.raises(ValueError, match="variance_scale"):
        cosine_schedule(100, variance_scale=1.5)
    with pytest.raises(ValueError, match="beta"):
        DiffusionSchedule(np.array([0.1, 1.0]))


def test_sampling_steps_run_from_the_last_step_down_to_one() -> None:
    schedule = cosine_schedule(1000)
    steps = schedule.sampling_steps(25)
    assert steps[0] == 1000 and steps[-1] == 1 and len(steps) == 25
    assert np.all(np.diff(steps) < 0)
    np.testing.assert_array_equal(schedule.sampling_steps(1000), np.arange(1000, 0, -1))
    with pytest.raises(ValueError, match="sampling steps"):
        schedule.sampling_steps(0)


# --- Noising and predictions ------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_the_prediction_target_gives_back_x0_and_the_noise(prediction: str) -> None:
    schedule = cosine_schedule(1000)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 1, 4, 4, 4, generator=generator)
    noise = torch.randn(3, 1, 4, 4, 4, generator=generator)
    steps = torch.tensor([1, 500, 990])
    noisy = q_sample(x0, steps, noise, schedule)
    target = training_target(x0, noise, steps, schedule, prediction)
    for item, step in enumerate(steps.tolist()):
        x0_found, noise_found = split_prediction(noisy[item], target[item], float(schedule.alpha_bar[step - 1]), prediction)
        torch.testing.assert_close(x0_found, x0[item], atol=2e-3, rtol=0)
        torch.testing.assert_close(noise_found, noise[item], atol=2e-3, rtol=0)


def test_q_sample_keeps_unit_variance_and_mixes_by_alpha_bar() -> None:
    schedule = cosine_schedule(1000)
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 200_000, generator=generator)
    noise = torch.randn(1, 200_000, generator=generator)
    noisy = q_sample(x0, torch.tensor([500]), noise, schedule)
    alpha_bar = schedule.alpha_bar[499]
    assert float(noisy.std()) == pytest.approx(1.0, abs=0.01)
    assert float(torch.corrcoef(torch.cat([noisy, x0]))[0, 1]) == pytest.approx(np.sqrt(alpha_bar), abs=0.01)


def test_ddpm_step_noise_variance_follows_the_variance_scale() -> None:
    x_t, x0 = torch.zeros(1, 100_000), torch.zeros(1, 100_000)
    deviations = []
    for scale in (1.0, 0.3, 0.0):
        step = ddpm_step(x_t, x0, 0.5, 0.6, scale, torch.Generator().manual_seed(5))
        deviations.append(float(step.std()))
    beta = 1 - 0.5 / 0.6
    expected = np.sqrt(beta * (1 - 0.6) / (1 - 0.5))
    assert deviations[0] == pytest.approx(expected, rel=0.01)
    assert deviations[1] == pytest.approx(np.sqrt(0.3) * deviations[0], rel=1e-5)
    assert deviations[2] == 0.0
    # The last step (to alpha_bar 1) is the clean estimate itself.
    torch.testing.assert_close(ddpm_step(x_t + 1, x0 + 2, 0.9, 1.0, 1.0, None), x0 + 2)


def test_the_starting_noise_follows_the_variance_scale() -> None:
    first_inputs = []

    def record(noisy: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        first_inputs.append(noisy.clone())
        return torch.zeros_like(noisy)

    for scale in (1.0, 0.25):
        first_inputs.clear()
        sample(record, (1, 100_000), cosine_schedule(100, variance_scale=scale), 2, generator=torch.Generator().manual_seed(0))
        assert float(first_inputs[0].std()) == pytest.approx(np.sqrt(scale), rel=0.01)


def test_ddim_with_eta_zero_adds_no_noise() -> None:
    x0, eps = torch.ones(1, 10), torch.full((1, 10), 2.0)
    stepped = ddim_step(x0, eps, 0.3, 0.8, 0.0, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(stepped, np.sqrt(0.8) * x0 + np.sqrt(0.2) * eps)


# --- Sampling ---------------------------------------------------------------------------------------


def oracle(x0: torch.Tensor, schedule: DiffusionSchedule, prediction: str):
    """A perfect network for data that is always ``x0``: the v or eps implied by ``x_t``."""

    def denoise(noisy: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        alpha_bar = torch.as_tensor(schedule.alpha_bar, dtype=torch.float64)[steps.long() - 1].float().reshape(-1, 1, 1)
        eps = (noisy - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
        if prediction == "x0":
            return x0.expand_as(noisy)
        return eps if prediction == "eps" else alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0

    return denoise


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_samplers_reach_the_data_with_an_oracle_network(sampler: str, prediction: str) -> None:
    schedule = cosine_schedule(1000)
    x0 = torch.linspace(-2, 2, 12).reshape(1, 1, 12).expand(3, 1, 12).contiguous()
    result = sample(oracle(x0, schedule, prediction), (3, 1, 12), schedule, 20, sampler, prediction, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(result, x0, atol=1e-3, rtol=0)


def small_network() -> UNet:
    torch.manual_seed(0)
    return UNet(3, 2, 1, depth=1, base_channels=8, norm="group", residual_blocks=True, time_embedding=True).eval()


@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 0.5), ("ddpm", 0.0)])
def test_sampling_is_reproducible_with_a_seed_and_differs_between_seeds(sampler: str, eta: float) -> None:
    network = small_network()
    schedule = cosine_schedule(100)
    condition = torch.rand(2, 1, 4, 8, 8, generator=torch.Generator().manual_seed(9))

    def denoise(noisy: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return network(torch.cat([noisy, condition], dim=1), steps)

    def draw(seed: int) -> torch.Tensor:
        return sample(denoise, (2, 1, 4, 8, 8), schedule, 5, sampler, "v", eta, torch.Generator().manual_seed(seed))

    first, again, other = draw(3), draw(3), draw(4)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert first.shape == (2, 1, 4, 8, 8) and torch.isfinite(first).all()


def test_sampling_reports_each_step_and_stops_when_cancelled() -> None:
    from DeepDenoiseLib.core.progress import Cancelled, CancelToken

    network = small_network()
    schedule = cosine_schedule(100)
    token = CancelToken()
    seen = []

    def on_step(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 2:
            token.cancel()

    def denoise(noisy: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return network(torch.cat([noisy, noisy], dim=1), steps)

    with pytest.raises(Cancelled):
        sample(denoise, (1, 1, 4, 8, 8), schedule, 6, generator=torch.Generator().manual_seed(0), cancel=token, on_step=on_step)
    assert seen == [(1, 6), (2, 6)]


def test_time_embedded_unet_needs_timesteps_and_residual_blocks() -> None:
    network = small_network()
    x = torch.rand(2, 2, 4, 8, 8)
    out = network(x, torch.tensor([1.0, 500.0]))
    assert out.shape == (2, 1, 4, 8, 8)
    assert not torch.allclose(network(x, torch.tensor([1.0, 1.0])), network(x, torch.tensor([900.0, 900.0])))
    with pytest.raises(ValueError, match="timesteps"):
        network(x)
    with pytest.raises(ValueError, match="time embedding"):
        UNet(3, 1, 1, depth=1, base_channels=8, time_embedding=True)
    plain = UNet(3, 1, 1, depth=1, base_channels=8)
    with pytest.raises(ValueError, match="no time embedding"):
        plain(torch.rand(1, 1, 4, 8, 8), torch.tensor([1.0]))


def test_attention_at_the_coarsest_level_keeps_shapes_and_trains() -> None:
    from DeepDenoiseLib.nets.unet import SelfAttention

    torch.manual_seed(0)
    network = UNet(3, 1, 1, depth=2, base_channels=8, norm="group", residual_blocks=True, attention=True)
    attention = [m for m in network.modules() if isinstance(m, SelfAttention)]
    assert len(attention) == 1
    out = network(torch.rand(2, 1, 8, 16, 16))
    assert out.shape == (2, 1, 8, 16, 16)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in attention[0].parameters())
    assert not any(isinstance(m, SelfAttention) for m in UNet(3, 1, 1, depth=2, base_channels=8).modules())
