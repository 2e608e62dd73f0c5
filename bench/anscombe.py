"""The Anscombe transform for Poisson (photon-counting) noise, its exact unbiased inverse, and a gain estimate.

This is how a Gaussian denoiser such as BM4D is applied to Poisson data: ``2 sqrt(counts + 3/8)`` has
approximately unit variance whatever the count, the denoiser runs there with sigma 1, and the exact
unbiased inverse maps the result back (a plain algebraic inverse would brighten dark regions).
Intensities are ``gain * counts``; ``gain`` (intensity per photon) is known for simulated data or
estimated with :func:`estimate_gain`.
"""

from __future__ import annotations

import numpy as np

from DeepDenoiseLib.core.metrics import haar_detail_and_mean
from DeepDenoiseLib.denoise.vst import anscombe_forward, anscombe_inverse  # noqa: F401  (the transforms BM4D runs in)

# median(|g|) = 0.6745 sigma for g ~ N(0, sigma^2).
_MAD_TO_SIGMA = 0.6744897501960817


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
    detail, block_mean = haar_detail_and_mean(values)
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
