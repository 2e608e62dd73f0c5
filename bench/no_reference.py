"""No-reference measures of a denoised real volume, where no clean truth exists: how much noise is left
in flat tissue, and whether what was removed (the residual, input minus output) looks like noise or
like anatomy.

- ``noise_flat_before`` / ``noise_flat_after``: the median local standard deviation (3x3x3) in flat
  tissue: foreground voxels whose gradient magnitude (of the input smoothed with a 1-voxel Gaussian)
  is in the lowest 30 % of the foreground's.
- ``residual_edge_correlation``: the Pearson correlation, over the foreground, between the residual's
  local standard deviation and the gradient magnitude. Noise removed evenly gives about 0; a filter
  that removes edges gives a clearly positive value.
- ``residual_edge_ratio``: the residual's standard deviation at the strongest 5 % of edges over its
  standard deviation in flat tissue. About 1 when the residual is noise of even level; well above 1
  when edges were removed with it.

>>> measures = no_reference_measures(noisy, denoised)     # a dict of the four figures (and voxel counts)
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.stats import median_abs_deviation

#: Flat tissue: the foreground's lowest share of gradient magnitude; edges: its highest share.
FLAT_SHARE, EDGE_SHARE = 0.30, 0.05


def no_reference_measures(noisy: np.ndarray, denoised: np.ndarray, foreground: Optional[np.ndarray] = None) -> dict[str, float]:
    """The measures above for one 3D volume and its denoised version; ``foreground`` defaults to where
    the smoothed input exceeds 10 % of its 99.5th percentile."""
    noisy = np.asarray(noisy, dtype=np.float64)
    denoised = np.asarray(denoised, dtype=np.float64)
    if noisy.shape != denoised.shape or noisy.ndim != 3:
        raise ValueError(f"needs two 3D volumes of one shape; got {noisy.shape} and {denoised.shape}")
    if foreground is None:
        foreground = default_foreground(noisy)
    gradient = ndimage.gaussian_gradient_magnitude(noisy, sigma=1.0)
    inside = gradient[foreground]
    flat = foreground & (gradient <= np.quantile(inside, FLAT_SHARE))
    edges = foreground & (gradient >= np.quantile(inside, 1.0 - EDGE_SHARE))
    residual = noisy - denoised
    residual_spread = local_std(residual)
    flat_spread = float(np.std(residual[flat]))
    return {
        "noise_flat_before": float(np.median(local_std(noisy)[flat])),
        "noise_flat_after": float(np.median(local_std(denoised)[flat])),
        "residual_edge_correlation": float(np.corrcoef(residual_spread[foreground], gradient[foreground])[0, 1]),
        "residual_edge_ratio": float(np.std(residual[edges]) / flat_spread) if flat_spread > 0 else float("nan"),
        "flat_voxels": float(flat.sum()),
        "edge_voxels": float(edges.sum()),
    }


def default_foreground(volume: np.ndarray) -> np.ndarray:
    smoothed = ndimage.uniform_filter(np.asarray(volume, dtype=np.float64), size=5)
    return np.asarray(smoothed > 0.1 * float(np.percentile(volume, 99.5)))


def local_std(volume: np.ndarray, size: int = 3) -> np.ndarray:
    mean = ndimage.uniform_filter(volume, size=size)
    mean_square = ndimage.uniform_filter(volume * volume, size=size)
    return np.sqrt(np.maximum(mean_square - mean * mean, 0.0))


def series_measures(noisy: np.ndarray, denoised: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """No-reference measures of a denoised 4D series ``[t, k, j, i]`` inside ``mask`` (``[k, j, i]``):

    - ``residual_lag1``: the median, over the mask, of the lag-1 autocorrelation in time of each
      voxel's residual. About 0 when what was removed is white in time (noise); clearly positive
      when slow signal (drifts, responses) was removed with it.
    - ``residual_anatomy_correlation``: the correlation, over the mask, between the residual's
      standard deviation over time and the gradient magnitude of the mean image. About 0 when the
      residual is even; positive when more was removed at edges (anatomy in the residual).
    - ``removed_share``: the residual's variance over the input's variance over time, medians over
      the mask: how much of each time course's variation was removed."""
    noisy = np.asarray(noisy, dtype=np.float64)
    denoised = np.asarray(denoised, dtype=np.float64)
    if noisy.shape != denoised.shape or noisy.ndim != 4 or noisy.shape[0] < 3:
        raise ValueError(f"needs two series [t, k, j, i] of one shape and at least 3 frames; got {noisy.shape} and {denoised.shape}")
    residual = noisy - denoised
    centred = residual - residual.mean(axis=0)
    variance = np.sum(centred**2, axis=0)
    lag1 = np.sum(centred[1:] * centred[:-1], axis=0) / np.where(variance > 0, variance, np.inf)
    gradient = ndimage.gaussian_gradient_magnitude(noisy.mean(axis=0), sigma=1.0)
    spread = residual.std(axis=0)
    input_variance = noisy.var(axis=0)
    share = residual.var(axis=0) / np.where(input_variance > 0, input_variance, np.inf)
    inside = np.asarray(mask, dtype=bool)
    anatomy = float(np.corrcoef(spread[inside], gradient[inside])[0, 1]) if np.ptp(spread[inside]) > 0 else 0.0
    return {
        "residual_lag1": float(np.median(lag1[inside])),
        "residual_anatomy_correlation": anatomy,
        "removed_share": float(np.median(share[inside])),
    }


def frame_difference_noise(first: np.ndarray, second: np.ndarray, foreground: Optional[np.ndarray] = None) -> dict[str, object]:
    """The noise read from two frames of one series (``[k, j, i]`` each) in the foreground of the first:
    their difference holds both frames' noise and only what changed between them, not the anatomy,
    so it is a reference for what a single-frame estimate should read. ``sigma``: the difference's
    robust spread over sqrt(2); ``neighbour_correlation_kji``: its correlation one voxel apart along
    each axis (over pairs of foreground voxels). An upper bound where the signal changed (motion,
    physiology), since that reads as noise here."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 3:
        raise ValueError(f"needs two 3D frames of one shape; got {first.shape} and {second.shape}")
    inside = default_foreground(first) if foreground is None else np.asarray(foreground, dtype=bool)
    difference = second - first
    values = difference[inside]
    sigma = float(median_abs_deviation(values, scale="normal") / np.sqrt(2.0))
    correlation = []
    for axis in range(3):
        head = [slice(None)] * 3
        tail = [slice(None)] * 3
        head[axis], tail[axis] = slice(0, -1), slice(1, None)
        pairs = inside[tuple(head)] & inside[tuple(tail)]
        correlation.append(float(np.corrcoef(difference[tuple(head)][pairs], difference[tuple(tail)][pairs])[0, 1]))
    return {"sigma": sigma, "neighbour_correlation_kji": correlation}
