"""SURE, the self-check's estimate of a result's error, read in the tissue: a magnitude image's air has
Rayleigh noise, whose variance is well under sigma^2, and counting it made SURE read below zero. A
reading below zero that remains says the noise level taken is too high."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.noise_models import foreground
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from DeepDenoiseLib.denoise.self_check import IMPLAUSIBLE_ERROR_TO_NOISE, check_error_estimate
from Testing.support.phantoms import noisy_phantom, single_thread, smooth_phantom, tiny_config  # noqa: F401


def head_in_air(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A head filling under a fifth of its field, the rest air, and its magnitude with noise 0.05."""
    clean = np.zeros((40, 80, 80), dtype=np.float32)
    clean[10:30, 20:60, 20:60] = smooth_phantom((20, 40, 40)) + 0.5
    rng = np.random.default_rng(seed)
    noisy = np.sqrt((clean + 0.05 * rng.standard_normal(clean.shape)) ** 2 + (0.05 * rng.standard_normal(clean.shape)) ** 2)
    return clean, noisy.astype(np.float32)


def test_sure_in_the_tissue_reads_the_error_of_a_filter_on_a_magnitude_image_with_much_air() -> None:
    clean, noisy = head_in_air()
    tissue = foreground(noisy)
    assert tissue is not None and 0.05 < tissue.mean() < 0.4

    def smooth(values: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(values, 0.8)

    true_error = float(np.mean(((smooth(noisy) - clean) ** 2)[tissue])) / 0.05**2
    in_tissue = check_error_estimate(smooth, noisy, 0.05, region=tissue).error_to_noise
    everywhere = check_error_estimate(smooth, noisy, 0.05).error_to_noise
    assert in_tissue == pytest.approx(true_error, rel=0.15)
    assert everywhere is not None and everywhere < 0.0  # the air's Rayleigh noise, taken for Gaussian: an impossible error


def test_a_run_on_a_magnitude_image_with_much_air_estimates_a_positive_error_in_its_tissue() -> None:
    clean, noisy = head_in_air(seed=8)
    result = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "rician", "sigma": 0.05, "correlation": "white"}))
    check = result.summary["self_check"]
    assert check["passed"] and check["error_to_noise"] > 0.0  # counted over the air as well, it read about -0.5
    tissue = foreground(noisy)
    true_error = float(np.mean(((result.denoised.array - clean) ** 2)[tissue])) / 0.05**2
    assert check["error_to_noise"] == pytest.approx(true_error, abs=0.3)


@pytest.mark.parametrize("told", [1.0, 3.0])
def test_a_noise_level_taken_too_high_makes_sure_read_below_zero_and_the_run_says_so(told: float) -> None:
    clean, noisy = noisy_phantom((12, 48, 48), sigma=0.05, seed=5)
    sigma = told * float(np.std(noisy - clean))
    result = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "gaussian", "sigma": sigma, "correlation": "white"}))
    below_zero = result.summary["self_check"]["error_to_noise"] < IMPLAUSIBLE_ERROR_TO_NOISE
    warned = any("read" in warning and "below zero" in warning for warning in result.summary["warnings"])
    assert below_zero == warned == (told > 1.0)
