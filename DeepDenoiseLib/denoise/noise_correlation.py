"""Spatially correlated noise: how alike the noise of neighbouring voxels is, estimated from the noisy
volume alone, and the convolution kernels that give white noise that correlation.

Reconstructed scans seldom have white noise: k-space filtering, zero-filling and interpolation make
neighbouring voxels' noise alike (the real MR scans in bench/README.md: 0.19-0.54 one voxel apart
within their slices). Two things go wrong when such noise is taken for white. The finest-scale noise
estimate reads low (0.023 for a true 0.05 at a correlation of 0.5), because the noise has little
power at the finest scale. And R2R's input and target noises are independent only when the added
noise has the covariance of the volume's own (Pang et al., CVPR 2021): recorrupted with white noise,
the network learns to keep the correlated part. Measured on the template with correlated Rician
noise, the default gained 1.1 dB that way and gains 4.8 dB recorrupting alike (bench/README.md).

The model is separable: the noise covariance between voxels ``k`` apart is
``sigma**2 * prod_a r_a(k_a)`` over the axes ``a`` (k, j, i). The product over the three axes of
two-voxel differences ``(x[i + d_a] - x[i]) / sqrt(2)`` (lag ``d_a`` along axis ``a``) then has the
variance ``sigma**2 * prod_a (1 - r_a(d_a))``. Anatomy reaches it only where it varies along all three
axes at once; those voxels are few in flat tissue, and a median ignores them (as
``core.metrics.estimate_noise_sigma``, which is this at lag 1 on every axis, on non-overlapping
blocks). With the lag along one axis from ``FAR_LAG`` on, taken to be past the correlation, the
ratios give ``r_a(lag) = 1 - V(lag) / V(far)``, and ``sigma`` follows from the lag-1 variance.

What anatomy does reach those products grows with the lag and would read as correlation, the more
the weaker the noise. Two things keep it out: only the flattest tissue is used, and the growth past
the correlation is fitted and taken out (``_axis_correlation``). On the template with white noise at
1-10 % of the range the estimate then reads at most 0.06 (bench/noise_correlation_check.py); with
noise far below the anatomy's contrast the anatomy still reads as correlation. Below
``WHITE_BELOW`` at one voxel on every axis, the noise is taken for white.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from DeepDenoiseLib.core.metrics import bright_foreground

#: Lags (voxels) whose correlation is estimated; from ``FAR_LAG`` to ``FARTHEST_LAG`` the lags taken to
#: be past the correlation, where only anatomy still makes the differences grow.
LAGS = 3
FAR_LAG = 4
FARTHEST_LAG = 8
#: Below this correlation of neighbouring voxels on every axis the noise is taken for white.
WHITE_BELOW = 0.1
#: The flat tissue the estimate looks at: in the foreground (core.metrics.bright_foreground), the
#: voxels with the smallest smoothed gradient, the first of these shares of them that holds
#: ``MIN_VOXELS``. The flatter, the less anatomy reaches the differences.
FLAT_SHARES = (0.08, 0.15, 0.3)
#: Fewer voxels than this in the flat tissue: no estimate (white is assumed).
MIN_VOXELS = 2000
#: A foreground under this share of the varying voxels is a thin bright structure (see flat_tissue).
THIN_FOREGROUND = 0.2
#: Larger volumes are estimated on their central block of this edge (time and memory stay bounded;
#: the noise is taken to be alike over the volume).
MAX_EDGE = 160
_MAD_TO_SIGMA = 0.6744897501960817
#: The four diagonals of a box of voxels, each by the corner it starts at (it ends at the opposite one).
_DIAGONALS = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1))


@dataclass(frozen=True)
class NoiseCorrelation:
    """The noise's marginal standard deviation ``sigma`` (intensity units) and its correlation
    ``lags[a][d - 1]`` between voxels ``d`` apart along axis ``a`` (k, j, i)."""

    sigma: float
    lags: tuple[tuple[float, ...], ...]

    @property
    def is_white(self) -> bool:
        return max(axis[0] for axis in self.lags) < WHITE_BELOW

    def kernels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One symmetric 1D kernel per axis (k, j, i), each of unit energy: white noise convolved with
        them along their axes has unit variance and this correlation (up to truncation at ``LAGS``)."""
        return tuple(_kernel(axis) for axis in self.lags)  # type: ignore[return-value]

    def colour(self, white: np.ndarray) -> np.ndarray:
        """``white`` (``[k, j, i]``) convolved with the kernels: noise of unit variance with this correlation."""
        coloured = np.asarray(white, dtype=np.float32)
        for axis, kernel in enumerate(self.kernels()):
            coloured = ndimage.convolve1d(coloured, kernel.astype(np.float32), axis=coloured.ndim - 3 + axis, mode="wrap")
        return coloured

    def to_summary(self) -> dict[str, object]:
        return {"sigma": self.sigma, "neighbour_correlation_kji": [round(axis[0], 3) for axis in self.lags]}


