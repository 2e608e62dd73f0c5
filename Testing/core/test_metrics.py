"""Tests of the quality metrics: known values, agreement with scikit-image, masks and the sigma estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from DeepDenoiseLib.core.metrics import estimate_noise_sigma, psnr, snr, snr_db, ssim, ssim_map
from DeepDenoiseLib.core.noise_simulation import add_gaussian_noise, add_rician_noise


def _noisy_pair(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.random(shape)
    return reference, reference + 0.2 * rng.standard_normal(shape)


def _grid(n: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k, j, i = np.mgrid[0:n, 0:n, 0:n] / float(n)
    return k, j, i


def _smooth_phantom() -> np.ndarray:
    k, j, i = _grid()
    blob = np.exp(-((k - 0.5) ** 2 + (j - 0.4) ** 2 + (i - 0.6) ** 2) / 0.05)
    return 0.5 + 0.25 * np.sin(2 * np.pi * i) * np.cos(2 * np.pi * j) + 0.2 * blob


def _piecewise_phantom() -> np.ndarray:
    k, j, i = _grid()
    r = np.sqrt((k - 0.5) ** 2 + (j - 0.5) ** 2 + (i - 0.5) ** 2)
    box = (abs(k - 0.3) < 0.1) & (abs(j - 0.6) < 0.15) & (abs(i - 0.5) < 0.2)
    return 0.3 * (r < 0.4) + 0.4 * (r < 0.25) + 0.3 * box


# PSNR


def test_psnr_of_a_constant_offset_is_known() -> None:
    reference = np.zeros((10, 10))
    assert psnr(reference, reference + 0.1, data_range=1.0) == pytest.approx(20.0, abs=1e-9)


def test_psnr_default_range_is_the_reference_range() -> None:
    reference = np.linspace(0.0, 2.0, 100).reshape(10, 10)
    assert psnr(reference, reference + 0.1) == pytest.approx(20 * math.log10(2.0 / 0.1), abs=1e-9)


def test_psnr_mask_restricts_the_error() -> None:
    reference = np.linspace(0.0, 1.0, 100).reshape(10, 10)
    mask = np.zeros((10, 10), dtype=bool)
    mask[:5] = True
    test = reference + np.where(mask, 0.1, 0.5)
    assert psnr(reference, test, mask=mask) == pytest.approx(20.0, abs=1e-9)
    assert psnr(reference, test) < 10.0
    assert psnr(reference, np.where(mask, reference, 0.0), mask=mask) == math.inf


def test_psnr_of_identical_images_is_infinite() -> None:
    reference, _ = _noisy_pair((8, 8, 8), 0)
    assert psnr(reference, reference.copy()) == math.inf


def test_psnr_agrees_with_scikit_image() -> None:
    reference, test = _noisy_pair((16, 20, 24), 1)
    expected = peak_signal_noise_ratio(reference, test, data_range=1.0)
    assert psnr(reference, test, data_range=1.0) == pytest.approx(expected, abs=1e-9)
    default = peak_signal_noise_ratio(reference, test, data_range=reference.max() - reference.min())
    assert psnr(reference, test) == pytest.approx(default, abs=1e-9)


def test_psnr_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)), data_range=1.0)
    with pytest.raises(ValueError, match="empty"):
        psnr(np.zeros((4, 4)), np.ones((4, 4)), data_range=1.0, mask=np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.zeros((4, 4)), np.ones((4, 4)))


# SSIM


@pytest.mark.parametrize("shape", [(64, 64), (24, 24, 24)])
@pytest.mark.parametrize("win_size", [7, 5])
def test_ssim_agrees_with_scikit_image(shape: tuple[int, ...], win_size: int) -> None:
    reference, test = _noisy_pair(shape, 2)
    expected, full = structural_similarity(reference, test, data_range=1.0, win_size=win_size, full=True)
    assert ssim(reference, test, data_range=1.0, win_size=win_size) == pytest.approx(expected, abs=1e-4)
    assert np.allclose(ssim_map(reference, test, data_range=1.0, win_size=win_size), full, atol=1e-6)
    mask = np.random.default_rng(3).random(shape) < 0.3
    masked = ssim(reference, test, data_range=1.0, mask=mask, win_size=win_size)
    assert masked == pytest.approx(full[mask].mean(), abs=1e-4)


@pytest.mark.parametrize("shape", [(64, 64), (24, 24, 24)])
def test_gaussian_ssim_agrees_with_scikit_image(shape: tuple[int, ...]) -> None:
    reference, test = _noisy_pair(shape, 4)
    expected = structural_similarity(reference, test, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(reference, test, data_range=1.0, gaussian_weights=True) == pytest.approx(expected, abs=1e-4)


def test_ssim_of_identical_images_is_one() -> None:
    reference, _ = _noisy_pair((20, 20, 20), 5)
    assert ssim(reference, reference.copy()) == pytest.approx(1.0, abs=1e-12)
    assert ssim(reference, reference.copy(), gaussian_weights=True) == pytest.approx(1.0, abs=1e-12)


def test_ssim_mask_picks_the_region() -> None:
    reference, noisy = _noisy_pair((40, 40), 6)
    test = reference.copy()
    test[:, 20:] = noisy[:, 20:]
    clean_side = np.zeros(reference.shape, dtype=bool)
    clean_side[:, :16] = True
    assert ssim(reference, test, data_range=1.0, mask=clean_side) == pytest.approx(1.0, abs=1e-9)
    whole = ssim(reference, test, data_range=1.0)
    noisy_side = ssim(reference, test, data_range=1.0, mask=~clean_side)
    assert noisy_side < whole < 0.95


def test_ssim_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="2D or 3D"):
        ssim(np.zeros((8, 8, 8, 8)), np.zeros((8, 8, 8, 8)), data_range=1.0)
    with pytest.raises(ValueError, match="odd"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)), data_range=1.0, win_size=4)
    with pytest.raises(ValueError, match="slice by slice"):
        ssim(np.zeros((3, 32, 32)), np.zeros((3, 32, 32)), data_range=1.0)


# SNR


def _disc_phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    j, i = np.mgrid[0:300, 0:300]
    r = np.hypot(j - 150, i - 150)
    signal = r < 80
    background = r > 110
    return 100.0 * signal, signal, background


def test_snr_from_the_signal_region() -> None:
    clean, signal, _ = _disc_phantom()
    noisy = add_gaussian_noise(clean, 5.0, 0)
    assert snr(noisy, signal) == pytest.approx(20.0, rel=0.02)
    assert snr_db(noisy, signal) == pytest.approx(20 * math.log10(snr(noisy, signal)), abs=1e-12)


def test_snr_from_a_rayleigh_background() -> None:
    clean, signal, background = _disc_phantom()
    noisy = add_rician_noise(clean, 5.0, 1)
    # The Rician mean at SNR 20 is sqrt(100**2 + 5**2) to first order, within 0.2 % of 100.
    assert snr(noisy, signal, background) == pytest.approx(20.0, rel=0.03)
    assert snr_db(noisy, signal, background) == pytest.approx(26.02, abs=0.3)


def test_snr_refuses_overlapping_masks() -> None:
    clean, signal, _ = _disc_phantom()
    with pytest.raises(ValueError, match="overlap"):
        snr(clean, signal, signal)


# Noise sigma estimate


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1, 0.2])
def test_sigma_estimate_on_a_smooth_phantom(sigma: float) -> None:
    noisy = add_gaussian_noise(_smooth_phantom(), sigma, 10)
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.10)


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1, 0.2])
def test_sigma_estimate_on_a_piecewise_constant_phantom(sigma: float) -> None:
    noisy = add_gaussian_noise(_piecewise_phantom(), sigma, 11)
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.20)


def test_sigma_estimate_inside_a_mask() -> None:
    phantom = _smooth_phantom()
    noisy = np.concatenate([add_gaussian_noise(phantom[:32], 0.03, 12), add_gaussian_noise(phantom[32:], 0.15, 13)])
    top = np.zeros(noisy.shape, dtype=bool)
    top[:32] = True
    assert estimate_noise_sigma(noisy, mask=top) == pytest.approx(0.03, rel=0.10)
    assert estimate_noise_sigma(noisy, mask=~top) == pytest.approx(0.15, rel=0.10)
    # Blocks straddling the mask's edge are left out: a mask reaching one slice into the noisier half
    # still measures the quiet half (counting those blocks would give about 5 % more).
    top[32] = True
    assert estimate_noise_sigma(noisy, mask=top) == pytest.approx(0.03, rel=0.03)


def test_sigma_estimate_works_in_2d_and_on_odd_shapes() -> None:
    noisy = add_gaussian_noise(np.full((101, 77), 3.0), 0.5, 14)
    assert estimate_noise_sigma(noisy) == pytest.approx(0.5, rel=0.10)


def test_sigma_estimate_in_a_rician_background_is_biased_low_as_documented() -> None:
    noisy = add_rician_noise(np.zeros((32, 64, 64)), 0.1, 15)
    assert estimate_noise_sigma(noisy) == pytest.approx(0.1 * math.sqrt(2 - math.pi / 2), rel=0.05)
