"""The noise a denoising run assumes: its parameters, estimated from the noisy volume, and the transform
into the domain where the noise is additive with one known level.

The blind-spot fusion needs one noise sigma for the whole volume. Gaussian and Rician (in tissue) noise
already have one; photon-counting (Poisson-Gaussian) noise and ultrasound speckle do not, so they are
variance-stabilised first (vst.py) and denoised in that domain, then mapped back with unbiased inverses.
Rician magnitudes are denoised as they are and the result is corrected for the Rician bias (rician.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from DeepDenoiseLib.core.metrics import (
    bright_foreground,
    estimate_foreground_noise_sigma,
    estimate_noise_sigma,
    haar_detail_and_mean,
)
from DeepDenoiseLib.core.validation import InputError, check_noise_model_intensities
from DeepDenoiseLib.denoise.background_noise import gaussian_background_sigma, rayleigh_background_sigma
from DeepDenoiseLib.denoise.noise_config import NoiseConfig
from DeepDenoiseLib.denoise.noise_correlation import NoiseCorrelation, estimate_noise_correlation, has_thin_foreground
from DeepDenoiseLib.denoise.rician import rician_unbias
from DeepDenoiseLib.denoise.vst import (
    anscombe_forward,
    anscombe_inverse,
    speckle_log_forward,
    speckle_log_inverse,
    speckle_log_sigma,
    speckle_looks_from_log_sigma,
)

#: The tissue's reading of the noise may exceed the air's (background_noise.py) by this factor; beyond
#: it, anatomy was read as noise and the air's is used. The shared benchmark's Rician volumes read 1.00
#: to 1.03 times their air; the template on a 5x4x4 mm grid with noise of 0.03, 2.2 times
#: (bench/benchmark_coarse.py).
MAX_TISSUE_OVER_AIR = 1.1


@dataclass
class NoiseTransform:
    """How one volume is denoised under its noise model: ``forward`` into the stabilised domain, where the
    noise has standard deviation ``sigma``, and ``inverse`` back to intensities (unbiased)."""

    model: str
    sigma: float
    forward: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)
    #: What the model did with intensities it does not describe (a few negative voxels), for the summary.
    warnings: list[str] = field(default_factory=list)
    #: How alike the noise of neighbouring voxels is, when it is (None: white noise).
    correlation: Optional[NoiseCorrelation] = None
    #: Whether the network's errors count in the output by the inverse's slope, so that R2R weighs
    #: them by it (loss_weights.py): true for Poisson noise's Anscombe domain. Speckle's log domain
    #: would be too, but only a scratch run measured it (+0.16 dB on the template with speckle 0.3 at
    #: 1500 steps), so it is left off; Gaussian and Rician noise are denoised as they are.
    stabilised: bool = False

    @property
    def colour(self) -> Optional[Callable[[np.ndarray], np.ndarray]]:
        """What gives white noise this noise's spatial correlation (for SURE's probe); None for white noise."""
        return None if self.correlation is None else self.correlation.colour

    def inverse_slope(self, transformed: np.ndarray, step: Optional[float] = None) -> np.ndarray:
        """The local slope of the inverse at each value of the stabilised domain, a central
        difference over ``step`` (default: a thousandth of the noise sigma): how much a change there
        moves the intensity."""
        step = np.float32(1e-3 * max(self.sigma, 1e-6) if step is None else step)
        return (self.inverse(transformed + step) - self.inverse(transformed - step)) / (2 * step)

    def inverse_spread(self, denoised_transformed: np.ndarray, spread_transformed: np.ndarray) -> np.ndarray:
        """A spread (uncertainty) measured in the stabilised domain, in intensity units: scaled by the
        local slope of the inverse (first-order propagation)."""
        return (np.abs(self.inverse_slope(denoised_transformed)) * spread_transformed).astype(np.float32)


def fit_noise_model(array: np.ndarray, config: NoiseConfig) -> NoiseTransform:
    """The noise transform for ``array`` under ``config``: given parameters are used as they are, missing
    ones are estimated from the volume (no clean data needed). Intensities the model cannot represent
    (negative ones under rician, poisson and speckle) are refused with an InputError naming the
    model to use (validation.check_noise_model_intensities)."""
    if config.model in ("gaussian", "rician"):
        return _additive_transform(array, config)
    if config.model == "poisson":
        return _poisson_transform(array, config)
    if config.model == "speckle":
        return _speckle_transform(array, config)
    raise ValueError(f"unknown noise model {config.model!r}")


def _additive_transform(array: np.ndarray, config: NoiseConfig) -> NoiseTransform:
    """Gaussian and Rician noise: one sigma in the input's units (given, or read in the tissue and
    bounded by the air's reading where the air holds noise alone: background_noise.py), the spatial
    correlation under ``noise.correlation: auto``, and for rician the correction of the Rician bias."""
    if config.model == "rician" and np.count_nonzero(array < 0) > 0.5 * array.size:
        check_noise_model_intensities(array, "rician")  # mostly negative: signed data, whatever the noise
    sigma, correlation = tissue_reading(array, config)
    warnings = []
    air = air_reading(array, config.model) if config.sigma is None else None
    if air is not None and sigma > MAX_TISSUE_OVER_AIR * air:
        warnings.append(
            f"the noise read in the tissue (sigma {sigma:.4g}) is {sigma / air:.2f} times the noise in the air around it "
            f"({air:.4g}), which holds noise alone: fine anatomy was read as noise, so the air's sigma is used and the noise "
            "is taken for white (give --noise-sigma if you know it)"
        )
        sigma, correlation = air, None
    warnings += check_noise_model_intensities(array, config.model, sigma)
    inverse = _identity if config.model == "gaussian" else (lambda values: rician_unbias(values, sigma))
    parameters: dict[str, Any] = {"sigma": float(sigma)}
    if correlation is not None:
        parameters["neighbour_correlation_kji"] = correlation.to_summary()["neighbour_correlation_kji"]
    return NoiseTransform(config.model, float(sigma), _identity, inverse, parameters, warnings, correlation)


def tissue_reading(array: np.ndarray, config: NoiseConfig) -> tuple[float, Optional[NoiseCorrelation]]:
    """Gaussian or Rician noise's sigma (given, or read in the tissue, before the air's bound) and its
    spatial correlation under ``noise.correlation: auto`` (None: white)."""
    thin = config.model == "gaussian" and has_thin_foreground(array)
    estimate = estimate_noise_correlation(array, magnitude=config.model == "rician") if config.correlation == "auto" or thin else None
    correlation = estimate if config.correlation == "auto" and estimate is not None and not estimate.is_white else None
    sigma = config.sigma if config.sigma is not None else _estimated_sigma(array, estimate, correlation, thin)
    return sigma, correlation


def air_reading(array: np.ndarray, model: str) -> Optional[float]:
    """The noise read in the air: Rayleigh's for a magnitude image; for the gaussian model, a Gaussian
    air's, else a Rayleigh one's (a magnitude MR image denoised as Gaussian has the same sigma in its
    tissue)."""
    if model == "rician":
        return rayleigh_background_sigma(array)
    gaussian = gaussian_background_sigma(array)
    return gaussian if gaussian is not None else rayleigh_background_sigma(array)


def estimate_poisson_gaussian(image: np.ndarray, bins: int = 24) -> tuple[float, float]:
    """Estimates ``gain`` and ``read_sigma`` of Poisson-Gaussian noise, ``variance = gain * mean +
    read_sigma**2``, from one noisy image.

    The finest Haar detail of each 2x2x2 block carries the noise and little anatomy; grouping blocks by
    their mean intensity and taking the robust (median) noise variance of each group gives points on the
    variance-mean line, fitted by iteratively reweighted least squares (in the spirit of Foi et al. 2008).
    """
    detail, block_mean = haar_detail_and_mean(np.asarray(image, dtype=np.float64))
    detail, block_mean = detail.ravel(), block_mean.ravel()
    low, high = np.percentile(block_mean, [0.5, 99.5])
    if not high > low:
        raise InputError("the image has too little intensity range to estimate Poisson noise")
    edges = np.linspace(low, high, bins + 1)
    which = np.digitize(block_mean, edges[1:-1])
    levels, variances, counts = [], [], []
    for index in range(bins):
        members = which == index
        if members.sum() < 50:
            continue
        levels.append(float(np.median(block_mean[members])))
        variances.append(float((np.median(np.abs(detail[members])) / 0.6745) ** 2))
        counts.append(int(members.sum()))
    if len(levels) < 3:
        raise InputError("too few intensity levels to estimate Poisson noise")
    level, variance, count = np.array(levels), np.array(variances), np.array(counts, dtype=np.float64)
    gain, offset = _fit_line(level, variance, np.sqrt(count))
    for _ in range(3):
        predicted = np.maximum(gain * level + offset, 1e-3 * variance.max() + 1e-12)
        gain, offset = _fit_line(level, variance, np.sqrt(count) / predicted)
    if not gain > 0:
        raise InputError("the noise does not grow with intensity, so it is not Poisson-like; use the gaussian model")
    return float(gain), float(np.sqrt(max(offset, 0.0)))


def _fit_line(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    design = np.stack([x, np.ones_like(x)], axis=1) * weights[:, None]
    (slope, intercept), *_ = np.linalg.lstsq(design, y * weights, rcond=None)
    return float(slope), float(intercept)


def _poisson_transform(array: np.ndarray, config: NoiseConfig) -> NoiseTransform:
    # Signal below zero is never photon counts: refuse a signed volume before estimating anything.
    if np.count_nonzero(array < 0) > 0.5 * array.size:
        check_noise_model_intensities(array, "poisson")
    gain, read_sigma = config.gain, config.sigma
    if gain is None or read_sigma is None:
        try:
            estimated_gain, estimated_read_sigma = estimate_poisson_gaussian(array)
        except InputError:
            # Photon counts are never negative: when negative signal is why the fit failed, say that.
            check_noise_model_intensities(array, "poisson")
            raise
        gain = estimated_gain if gain is None else gain
        read_sigma = estimated_read_sigma if read_sigma is None else read_sigma
    gain, read_sigma = float(gain), float(read_sigma)
    # Read noise reaches a few sigma below zero where there is no signal; lower values are signal.
    warnings = check_noise_model_intensities(array, "poisson", read_sigma)
    transformed = anscombe_forward(array, gain, read_sigma)
    # The transform gives unit variance when the parameters are right; measuring it keeps fusion honest
    # when the estimate is off.
    sigma = estimate_noise_sigma(transformed, mask=foreground(array))
    return NoiseTransform(
        "poisson",
        sigma,
        lambda values: anscombe_forward(values, gain, read_sigma),
        lambda values: anscombe_inverse(values, gain, read_sigma),
        {"gain": gain, "read_sigma": read_sigma, "stabilised_sigma": sigma},
        warnings,
        stabilised=True,
    )


def _speckle_transform(array: np.ndarray, config: NoiseConfig) -> NoiseTransform:
    check_noise_model_intensities(array, "speckle")
    positive = array[array > 0]
    if positive.size == 0:
        raise InputError("the volume has no positive intensity to model speckle on")
    floor = float(np.percentile(positive, 1.0))
    foreground_voxels = foreground(array)
    if config.sigma is not None:
        looks = 1.0 / config.sigma**2
        log_sigma = speckle_log_sigma(looks)
    else:
        log_sigma = estimate_noise_sigma(speckle_log_forward(array, floor), mask=foreground_voxels)
        looks = speckle_looks_from_log_sigma(log_sigma)
    return NoiseTransform(
        "speckle",
        float(log_sigma),
        lambda values: speckle_log_forward(values, floor),
        lambda values: speckle_log_inverse(values, looks),
        {"looks": float(looks), "log_sigma": float(log_sigma), "floor": floor},
    )


def _estimated_sigma(array: np.ndarray, estimate: Optional[NoiseCorrelation], correlation: Optional[NoiseCorrelation], thin: bool) -> float:
    """The noise sigma when none is given. Correlated noise, and any noise of a volume whose bright
    foreground is thin (noise_correlation.has_thin_foreground: a CT's skull, where the finest-scale
    estimate reads the bone's edges, 11.2 HU for a true 8 on bench/benchmark_ct_like.py), take the
    flat-tissue estimate of noise_correlation; white noise in a broad foreground keeps the finest-scale
    estimate in the foreground, on which the benchmark tables were measured."""
    if correlation is not None:
        return correlation.sigma
    if thin and estimate is not None:
        return estimate.sigma
    return _foreground_sigma(array)


def _foreground_sigma(array: np.ndarray) -> float:
    """The foreground noise sigma; for a series ``[t, k, j, i]`` the median over frames, so that signal
    changes over time are not taken for noise."""
    if array.ndim == 4:
        return float(np.median([estimate_foreground_noise_sigma(frame) for frame in array]))
    return float(estimate_foreground_noise_sigma(array))


def foreground(array: np.ndarray) -> Optional[np.ndarray]:
    """Where the (smoothed) signal exceeds a quarter of the bright end (core.metrics.bright_foreground):
    tissue rather than background; None when that is under 1 % of the volume."""
    selected = bright_foreground(array)
    return selected if selected.mean() >= 0.01 else None


def _identity(values: np.ndarray) -> np.ndarray:
    return values
