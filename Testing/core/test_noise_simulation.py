"""Tests of the seeded noise simulators: reproducibility, the Rician formula and each model's statistics."""

from __future__ import annotations

import numpy as np
import pytest

from DeepDenoiseLib.core.noise_simulation import (
    NOISE_MODELS,
    add_gaussian_noise,
    add_noise,
    add_poisson_noise,
    add_rician_noise,
    add_speckle_noise,
)

LEVELS = {"gaussian": 0.1, "poisson": 50.0, "rician": 0.1, "speckle": 0.3}


def _phantom(shape: tuple[int, ...] = (8, 16, 16)) -> np.ndarray:
    return np.linspace(0.1, 1.0, int(np.prod(shape))).reshape(shape)


@pytest.mark.parametrize("model", NOISE_MODELS)
def test_same_seed_same_noise_other_seed_other_noise(model: str) -> None:
    clean = _phantom()
    first = add_noise(clean, model, LEVELS[model], seed=7)
    assert first.dtype == np.float32 and first.shape == clean.shape
    assert np.array_equal(first, add_noise(clean, model, LEVELS[model], seed=7))
    assert not np.array_equal(first, add_noise(clean, model, LEVELS[model], seed=8))


@pytest.mark.parametrize("model", NOISE_MODELS)
def test_input_is_left_unchanged(model: str) -> None:
    for dtype in (np.float64, np.float32):
        clean = _phantom().astype(dtype)
        before = clean.copy()
        add_noise(clean, model, LEVELS[model], seed=1)
        assert np.array_equal(clean, before) and clean.dtype == dtype


def test_add_noise_gives_each_models_own_noise() -> None:
    clean = _phantom()
    direct = {
        "gaussian": add_gaussian_noise(clean, 0.1, 3),
        "poisson": add_poisson_noise(clean, 50.0, 3),
        "rician": add_rician_noise(clean, 0.1, 3),
        "speckle": add_speckle_noise(clean, 0.3, 3),
    }
    for model, expected in direct.items():
        assert np.array_equal(add_noise(clean, model, LEVELS[model], 3), expected)


def test_unknown_model_and_bad_levels_are_refused() -> None:
    clean = _phantom()
    with pytest.raises(ValueError, match="gaussian, poisson, rician, speckle"):
        add_noise(clean, "salt-and-pepper", 0.1, 0)
    with pytest.raises(ValueError, match="sigma"):
        add_gaussian_noise(clean, -0.1, 0)
    with pytest.raises(ValueError, match="peak"):
        add_poisson_noise(clean, 0.0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        add_poisson_noise(clean - 0.5, 10.0, 0)


def test_rician_matches_the_benchmark_formula_bit_for_bit() -> None:
    clean = _phantom((6, 20, 24)).astype(np.float32)
    sigma = 0.07
    rng = np.random.default_rng(1234)
    g1 = rng.standard_normal(clean.shape)
    g2 = rng.standard_normal(clean.shape)
    x = clean.astype(np.float64)
    expected = np.sqrt((x + sigma * g1) ** 2 + (sigma * g2) ** 2).astype(np.float32)
    assert np.array_equal(add_rician_noise(clean, sigma, 1234), expected)


def test_rician_background_is_rayleigh() -> None:
    noisy = add_rician_noise(np.zeros((40, 50, 50)), 0.2, 5)
    assert noisy.min() >= 0
    assert noisy.mean() == pytest.approx(0.2 * np.sqrt(np.pi / 2), rel=0.01)


def test_gaussian_noise_has_the_requested_sigma() -> None:
    clean = _phantom((20, 50, 50))
    residual = add_gaussian_noise(clean, 0.05, 2) - clean
    assert abs(residual.mean()) < 0.002
    assert residual.std() == pytest.approx(0.05, rel=0.02)


def test_poisson_keeps_the_mean_and_has_shot_noise_variance() -> None:
    levels = (0.25, 0.5, 1.0)
    clean = np.repeat(np.array(levels), 40000).reshape(3, 200, 200)
    peak = 100.0
    noisy = add_poisson_noise(clean, peak, 11).astype(np.float64)
    scale = peak / clean.max()
    counts = noisy * scale
    assert np.allclose(counts, np.round(counts), atol=1e-3)
    for level, values in zip(levels, noisy):
        assert values.mean() == pytest.approx(level, rel=0.01)
        # Counts have variance equal to their mean, so the image has variance level / scale.
        assert values.var() == pytest.approx(level / scale, rel=0.05)


def test_poisson_of_a_black_image_stays_black() -> None:
    assert not add_poisson_noise(np.zeros((4, 4)), 10.0, 0).any()


def test_speckle_is_multiplicative_with_mean_one() -> None:
    clean = np.full((20, 60, 60), 2.0)
    clean[10:] = 0.5
    sigma = 0.4
    noisy = add_speckle_noise(clean, sigma, 9).astype(np.float64)
    assert noisy.min() >= 0
    ratio = noisy / clean
    assert ratio.mean() == pytest.approx(1.0, abs=0.01)
    assert ratio.std() == pytest.approx(sigma, rel=0.03)
    assert noisy[:10].mean() == pytest.approx(2.0, rel=0.01)
    assert noisy[10:].mean() == pytest.approx(0.5, rel=0.01)
    assert np.array_equal(add_speckle_noise(clean, 0.0, 9), clean.astype(np.float32))
