"""Variance-stabilising transforms and their unbiased inverses, for signal-dependent noise.

A denoiser that assumes one noise level everywhere (the blind-spot fusion does) under-smooths bright
regions of photon-limited images and over-smooths dark ones. These transforms turn the noise into
approximately unit-variance (Anscombe) or additive (log) noise, so the denoiser works in a domain where
its assumption holds; the inverses remove the bias that a plain algebraic inverse would leave.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma, polygamma

_SQRT_3_2 = math.sqrt(1.5)
#: Below this transformed value the closed-form inverse leaves its valid branch; the signal there is 0.
_INVERSE_FLOOR = 0.8


def anscombe_forward(image: np.ndarray, gain: float, read_sigma: float = 0.0) -> np.ndarray:
    """The generalised Anscombe transform for Poisson-Gaussian noise: ``image = gain * Poisson(x / gain)
    + N(0, read_sigma**2)`` becomes approximately Gaussian with unit variance."""
    _check_gain(gain)
    values = np.asarray(image, dtype=np.float64)
    inside = gain * values + 0.375 * gain**2 + read_sigma**2
    return (2.0 / gain * np.sqrt(np.maximum(inside, 0.0))).astype(np.float32)


def anscombe_inverse(transformed: np.ndarray, gain: float, read_sigma: float = 0.0) -> np.ndarray:
    """The exact unbiased inverse in its closed-form approximation (Mäkitalo & Foi 2011, 2013): maps the
    denoised transformed value, an estimate of E[f(z)], back to the signal x, not to f^-1 of it (which
    would bias dark regions upward)."""
    _check_gain(gain)
    d = np.asarray(transformed, dtype=np.float64)
    safe = np.maximum(d, _INVERSE_FLOOR)
    counts = 0.25 * safe**2 + 0.25 * _SQRT_3_2 / safe - 1.375 / safe**2 + 0.625 * _SQRT_3_2 / safe**3 - 0.125 - (read_sigma / gain) ** 2
    counts = np.where(d < _INVERSE_FLOOR, 0.0, np.maximum(counts, 0.0))
    return (gain * counts).astype(np.float32)


def speckle_log_forward(image: np.ndarray, floor: float) -> np.ndarray:
    """``log(max(image, floor))``: multiplicative speckle becomes additive noise of constant variance.
    ``floor`` (a small positive intensity) keeps zero-valued voxels finite."""
    if not floor > 0:
        raise ValueError(f"the log transform needs a positive floor; got {floor!r}")
    return np.log(np.maximum(np.asarray(image, dtype=np.float64), floor)).astype(np.float32)


def speckle_log_inverse(transformed: np.ndarray, looks: float) -> np.ndarray:
    """``exp`` minus the log-domain bias: the log of gamma speckle with ``looks`` looks has mean
    ``digamma(L) - log(L)``, not 0, so a plain ``exp`` would darken the result."""
    return np.exp(np.asarray(transformed, dtype=np.float64) - speckle_log_bias(looks)).astype(np.float32)


def speckle_log_bias(looks: float) -> float:
    """E[log n] for gamma speckle ``n`` of mean 1 averaged over ``looks`` looks (negative)."""
    return float(digamma(looks) - math.log(looks))


def speckle_log_sigma(looks: float) -> float:
    """The standard deviation of log speckle: ``sqrt(trigamma(L))``."""
    return float(math.sqrt(polygamma(1, looks)))


def speckle_looks_from_log_sigma(log_sigma: float) -> float:
    """Inverts :func:`speckle_log_sigma` (monotone decreasing in ``L``) by bisection on a log scale."""
    if not log_sigma > 0:
        raise ValueError(f"the log-domain noise sigma must be positive; got {log_sigma!r}")
    low, high = 1e-2, 1e6
    for _ in range(200):
        middle = math.sqrt(low * high)
        if speckle_log_sigma(middle) > log_sigma:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


def _check_gain(gain: float) -> None:
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"the Poisson gain (intensity per photon) must be positive; got {gain!r}")
