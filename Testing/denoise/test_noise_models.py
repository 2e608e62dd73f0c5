"""Tests of the noise models a run assumes (noise_models.py) and their variance-stabilising transforms
(vst.py): the transforms stabilise the variance, the inverses are unbiased, parameters estimated from a
noisy volume match the ones it was made with, and every model runs end to end."""

from __future__ import annotations

import numpy as np
import pytest

from DeepDenoiseLib.core.metrics import psnr
from DeepDenoiseLib.core.noise_simulation import add_gaussian_noise, add_poisson_noise, add_rician_noise, add_speckle_noise
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import DenoiseConfig, NoiseConfig
from DeepDenoiseLib.denoise.noise_models import estimate_poisson_gaussian, fit_noise_model
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from DeepDenoiseLib.denoise.vst import (
    anscombe_forward,
    anscombe_inverse,
    speckle_log_forward,
    speckle_log_inverse,
    speckle_log_sigma,
    speckle_looks_from_log_sigma,
)
from Testing.support.phantoms import single_thread, smooth_phantom, tiny_config  # noqa: F401


@pytest.mark.parametrize("gain, read_sigma", [(1.0, 0.0), (1 / 60, 0.0), (0.5, 0.3)])
@pytest.mark.parametrize("signal", [0.5, 2.0, 10.0])
def test_anscombe_stabilises_the_variance_and_its_inverse_is_unbiased(gain: float, read_sigma: float, signal: float) -> None:
    """Monte Carlo: the transformed noise has a standard deviation near 1 once there are a few photons,
    and the inverse of the transformed mean returns the signal (a plain algebraic inverse would not)."""
    rng = np.random.default_rng(0)
    samples = gain * rng.poisson(signal / gain, 200_000) + rng.normal(0.0, read_sigma, 200_000)
    transformed = anscombe_forward(samples, gain, read_sigma).astype(np.float64)
    if signal / gain >= 2 or read_sigma > 0:
        assert transformed.std() == pytest.approx(1.0, abs=0.12)
    recovered = float(anscombe_inverse(np.array([transformed.mean()]), gain, read_sigma)[0])
    assert recovered == pytest.approx(signal, rel=0.04)


def test_anscombe_inverse_is_zero_below_the_noise_floor() -> None:
    values = anscombe_inverse(np.array([-1.0, 0.0, 0.5, 1.0, 1.2247, 3.0]), gain=1.0)
    assert np.all(values[:5] <= 1e-3)
    assert values[5] > 1.0


@pytest.mark.parametrize("looks", [1.0, 4.0, 25.0])
def test_log_speckle_inverse_is_unbiased_and_looks_are_recovered(looks: float) -> None:
    rng = np.random.default_rng(1)
    speckle = rng.gamma(shape=looks, scale=1.0 / looks, size=200_000)
    logged = speckle_log_forward(3.0 * speckle, floor=1e-9).astype(np.float64)
    assert logged.std() == pytest.approx(speckle_log_sigma(looks), rel=0.02)
    assert float(speckle_log_inverse(np.array([logged.mean()]), looks)[0]) == pytest.approx(3.0, rel=0.01)
    assert speckle_looks_from_log_sigma(speckle_log_sigma(looks)) == pytest.approx(looks, rel=1e-6)


@pytest.mark.parametrize("peak", [20.0, 100.0])
def test_poisson_gain_is_estimated_from_one_noisy_volume(peak: float) -> None:
    """Measured on this phantom: the estimate reads within 10 % of the true gain (edges inflate it
    slightly); the read noise of pure Poisson data comes out near zero."""
    clean = smooth_phantom((32, 64, 64))
    noisy = add_poisson_noise(clean, peak, seed=3)
    gain, read_sigma = estimate_poisson_gaussian(noisy)
    true_gain = float(clean.max()) / peak
    assert gain == pytest.approx(true_gain, rel=0.15)
    assert read_sigma < 0.3 * np.sqrt(true_gain * clean.mean())


def test_poisson_gaussian_read_noise_is_estimated() -> None:
    clean = smooth_phantom((32, 64, 64))
    noisy = add_poisson_noise(clean, 50.0, seed=3) + add_gaussian_noise(np.zeros_like(clean), 0.03, seed=4)
    gain, read_sigma = estimate_poisson_gaussian(noisy)
    assert gain == pytest.approx(float(clean.max()) / 50.0, rel=0.2)
    assert read_sigma == pytest.approx(0.03, rel=0.3)


def test_gaussian_noise_is_not_taken_for_poisson() -> None:
    flat_noise = add_gaussian_noise(smooth_phantom((32, 64, 64)), 0.05, seed=2)
    gain, read_sigma = estimate_poisson_gaussian(flat_noise)
    assert read_sigma == pytest.approx(0.05, rel=0.25)
    assert gain * 1.0 < 0.25 * read_sigma**2  # the signal-dependent part is small at the brightest level


