"""Rician statistics of magnitude MRI: the mean of a noisy magnitude and its inverse.

A magnitude voxel ``sqrt((x + n1)**2 + n2**2)`` is biased upward, by ``sigma * sqrt(pi/2)`` in air and
by about ``sigma**2 / (2x)`` where there is signal. A denoiser that averages magnitudes estimates this
biased mean; :func:`rician_unbias` maps it back to the underlying signal ``x`` (Gudbjartsson & Patz
1995; Koay & Basser 2006), which matters in dark, low-SNR tissue such as CSF in T1 images or
high-b diffusion images.
"""

from __future__ import annotations

import numpy as np
from scipy.special import i0e, i1e

# signal-to-noise ratios x / sigma at which the mean is tabulated; beyond the last the bias is < 0.01 sigma
_SNR_GRID = np.concatenate([np.linspace(0.0, 8.0, 801), np.linspace(8.01, 50.0, 4200)])


def rician_mean(signal: np.ndarray, sigma: float) -> np.ndarray:
    """The expected magnitude of a voxel with true signal ``signal`` and noise ``sigma``."""
    signal = np.abs(np.asarray(signal, dtype=np.float64))
    half_snr2 = signal**2 / (4.0 * sigma**2)
    return sigma * np.sqrt(np.pi / 2.0) * ((1.0 + 2.0 * half_snr2) * i0e(half_snr2) + 2.0 * half_snr2 * i1e(half_snr2))


def rician_unbias(mean_magnitude: np.ndarray, sigma: float) -> np.ndarray:
    """The signal whose Rician mean is ``mean_magnitude``: 0 at or below the noise floor
    ``sigma * sqrt(pi/2)``, unchanged where the bias is negligible (above 50 sigma)."""
    values = np.asarray(mean_magnitude, dtype=np.float64)
    if sigma <= 0:
        return values.astype(np.float32)
    table = rician_mean(_SNR_GRID * sigma, sigma)
    inverted = np.interp(values, table, _SNR_GRID * sigma, left=0.0, right=np.nan)
    return np.where(np.isnan(inverted), values, inverted).astype(np.float32)
