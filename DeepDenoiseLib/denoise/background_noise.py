"""The noise level read in the air around the body, where there is no anatomy.

The estimates in the tissue (the finest-scale details, and noise_correlation's flat-tissue products)
take whatever varies from voxel to voxel for noise. On a coarse grid with little noise, anatomy does:
the template on a 5 x 4 x 4 mm grid with Rician noise of 0.03 reads sigma 0.066 there, and a
correlation of 0.52 along one axis, and the default's result was 4.4 dB worse than its input, with
every self-check passing (they all take the sigma as given; bench/benchmark_coarse.py). The air of
a single-channel magnitude image holds noise alone, Rayleigh distributed, whatever its correlation:
its median is ``sigma * sqrt(2 ln 2)``. Where the air's quartiles sit where Rayleigh's do (relative to
its median), it bounds the tissue's reading (noise_models.MAX_TISSUE_OVER_AIR). Quartiles, not the
mean and variance, so that a few bright voxels (ghosts, a coil's glare) do not hide a Rayleigh air:
dipy's ``S0_10slices`` has one, its tail heavy. Many real scans do not qualify and are left alone:
multi-channel magnitudes (noncentral chi, as dipy's ``test_piesno``), or filtered backgrounds (as
``aniso_vox``).

A real-valued image whose air is zero plus Gaussian noise (a synthetic volume, the temporal mean of a
series, a reconstruction that keeps signed values) has the same weakness and the same remedy: where
the air's quartiles are symmetric about a median near zero, as a Gaussian's are, sigma is its
interquartile range over 1.349. The template on a 3 mm grid with white Gaussian noise of 0.004 (the
noise of the temporal mean of a 40-frame series) reads 3.4 times that in its tissue, and a run given
that reading returned 43.9 dB from an input of 47.9 dB with every self-check passing
(bench/benchmark_coarse.py --noise gaussian).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import ndimage

#: The air: farther than ``AIR_MARGIN`` voxels from where the local mean (``AIR_SMOOTHING`` voxels wide)
#: exceeds ``AIR_FRACTION`` of the bright end; that threshold must be ``AIR_CLEARANCE`` times the air's
#: mean, or the selection cuts into the air's noise and keeps its darker voxels (sigma reads low).
AIR_FRACTION = 0.1
AIR_SMOOTHING = 7
AIR_MARGIN = 3
AIR_CLEARANCE = 1.3
#: Fewer air voxels than this (not counting exact zeros, which are masking, not noise): no reading.
MIN_AIR_VOXELS = 2000
#: Rayleigh's median over sigma, its lower and upper quartiles over its median, and how far (as a
#: share) the air's quartiles over its median may be from them.
RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))
RAYLEIGH_QUARTILES = (math.sqrt(-2.0 * math.log(0.75)) / RAYLEIGH_MEDIAN, math.sqrt(2.0 * math.log(4.0)) / RAYLEIGH_MEDIAN)
QUARTILE_TOLERANCE = 0.05
#: A standard normal's interquartile range, and how far from zero a Gaussian air's median may be (as a
#: share of its sigma: the median of 2000 draws is within 0.1 sigma of zero 99.6 % of the time).
GAUSSIAN_IQR = 1.3489795
GAUSSIAN_MEDIAN_TOLERANCE = 0.1


def _air(volume: np.ndarray, keep: np.ndarray) -> Optional[tuple[np.ndarray, float]]:
    """The air's values (float64) where ``keep`` holds, and the threshold that drew the body, or None
    when the volume is not a 3D finite image (a series: its middle frame) or the air is too small."""
    if volume.ndim == 4:
        volume, keep = volume[len(volume) // 2], keep[len(keep) // 2]
    if volume.ndim != 3 or not np.all(np.isfinite(volume)):
        return None
    threshold = AIR_FRACTION * float(np.percentile(volume, 99.5))
    body = ndimage.binary_dilation(ndimage.uniform_filter(volume, size=AIR_SMOOTHING) > threshold, iterations=AIR_MARGIN)
    values = volume[~body & keep].astype(np.float64)
    return (values, threshold) if values.size >= MIN_AIR_VOXELS else None


def rayleigh_background_sigma(volume: np.ndarray) -> Optional[float]:
    """The noise sigma of a magnitude image ``[k, j, i]`` read in its air (see the module docstring),
    or None when the air is too small or its quartiles are not Rayleigh's. For a series
    ``[t, k, j, i]``, its middle frame."""
    volume = np.asarray(volume, dtype=np.float32)
    air = _air(volume, volume > 0)
    if air is None:
        return None
    values, threshold = air
    if threshold < AIR_CLEARANCE * float(values.mean()):
        return None  # a threshold within the noise that picks the air's darker voxels
    lower, median, upper = (float(value) for value in np.percentile(values, [25, 50, 75]))
    if not median > 0:
        return None
    if any(abs(quartile / median / rayleigh - 1.0) > QUARTILE_TOLERANCE for quartile, rayleigh in zip((lower, upper), RAYLEIGH_QUARTILES)):
        return None
    return median / RAYLEIGH_MEDIAN


def gaussian_background_sigma(volume: np.ndarray) -> Optional[float]:
    """The noise sigma of a real-valued image ``[k, j, i]`` whose air is zero plus Gaussian noise (see
    the module docstring), or None when the air is too small, not centred on zero or not symmetric.
    For a series ``[t, k, j, i]``, its middle frame."""
    volume = np.asarray(volume, dtype=np.float32)
    air = _air(volume, volume != 0)
    if air is None:
        return None
    values, threshold = air
    lower, median, upper = (float(value) for value in np.percentile(values, [25, 50, 75]))
    sigma = (upper - lower) / GAUSSIAN_IQR
    if not sigma > 0 or abs(median) > GAUSSIAN_MEDIAN_TOLERANCE * sigma or threshold < AIR_CLEARANCE * sigma:
        return None  # not centred on zero, or a threshold within the noise
    if abs((upper - median) / (median - lower) - 1.0) > 2.0 * QUARTILE_TOLERANCE:
        return None
    return sigma