def estimate_noise_correlation(array: np.ndarray, magnitude: bool = True) -> Optional[NoiseCorrelation]:
    """The noise's correlation and marginal sigma in the flat tissue of ``array`` (``[k, j, i]``, or a
    series ``[t, k, j, i]``: the median over up to three frames spread over it; ``magnitude``: a
    magnitude image, whose background is left out, see :func:`flat_tissue`); None when the volume
    is too small or too thin (under ``FAR_LAG + 2`` voxels along an axis) or holds too little flat tissue."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 4:
        picks = np.unique(np.linspace(0, len(array) - 1, num=min(3, len(array))).round().astype(int))
        found = [estimate for estimate in (estimate_noise_correlation(array[index], magnitude) for index in picks) if estimate is not None]
        if not found:
            return None
        median = np.median([estimate.lags for estimate in found], axis=0)
        sigma = float(np.median([estimate.sigma for estimate in found]))
        return NoiseCorrelation(sigma, tuple(tuple(float(value) for value in axis) for axis in median))
    if array.ndim != 3 or min(array.shape) < FAR_LAG + 2:
        return None
    array = array[tuple(slice(max(0, (n - MAX_EDGE) // 2), max(0, (n - MAX_EDGE) // 2) + MAX_EDGE) for n in array.shape)]
    flat = flat_tissue(array, magnitude)
    if flat is None:
        return None

    def variance(axis: int, lag: int) -> float:
        """The robust variance of the product at ``lag`` along ``axis`` and 1 along the others."""
        lags = (lag if axis == 0 else 1, lag if axis == 1 else 1, lag if axis == 2 else 1)
        return _product_difference_variance(array, flat, lags)

    correlation = [
        _axis_correlation({lag: variance(axis, lag) for lag in range(1, min(FARTHEST_LAG, array.shape[axis] - 2) + 1)}) for axis in range(3)
    ]
    nearest = variance(0, 1)
    sigma = float(np.sqrt(nearest / np.prod([1.0 - axis[0] for axis in correlation])))
    return NoiseCorrelation(sigma, tuple(correlation))


def _axis_correlation(variances: dict[int, float]) -> tuple[float, ...]:
    """The correlation at lags 1 to ``LAGS`` along one axis from the robust variances of the products
    at each lag along it (``variances``, from lag 1 to at least ``FAR_LAG``).

    Past the correlation the noise's share is constant and what still grows is anatomy. Where three
    or more far lags were measured, that growth is fitted as a line (slope at least 0) and taken out
    of every lag, counted from lag 1: without it, the anatomy of coarse real scans reads as
    correlation (0.2 across the independent slices of a 2D EPI, 0.04 with it; bench/README.md)."""
    far = [lag for lag in variances if lag >= FAR_LAG]
    levels = np.array([variances[lag] for lag in far])
    slope = max(float(np.polyfit(far, levels, 1)[0]), 0.0) if len(far) >= 3 else 0.0
    plateau = float(np.mean(levels)) - slope * (float(np.mean(far)) - 1.0)  # the far line at lag 1
    if not plateau > 0:
        return (0.0,) * LAGS
    lowest = (0.0,) + (-0.5,) * (LAGS - 1)  # next neighbours' noise is not anti-correlated; farther may be
    return tuple(float(np.clip(1.0 - (variances[lag] - slope * (lag - 1)) / plateau, lowest[lag - 1], 0.95)) for lag in range(1, LAGS + 1))


def flat_tissue(array: np.ndarray, magnitude: bool = True) -> Optional[np.ndarray]:
    """The flattest voxels (by the gradient of the volume smoothed over 1.5 voxels), where anatomy least
    reaches the differences: the smallest of ``FLAT_SHARES`` of the candidates that holds
    ``MIN_VOXELS``; None when even the largest does not. The candidates: the foreground
    (core.metrics.bright_foreground), since a magnitude image's background noise is not Gaussian. But when a non-``magnitude`` volume's foreground is under ``THIN_FOREGROUND`` of
    its voxels that are not locally constant, it is a thin bright structure (the skull of a CT in
    Hounsfield units), whose edges would read as correlation: every such voxel is a candidate then."""
    candidates = bright_foreground(array)
    if not magnitude:
        varying = _varying(array)
        if _is_thin(candidates, varying):
            candidates = varying
    share = next((share for share in FLAT_SHARES if share * np.count_nonzero(candidates) >= MIN_VOXELS), None)
    if share is None:
        return None
    gradient = ndimage.gaussian_gradient_magnitude(array, 1.5)
    return candidates & (gradient <= np.percentile(gradient[candidates], 100 * share))


def has_thin_foreground(volume: np.ndarray) -> bool:
    """Whether the foreground found by the bright end (core.metrics.bright_foreground) is under
    ``THIN_FOREGROUND`` of the voxels that are not locally constant: a thin bright structure, such as
    the skull of a CT in Hounsfield units, whose edges would be read as noise or correlation. For a
    series ``[t, k, j, i]``, its middle frame."""
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim == 4:
        volume = volume[len(volume) // 2]
    return _is_thin(bright_foreground(volume), _varying(volume))


def _is_thin(foreground: np.ndarray, varying: np.ndarray) -> bool:
    """The rule of :func:`has_thin_foreground`, on masks already made."""
    return bool(np.count_nonzero(foreground) < THIN_FOREGROUND * np.count_nonzero(varying))


def _varying(volume: np.ndarray) -> np.ndarray:
    """The voxels that differ from a neighbour: not padding or clipped air."""
    return np.asarray(ndimage.maximum_filter(volume, size=3) > ndimage.minimum_filter(volume, size=3))


def _product_difference_variance(array: np.ndarray, inside: np.ndarray, lags: tuple[int, int, int]) -> float:
    """The robust variance (median absolute value) of the product over axes of the differences at
    ``lags``, over the flat tissue ``inside``. Each difference spans a box of voxels, and it counts once
    for every diagonal of that box whose two ends are inside: all four diagonals alike, so that the
    estimate is the same whichever way the volume's slices, rows and columns are stored. Counting one
    diagonal alone read nibabel's EPI frame as sigma 20.1 and, with its slices stored in the other
    order (as its DICOM series reads), 14.7 (bench/README.md, Real volumes)."""
    product = array
    for axis, lag in enumerate(lags):
        size = product.shape[axis]
        product = (np.take(product, range(lag, size), axis=axis) - np.take(product, range(size - lag), axis=axis)) / np.float32(np.sqrt(2))

    def corner(offsets: tuple[int, ...]) -> np.ndarray:
        """Whether the box's corner at ``offsets`` (0: its first voxel along the axis, 1: its last) is inside."""
        return inside[tuple(slice(offset * lag, offset * lag + extent) for offset, lag, extent in zip(offsets, lags, product.shape))]

    values = np.concatenate([product[corner(first) & corner(tuple(1 - offset for offset in first))] for first in _DIAGONALS])
    return float(np.median(np.abs(values)) / _MAD_TO_SIGMA) ** 2 if values.size else 0.0


def _kernel(correlation: tuple[float, ...]) -> np.ndarray:
    """The symmetric kernel of ``2 * len(correlation) + 1`` taps whose autocorrelation is about
    ``1, correlation...``: the square root of the (non-negative part of the) power spectrum."""
    size = 64
    frequencies = np.arange(size) * 2 * np.pi / size
    spectrum = 1.0 + 2.0 * sum(value * np.cos((lag + 1) * frequencies) for lag, value in enumerate(correlation))
    taps = np.real(np.fft.ifft(np.sqrt(np.clip(spectrum, 0.0, None))))
    radius = len(correlation)
    kernel = np.concatenate([taps[-radius:], taps[: radius + 1]]) if radius else taps[:1]
    return (kernel / np.sqrt(np.sum(kernel**2))).astype(np.float64)
