"""The noise level read in the air (of a magnitude image, or zero plus Gaussian noise), and its use as a
bound on the tissue's reading: fine anatomy on a coarse grid must not be taken for noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from DeepDenoiseLib.core.metrics import estimate_foreground_noise_sigma
from DeepDenoiseLib.denoise.background_noise import gaussian_background_sigma, rayleigh_background_sigma
from DeepDenoiseLib.denoise.noise_config import NoiseConfig
from DeepDenoiseLib.denoise.noise_models import MAX_TISSUE_OVER_AIR, fit_noise_model
from Testing.support.phantoms import smooth_phantom


def magnitude(clean: np.ndarray, sigma: float, seed: int = 0, channels: int = 1) -> np.ndarray:
    """The magnitude of ``clean`` plus complex Gaussian noise of ``sigma`` per channel (root sum of squares)."""
    rng = np.random.default_rng(seed)
    squares = (clean + sigma * rng.standard_normal(clean.shape)) ** 2 + (sigma * rng.standard_normal(clean.shape)) ** 2
    for _ in range(channels - 1):
        squares += (sigma * rng.standard_normal(clean.shape)) ** 2 + (sigma * rng.standard_normal(clean.shape)) ** 2
    return np.sqrt(squares).astype(np.float32)


def coarse_head(shape: tuple[int, int, int] = (40, 64, 64)) -> np.ndarray:
    """A head whose tissue varies from voxel to voxel (texture about a voxel wide, 0.1 deep, as anatomy
    on a coarse grid), with air around it."""
    clean = smooth_phantom(shape)
    texture = ndimage.gaussian_filter(np.random.default_rng(5).standard_normal(shape), 0.7)
    head = clean > 0.2
    return np.where(head, clean + 0.1 * texture / texture.std(), clean).astype(np.float32)


def test_the_air_of_a_single_channel_magnitude_reads_its_sigma_even_with_a_few_bright_voxels_in_it() -> None:
    noisy = magnitude(smooth_phantom((40, 64, 64)), 0.02)
    assert rayleigh_background_sigma(noisy) == pytest.approx(0.02, rel=0.03)
    assert rayleigh_background_sigma(np.stack([noisy, noisy, noisy])) == pytest.approx(0.02, rel=0.03)  # a series: its middle frame
    ghosted = noisy.copy()
    ghosted[:, :, :3] *= 4.0  # a ghost's band along one edge of the air: a heavy tail, as in dipy's S0_10slices
    assert rayleigh_background_sigma(ghosted) == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize(
    "case",
    ["four channels (noncentral chi)", "masked background", "no air", "noise as strong as the threshold", "not finite"],
)
def test_air_that_is_not_rayleigh_noise_reads_nothing(case: str) -> None:
    clean = smooth_phantom((40, 64, 64))
    if case == "four channels (noncentral chi)":
        noisy = magnitude(clean, 0.02, channels=4)
    elif case == "masked background":
        noisy = np.where(clean > 0.05, magnitude(clean, 0.02), 0.0).astype(np.float32)
    elif case == "no air":
        noisy = magnitude(clean[10:30, 20:44, 20:44] + 0.5, 0.02)
    elif case == "noise as strong as the threshold":
        noisy = magnitude(clean, 0.1)
    else:
        noisy = magnitude(clean, 0.02)
        noisy[0, 0, 0] = np.nan
    assert rayleigh_background_sigma(noisy) is None


def test_fine_anatomy_read_as_noise_is_bounded_by_the_air_and_said() -> None:
    noisy = magnitude(coarse_head(), 0.02, seed=1)
    assert estimate_foreground_noise_sigma(noisy) > 1.5 * 0.02  # the tissue reading takes the texture for noise
    noise = fit_noise_model(noisy, NoiseConfig(model="rician"))
    assert noise.sigma == pytest.approx(0.02, rel=0.05)
    assert noise.correlation is None
    assert any("fine anatomy was read as noise" in warning for warning in noise.warnings)


def test_a_tissue_reading_that_agrees_with_the_air_is_kept_and_gaussian_or_given_sigmas_are_not_bounded() -> None:
    noisy = magnitude(smooth_phantom((40, 64, 64)), 0.02, seed=2)
    noise = fit_noise_model(noisy, NoiseConfig(model="rician"))
    air = rayleigh_background_sigma(noisy)
    assert air is not None and noise.sigma <= MAX_TISSUE_OVER_AIR * air and not noise.warnings
    coarse = magnitude(coarse_head(), 0.02, seed=1)
    assert fit_noise_model(coarse, NoiseConfig(model="rician", sigma=0.05)).sigma == 0.05
    assert fit_noise_model(coarse, NoiseConfig(model="gaussian", sigma=0.05)).sigma == 0.05


def test_a_magnitude_image_denoised_as_gaussian_is_bounded_by_its_rayleigh_air() -> None:
    coarse = magnitude(coarse_head(), 0.02, seed=1)
    assert gaussian_background_sigma(coarse) is None  # its air is not centred on zero
    noise = fit_noise_model(coarse, NoiseConfig(model="gaussian"))
    assert noise.sigma == pytest.approx(0.02, rel=0.05)
    assert any("fine anatomy was read as noise" in warning for warning in noise.warnings)


def test_zero_plus_gaussian_air_reads_its_sigma_and_bounds_the_tissue() -> None:
    rng = np.random.default_rng(3)
    noisy = (coarse_head() + 0.02 * rng.standard_normal((40, 64, 64))).astype(np.float32)
    assert gaussian_background_sigma(noisy) == pytest.approx(0.02, rel=0.05)
    assert rayleigh_background_sigma(noisy) is None  # negative values: not a magnitude
    assert estimate_foreground_noise_sigma(noisy) > 1.5 * 0.02
    noise = fit_noise_model(noisy, NoiseConfig(model="gaussian"))
    assert noise.sigma == pytest.approx(0.02, rel=0.05)
    assert noise.correlation is None
    assert any("fine anatomy was read as noise" in warning for warning in noise.warnings)


@pytest.mark.parametrize("case", ["air not at zero (CT's -1000 HU)", "skewed air", "no air", "magnitude air"])
def test_air_that_is_not_zero_plus_gaussian_noise_reads_nothing(case: str) -> None:
    clean = smooth_phantom((40, 64, 64))
    noise = 0.02 * np.random.default_rng(4).standard_normal(clean.shape)
    if case == "air not at zero (CT's -1000 HU)":
        noisy = 1000.0 * (clean - 1.0) + 20.0 * noise / 0.02
    elif case == "skewed air":
        noisy = clean + np.abs(noise) - 0.01
    elif case == "no air":
        noisy = clean[10:30, 20:44, 20:44] + 0.5 + noise[10:30, 20:44, 20:44]
    else:
        noisy = magnitude(clean, 0.02)
    assert gaussian_background_sigma(noisy.astype(np.float32)) is None