def test_fitted_models_use_given_parameters_and_estimate_the_rest() -> None:
    clean = smooth_phantom((16, 32, 32))
    rician = fit_noise_model(add_rician_noise(clean, 0.05, 0), NoiseConfig(model="rician"))
    assert rician.sigma == pytest.approx(0.05, rel=0.2)
    assert fit_noise_model(clean, NoiseConfig(model="gaussian", sigma=0.2)).sigma == 0.2
    poisson = fit_noise_model(add_poisson_noise(clean, 30.0, 0), NoiseConfig(model="poisson", gain=0.03, sigma=0.0))
    assert poisson.parameters["gain"] == 0.03 and poisson.parameters["read_sigma"] == 0.0
    speckle = fit_noise_model(add_speckle_noise(clean + 0.05, 0.5, 0), NoiseConfig(model="speckle", sigma=0.5))
    assert speckle.parameters["looks"] == pytest.approx(4.0)
    assert speckle.sigma == pytest.approx(speckle_log_sigma(4.0))


def test_rician_inverse_removes_the_noise_floor_in_air() -> None:
    transform = fit_noise_model(np.zeros((8, 8, 8), np.float32) + 1.0, NoiseConfig(model="rician", sigma=0.1))
    floor = 0.1 * np.sqrt(np.pi / 2)
    assert transform.inverse(np.array([floor * 0.9, 1.0], np.float32)).tolist() == pytest.approx([0.0, 1.0], abs=0.01)


def test_noise_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="gain"):
        NoiseConfig(model="gaussian", gain=0.1).validate()
    with pytest.raises(ValueError, match="gain"):
        NoiseConfig(model="poisson", gain=-1.0).validate()
    with pytest.raises(ValueError, match="speckle"):
        NoiseConfig(model="speckle", sigma=0.0).validate()
    with pytest.raises(ValueError, match="noise.model"):
        NoiseConfig(model="salt").validate()


def test_speckle_refuses_negative_intensities() -> None:
    with pytest.raises(InputError, match="negative"):
        fit_noise_model(np.linspace(-1, 1, 4096, dtype=np.float32).reshape(16, 16, 16), NoiseConfig(model="speckle"))


def test_uncertainty_is_propagated_through_the_inverse() -> None:
    """A spread measured in the Anscombe domain grows with the signal in intensity units, as Poisson
    noise does: sqrt(gain * x) per unit of transformed spread."""
    transform = fit_noise_model(
        add_poisson_noise(smooth_phantom((16, 32, 32)), 50.0, 0), NoiseConfig(model="poisson", gain=0.02, sigma=0.0)
    )
    levels = np.array([0.05, 0.2, 0.8], np.float32)
    spread = transform.inverse_spread(transform.forward(levels), np.ones(3, np.float32))
    assert spread.tolist() == pytest.approx(np.sqrt(0.02 * levels).tolist(), rel=0.1)


# Poisson (peak 15 photons) and speckle (0.3 relative spread) on the smooth phantom, blind-spot method with
# fixed steps. Measured, two training seeds each: Poisson 22.1 dB noisy -> 32.3 / 32.8 dB with the
# Poisson model (32.5 / 33.2 dB with the Gaussian one); speckle 23.2 dB -> 33.3 / 31.5 dB (32.5 / 32.4
# with the Gaussian one). The asserted 6 dB keep a margin below the worst seed.
SIGNAL_DEPENDENT_CASES = {
    "poisson": (lambda clean: add_poisson_noise(clean, 15.0, seed=1), 0.0),
    "speckle": (lambda clean: add_speckle_noise(clean + 0.02, 0.3, seed=1), 0.02),
}


@pytest.mark.parametrize("model", list(SIGNAL_DEPENDENT_CASES))
def test_signal_dependent_models_denoise_end_to_end(model: str) -> None:
    make_noisy, offset = SIGNAL_DEPENDENT_CASES[model]
    clean = smooth_phantom((32, 64, 64)) + offset
    noisy = make_noisy(clean - offset)
    sections = {
        "model": {"depth": 1, "base_channels": 8, "context_slices": 2},
        "training": {"patch_size": 32, "batch_size": 4, "learning_rate": 0.005, "steps_per_epoch": 150, "max_epochs": 2},
        "noise": {"model": model},
        "prediction": {"tta": True},
    }
    result = denoise_volume(Volume(noisy), tiny_config("blindspot", **sections))
    before = psnr(clean, noisy, data_range=1.0)
    after = psnr(clean, result.denoised.array, data_range=1.0)
    assert after - before >= 6.0, f"{model}: {before:.2f} -> {after:.2f} dB"
    assert result.summary["noise_model"] == model and result.summary["noise_parameters"]
    assert result.uncertainty is not None and np.all(np.isfinite(result.uncertainty.array))
    np.testing.assert_allclose(result.residual.array, noisy - result.denoised.array, atol=1e-5)


def test_config_round_trips_the_new_noise_fields() -> None:
    config = DenoiseConfig(noise=NoiseConfig(model="poisson", gain=0.5, sigma=0.1))
    assert DenoiseConfig.from_dict(config.to_dict()).noise == config.noise
