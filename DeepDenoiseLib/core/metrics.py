"""Image-quality metrics: PSNR and SSIM against a reference, SNR and a no-reference noise estimate,
and the temporal SNR of a 4D series.

All metrics compute in float64 and return Python floats. A ``mask`` (boolean, same shape as the image)
restricts a metric to the voxels inside it, so that air around a patient does not flatter a result.
SSIM follows scikit-image's ``structural_similarity`` (which the tests check it against) without
depending on it: scikit-image is only a test and benchmark dependency.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import ndimage

_K1 = 0.01
_K2 = 0.03
_GAUSSIAN_SIGMA = 1.5
_GAUSSIAN_TRUNCATE = 3.5
_GAUSSIAN_WIN_SIZE = 2 * int(_GAUSSIAN_TRUNCATE * _GAUSSIAN_SIGMA + 0.5) + 1
# median(|g|) = 0.6745 sigma for g ~ N(0, sigma^2): the MAD-to-sigma factor.
_MAD_TO_SIGMA = 0.6744897501960817
# std of a Rayleigh variable over its parameter sigma: sqrt(2 - pi/2) = 0.655.
_RAYLEIGH_STD_FACTOR = math.sqrt(2.0 - math.pi / 2.0)


def psnr(
    reference: np.ndarray,
    test: np.ndarray,
    data_range: Optional[float] = None,
    mask: Optional[np.ndarray] = None,
) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range**2 / MSE)``; ``inf`` when identical.

    ``data_range`` defaults to ``max - min`` of the whole reference, even with a mask, so that
    choosing a region changes only the error term and never the intensity scale.
    """
    ref, tst = _pair(reference, test)
    data_range = _data_range(ref, data_range)
    inside = _select(mask, ref.shape)
    mse = float(np.mean((ref[inside] - tst[inside]) ** 2))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim_map(
    reference: np.ndarray,
    test: np.ndarray,
    data_range: Optional[float] = None,
    win_size: int = 7,
    gaussian_weights: bool = False,
) -> np.ndarray:
    """The local SSIM of every voxel (2D or 3D, by the arrays' ndim), as scikit-image computes it.

    With a uniform ``win_size`` window the local (co)variances use the sample ``N/(N-1)`` correction
    (scikit-image's ``use_sample_covariance=True``). ``gaussian_weights`` instead uses the Gaussian
    window of Wang et al. 2004 (sigma 1.5, 11 voxels wide; ``win_size`` is then unused) with population
    covariances, i.e. scikit-image's ``gaussian_weights=True, use_sample_covariance=False``. Borders are
    handled by reflection. ``data_range`` defaults to ``max - min`` of the reference.
    """
    ref, tst = _pair(reference, test)
    if ref.ndim not in (2, 3):
        raise ValueError(f"SSIM needs a 2D or 3D image; got {ref.ndim}D")
    data_range = _data_range(ref, data_range)
    window = _GAUSSIAN_WIN_SIZE if gaussian_weights else win_size
    if window < 3 or window % 2 == 0:
        raise ValueError(f"win_size must be odd and at least 3; got {win_size}")
    if min(ref.shape) < window:
        raise ValueError(
            f"the {window}-voxel SSIM window exceeds the image extent {ref.shape}; "
            "use a smaller win_size, or compute SSIM slice by slice in 2D"
        )

    if gaussian_weights:

        def smooth(a: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(a, _GAUSSIAN_SIGMA, mode="reflect", truncate=_GAUSSIAN_TRUNCATE)

        cov_norm = 1.0
    else:

        def smooth(a: np.ndarray) -> np.ndarray:
            return ndimage.uniform_filter(a, size=win_size, mode="reflect")

        n = win_size**ref.ndim
        cov_norm = n / (n - 1)

    ux, uy = smooth(ref), smooth(tst)
    vx = cov_norm * (smooth(ref * ref) - ux * ux)
    vy = cov_norm * (smooth(tst * tst) - uy * uy)
    vxy = cov_norm * (smooth(ref * tst) - ux * uy)
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(
    reference: np.ndarray,
    test: np.ndarray,
    data_range: Optional[float] = None,
    mask: Optional[np.ndarray] = None,
    win_size: int = 7,
    gaussian_weights: bool = False,
) -> float:
    """Mean structural similarity (1 for identical images); see :func:`ssim_map` for the window.

    Without a mask the map is averaged after cropping ``(win - 1) // 2`` voxels at every border, as
    scikit-image does, so reflected borders do not count; with a mask it is averaged over the mask.
    """
    local = ssim_map(reference, test, data_range, win_size, gaussian_weights)
    if mask is not None:
        return float(np.mean(local[_select(mask, local.shape)]))
    window = _GAUSSIAN_WIN_SIZE if gaussian_weights else win_size
    pad = (window - 1) // 2
    return float(np.mean(local[tuple(slice(pad, s - pad) for s in local.shape)]))


def snr(
    image: np.ndarray,
    signal_mask: np.ndarray,
    background_mask: Optional[np.ndarray] = None,
) -> float:
    """Signal-to-noise ratio (linear, not dB): mean inside ``signal_mask`` over the noise's std.

    With a ``background_mask`` (air), the noise sigma is the background's standard deviation divided
    by ``sqrt(2 - pi/2) = 0.655``: in a magnitude MR image the background is Rayleigh distributed, whose
    std is 0.655 times the underlying Gaussian sigma (NEMA MS 1; Kaufman et al., Radiology 1989). This
    holds for single-channel magnitude images; sum-of-squares multi-coil and parallel-imaging
    reconstructions have other background statistics. Without a background mask the std inside the
    signal mask is used, which is right only where the signal region is uniform.
    """
    img = np.asarray(image, dtype=np.float64)
    signal = _select(signal_mask, img.shape)
    if background_mask is None:
        noise_sigma = _std(img[signal], "signal")
    else:
        background = _select(background_mask, img.shape)
        if np.any(signal & background):
            raise ValueError("signal_mask and background_mask overlap")
        noise_sigma = _std(img[background], "background") / _RAYLEIGH_STD_FACTOR
    if noise_sigma == 0:
        raise ValueError("the noise standard deviation is zero, so the SNR is undefined")
    return float(np.mean(img[signal])) / noise_sigma


def snr_db(
    image: np.ndarray,
    signal_mask: np.ndarray,
    background_mask: Optional[np.ndarray] = None,
) -> float:
    """:func:`snr` in decibels, ``20 log10(snr)`` (an amplitude ratio)."""
    return 20.0 * math.log10(snr(image, signal_mask, background_mask))


def estimate_noise_sigma(image: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """No-reference estimate of the standard deviation of additive Gaussian noise, in 2D, 3D or nD.

    Donoho's robust estimator: ``median(|d|) / 0.6745`` over the finest diagonal Haar detail ``d``
    (the orthonormal high-pass along every axis of each 2x2(x2) block). Smooth anatomy barely reaches
    that sub-band and the median ignores the few blocks on edges, so the noise dominates it. With a
    ``mask`` only blocks lying wholly inside the mask count. An odd trailing row, column or slice is
    ignored.

    On magnitude (Rician) MR data the estimate is accurate where the signal is well above the noise
    (SNR > ~3), but in low-signal regions, notably the air background, the Rayleigh noise has std
    ``0.655 * sigma``, so a mask of pure background yields about 0.66 sigma and an image mostly made
    of air is underestimated. Mask the tissue to estimate sigma, or divide a background-only estimate
    by 0.655.
    """
    img = np.asarray(image, dtype=np.float64)
    detail, _ = haar_detail_and_mean(img)
    inside = np.ones(detail.shape, dtype=bool)
    if mask is not None:
        region = _select(mask, img.shape)[tuple(slice(0, s - s % 2) for s in img.shape)]
        for corner in np.ndindex(*(2,) * img.ndim):
            inside &= region[tuple(slice(offset, None, 2) for offset in corner)]
    if not np.any(inside):
        raise ValueError("the mask holds no complete 2x2(x2) block of voxels")
    return float(np.median(np.abs(detail[inside])) / _MAD_TO_SIGMA)


def haar_detail_and_mean(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finest diagonal Haar detail (orthonormal: white noise of sigma keeps sigma) and the mean of
    each 2x2(x2) block; an odd trailing row, column or slice is ignored. The detail is where noise
    estimators look, the mean says at which intensity (for signal-dependent noise)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 0 or min(img.shape) < 2:
        raise ValueError(f"every axis needs at least 2 voxels; got shape {img.shape}")
    img = img[tuple(slice(0, s - s % 2) for s in img.shape)]
    detail = np.zeros(tuple(s // 2 for s in img.shape))
    total = np.zeros_like(detail)
    for corner in np.ndindex(*(2,) * img.ndim):
        block = img[tuple(slice(offset, None, 2) for offset in corner)]
        detail += (-1) ** sum(corner) * block
        total += block
    return detail / 2.0 ** (img.ndim / 2.0), total / 2.0**img.ndim


def _pair(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"reference shape {ref.shape} differs from test shape {tst.shape}")
    return ref, tst


def _data_range(ref: np.ndarray, data_range: Optional[float]) -> float:
    if data_range is None:
        data_range = float(ref.max() - ref.min())
        if data_range == 0:
            raise ValueError("the reference is constant; pass data_range explicitly")
    elif not data_range > 0:
        raise ValueError(f"data_range must be positive; got {data_range!r}")
    return float(data_range)


def _select(mask: Optional[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    selected = np.asarray(mask).astype(bool)
    if selected.shape != shape:
        raise ValueError(f"mask shape {selected.shape} differs from image shape {shape}")
    if not selected.any():
        raise ValueError("the mask is empty")
    return selected


def _std(values: np.ndarray, what: str) -> float:
    if values.size < 2:
        raise ValueError(f"the {what} mask needs at least 2 voxels to measure a standard deviation")
    return float(np.std(values, ddof=1))


#: Voxels whose local mean exceeds this share of the 99.5th percentile count as foreground.
FOREGROUND_FRACTION = 0.25


def bright_foreground(image: np.ndarray, foreground_fraction: float = FOREGROUND_FRACTION) -> np.ndarray:
    """Where the local mean (5 voxels wide) exceeds ``foreground_fraction`` of the 99.5th percentile:
    tissue rather than the background of a magnitude image."""
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float32)
    return ndimage.uniform_filter(image, size=5) > foreground_fraction * float(np.percentile(image, 99.5))


def estimate_foreground_noise_sigma(image: np.ndarray, foreground_fraction: float = FOREGROUND_FRACTION) -> float:
    """The Gaussian noise sigma measured where there is signal: voxels whose local mean exceeds
    ``foreground_fraction`` of the 99.5th percentile.

    Magnitude images (MRI) have Rayleigh noise in the air around the body, whose spread is only
    0.655 sigma, so a whole-volume estimate reads low; restricted to the foreground, the estimate on
    the shared MNI152 benchmark reads 0.052 and 0.100 for true sigmas 0.05 and 0.10. Volumes with
    almost no foreground by this rule, or a foreground too scattered to hold one 2x2(x2) block,
    fall back to the whole-volume estimate.
    """
    image = np.squeeze(np.asarray(image, dtype=np.float32))  # a single slice is a 2D image
    foreground = bright_foreground(image, foreground_fraction)
    if foreground.mean() < 0.01:
        return estimate_noise_sigma(image)
    try:
        return estimate_noise_sigma(image, mask=foreground)
    except ValueError:  # no complete block inside the foreground
        return estimate_noise_sigma(image)


def temporal_snr(series: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """The median temporal SNR of a series ``[t, k, j, i]`` inside ``mask`` (``[k, j, i]``): each
    voxel's mean over time divided by its standard deviation over time, the usual fMRI measure of
    how stable a time course is (Triantafyllou et al. 2005). Voxels that never change are left out."""
    data = np.asarray(series, dtype=np.float64)
    if data.ndim != 4 or data.shape[0] < 2:
        raise ValueError(f"temporal SNR needs a series [t, k, j, i] of at least 2 frames; got shape {data.shape}")
    inside = _select(mask, data.shape[1:])
    mean = data.mean(axis=0)[inside]
    spread = data.std(axis=0, ddof=1)[inside]
    varying = spread > 0
    if not varying.any():
        raise ValueError("no voxel inside the mask changes over time, so the temporal SNR is undefined")
    return float(np.median(mean[varying] / spread[varying]))


def mean_image_mask(series: np.ndarray, fraction: float = 0.3) -> np.ndarray:
    """A foreground (brain) mask for a series ``[t, k, j, i]``: voxels whose mean over time exceeds
    ``fraction`` of the mean image's 99th percentile; the usual way to keep air out of a tSNR figure."""
    mean = np.asarray(series, dtype=np.float64).mean(axis=0)
    return mean > fraction * float(np.percentile(mean, 99.0))
