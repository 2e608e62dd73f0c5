"""Seeded noise simulation for benchmarks and tests: Gaussian, Poisson, Rician and speckle noise.

Every function draws from ``np.random.default_rng(seed)``, so one seed always gives the same noise,
computes in float64, returns a new float32 array and leaves its input untouched. Noise levels are in
the image's own intensity units (``sigma``) or, for Poisson noise, in photons (``peak``).
"""

from __future__ import annotations

import math

import numpy as np

NOISE_MODELS = ("gaussian", "poisson", "rician", "speckle")


def add_gaussian_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``clean + sigma * g`` with ``g`` standard normal: additive white noise (CT, generic)."""
    x = _as_float64(clean)
    _check_level("sigma", sigma)
    rng = np.random.default_rng(seed)
    return (x + sigma * rng.standard_normal(x.shape)).astype(np.float32)


def add_poisson_noise(clean: np.ndarray, peak: float, seed: int) -> np.ndarray:
    """Photon-counting (shot) noise, as in low-dose CT projections, PET/SPECT or fluorescence.

    The image is scaled so that its maximum becomes ``peak`` expected photons, each voxel's count is
    Poisson-sampled and the counts are scaled back. The output therefore keeps the input's range on
    average (its mean is ``clean``), with variance ``clean * max(clean) / peak``: a voxel at the
    maximum has an SNR of ``sqrt(peak)``, so a lower peak means a noisier image. The image must be
    non-negative (counts cannot be negative); an all-zero image stays all zero.
    """
    x = _as_float64(clean)
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"peak must be a positive number of photons; got {peak!r}")
    if x.size and x.min() < 0:
        raise ValueError("Poisson noise needs a non-negative image; shift or clip it first")
    top = x.max() if x.size else 0.0
    if top == 0:
        return x.astype(np.float32)
    scale = peak / top
    rng = np.random.default_rng(seed)
    return (rng.poisson(x * scale) / scale).astype(np.float32)


def add_rician_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Magnitude-MRI noise: complex Gaussian noise on real and imaginary channels, then the modulus.

    Computes exactly ``sqrt((x + sigma*g1)**2 + (sigma*g2)**2)`` in float64, where ``g1`` and then
    ``g2`` are each ``rng.standard_normal(shape)`` over the full shape from
    ``np.random.default_rng(seed)``, and casts the result to float32. The draw order and formula are
    fixed so that the project's shared benchmark volumes are reproduced bit-for-bit; do not reorder.
    Where the signal is zero the result is Rayleigh distributed (mean ``1.253 * sigma``).
    """
    x = _as_float64(clean)
    _check_level("sigma", sigma)
    rng = np.random.default_rng(seed)
    g1 = rng.standard_normal(x.shape)
    g2 = rng.standard_normal(x.shape)
    return np.sqrt((x + sigma * g1) ** 2 + (sigma * g2) ** 2).astype(np.float32)


def add_speckle_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Multiplicative ultrasound speckle: ``clean * n`` with ``n`` gamma distributed, mean 1, std ``sigma``.

    ``n ~ Gamma(shape=1/sigma**2, scale=sigma**2)`` is the intensity of fully developed speckle averaged
    over ``L = 1/sigma**2`` independent looks (``sigma = 1``: single-look, exponential). Unlike
    ``clean * (1 + sigma*g)`` it never flips a voxel's sign, and the output's mean is ``clean``.
    """
    x = _as_float64(clean)
    _check_level("sigma", sigma)
    if sigma == 0:
        return x.astype(np.float32)
    rng = np.random.default_rng(seed)
    looks = 1.0 / sigma**2
    return (x * rng.gamma(shape=looks, scale=1.0 / looks, size=x.shape)).astype(np.float32)


def add_noise(clean: np.ndarray, model: str, level: float, seed: int) -> np.ndarray:
    """Add noise of the named ``model`` (one of :data:`NOISE_MODELS`); ``level`` is the model's
    ``sigma``, or the ``peak`` photon count for ``"poisson"``."""
    if model == "gaussian":
        return add_gaussian_noise(clean, level, seed)
    if model == "poisson":
        return add_poisson_noise(clean, level, seed)
    if model == "rician":
        return add_rician_noise(clean, level, seed)
    if model == "speckle":
        return add_speckle_noise(clean, level, seed)
    raise ValueError(f"unknown noise model {model!r}; choose one of {', '.join(NOISE_MODELS)}")


def _as_float64(clean: np.ndarray) -> np.ndarray:
    # astype always copies, so nothing done afterwards can reach the caller's array.
    return np.asarray(clean).astype(np.float64)


def _check_level(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
