"""The Anscombe transform for Poisson (photon-counting) noise, its exact unbiased inverse, and a gain estimate.

This is how a Gaussian denoiser such as BM4D is applied to Poisson data: ``2 sqrt(counts + 3/8)`` has
approximately unit variance whatever the count, the denoiser runs there with sigma 1, and the exact
unbiased inverse maps the result back (a plain algebraic inverse would brighten dark regions).
Intensities are ``gain * counts``; ``gain`` (intensity per photon) is known for simulated data or
estimated with :func:`estimate_gain`.
"""

from __future__ import annotations

import math

import numpy as np

_SQRT_3_2 = math.sqrt(1.5)
# Below this transformed value the closed-form inverse leaves its monotone branch; the signal there is 0.
_INVERSE_FLOOR = 0.8
# median(|g|) = 0.6745 sigma for g ~ N(0, sigma^2).
_MAD_TO_SIGMA = 0.6744897501960817


def anscombe_forward(image: np.ndarray, gain: float) -> np.ndarray:
    """``2 sqrt(image / gain + 3/8)``: Poisson counts scaled by ``gain`` become unit-variance noise."""
    _check_gain(gain)
    counts = np.asarray(image, dtype=np.float64) / gain
    return 2.0 * np.sqrt(np.maximum(counts, 0.0) + 0.375)


def anscombe_inverse(transformed: np.ndarray, gain: float) -> np.ndarray:
    """The exact unbiased inverse in its closed form (Mäkitalo & Foi, IEEE TIP 2011), times ``gain``:
    it maps E[2 sqrt(counts + 3/8)], what the denoiser estimates, to the expected count."""
    _check_gain(gain)
    d = np.maximum(np.asarray(transformed, dtype=np.float64), _INVERSE_FLOOR)
    counts = 0.25 * d**2 + 0.25 * _SQRT_3_2 / d - 1.375 / d**2 + 0.625 * _SQRT_3_2 / d**3 - 0.125
    counts = np.where(np.asarray(transformed) < _INVERSE_FLOOR, 0.0, np.maximum(counts, 0.0))
    return gain * counts


def estimate_gain(image: np.ndarray, bins: int = 16) -> float:
    """The intensity of one photon, from the noisy image alone: Poisson noise has variance ``gain *
    mean``. The finest diagonal Haar detail of each 2x2x2 block holds the noise (variance: the block's
    mean variance) and little anatomy; blocks are grouped by mean intensity, each group's noise
    variance is measured robustly (median absolute detail) and the gain is the median of the groups'
    variance-to-mean ratios. Dark blocks (below the 25th percentile of the non-empty ones) are left
    out: at a few photons the detail is too discrete for the median."""
    values = np.asarray(image, dtype=np.float64)
    if values.ndim != 3 or min(values.shape) < 2:
        raise ValueError(f"the gain estimate needs a 3D image at least 2 voxels wide; got shape {values.shape}")
    even = values[tuple(slice(0, extent - extent % 2) for extent in values.shape)]
    detail = np.zeros(tuple(extent // 2 for extent in even.shape))
    block_mean = np.zeros_like(detail)
    for corner in np.ndindex(2, 2, 2):
        sample = even[tuple(slice(offset, None, 2) for offset in corner)]
        detail += (-1) ** sum(corner) * sample
        block_mean += sample
    detail /= math.sqrt(8.0)
    block_mean /= 8.0
    positive = block_mean > 0
    if positive.sum() < bins * 100:
        raise ValueError("too few non-empty voxels to estimate the Poisson gain")
    means, details = block_mean[positive], detail[positive]
    edges = np.quantile(means, np.linspace(0.25, 1.0, bins + 1))
    ratios = []
    for low, high in zip(edges[:-1], edges[1:]):
        group = (means >= low) & (means <= high)
        variance = (np.median(np.abs(details[group])) / _MAD_TO_SIGMA) ** 2
        ratios.append(variance / np.mean(means[group]))
    return float(np.median(ratios))


def _check_gain(gain: float) -> None:
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"the gain (intensity per photon) must be a positive number; got {gain!r}")
