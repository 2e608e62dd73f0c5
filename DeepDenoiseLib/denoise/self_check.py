"""The checks every single-volume run makes on its own result before handing it back, so that a
result is never silently worse than its input (then the input is returned unchanged, with a warning).

- :func:`check_error_estimate`: Stein's unbiased risk estimate (SURE) of the result's squared error
  against the clean volume, which needs only the noise sigma: ``|y - f(y)|^2 / N - sigma^2 +
  2 sigma^2 div f / N``, the divergence estimated by Monte Carlo from one more prediction on a
  slightly perturbed input (Ramani, Blu & Unser 2008). The input itself scores ``sigma^2``; a
  denoiser that does not score below it made things worse. It is computed on the volume (the middle
  frame of a series) in the stabilised, normalised domain, where the noise models make the noise about
  Gaussian, and summed over the tissue only (``region``): a magnitude image's air has Rayleigh noise,
  whose variance is 0.43 sigma^2, and few photons are not stabilised to sigma, so counting them made
  SURE read below zero (an impossible error) on volumes with much air.
- :func:`check_residual`: what was removed from the tissue should have about the noise's spread;
  much more means anatomy went with it.

Method r2r also checks its network on held-out patches against the identity (r2r_training.SelfCheck).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from DeepDenoiseLib.denoise.noise_models import NoiseTransform, foreground

#: A residual whose spread in the foreground exceeds this many noise sigmas removed structure.
MAX_RESIDUAL_TO_NOISE = 2.0


@dataclass
class ResidualCheck:
    """The foreground residual's spread over the noise sigma (both in the noise model's stabilised
    domain), and whether it is below :data:`MAX_RESIDUAL_TO_NOISE`."""

    residual_to_noise: Optional[float]
    passed: bool

    def to_summary(self) -> dict[str, object]:
        ratio = None if self.residual_to_noise is None else round(self.residual_to_noise, 3)
        return {"residual_to_noise": ratio, "passed": self.passed}


def check_residual(noisy: np.ndarray, denoised: np.ndarray, noise: NoiseTransform) -> ResidualCheck:
    """Compares the residual with the noise in the foreground of ``noisy`` (a volume, or a series
    whose frames are pooled)."""
    if not noise.sigma > 0:
        return ResidualCheck(None, True)
    residual = noise.forward(noisy) - noise.forward(denoised)
    voxels = foreground(noisy)
    values = residual[voxels] if voxels is not None else residual.ravel()
    ratio = float(np.std(values, dtype=np.float64)) / noise.sigma
    return ResidualCheck(ratio, bool(ratio <= MAX_RESIDUAL_TO_NOISE))


#: The perturbation of the divergence estimate, in noise sigmas.
DIVERGENCE_STEP = 0.05
#: SURE below this (in noise variances) is an error no result can have: the noise level (or its
#: correlation) taken is too high. One probe's Monte Carlo spread is under 0.01 on a volume of
#: 100,000 tissue voxels; a sigma 5 % high moves the estimate by about -0.05 after a good run.
IMPLAUSIBLE_ERROR_TO_NOISE = -0.1


@dataclass
class ErrorEstimate:
    """SURE's estimate of the result's mean squared error over the input's (the noise variance):
    below 1 the result is better than the input, and ``estimated_gain_db`` says by how much."""

    error_to_noise: Optional[float]
    passed: bool

    @property
    def estimated_gain_db(self) -> Optional[float]:
        if self.error_to_noise is None or not self.error_to_noise > 0:
            return None
        return float(-10.0 * np.log10(self.error_to_noise))

    def implausible_warnings(self) -> list[str]:
        """A warning when SURE reads an error below zero, which only a noise level taken too high gives:
        the result is then likely smoother than it should be, though not necessarily worse than its input."""
        if self.error_to_noise is None or self.error_to_noise >= IMPLAUSIBLE_ERROR_TO_NOISE:
            return []
        return [
            f"the self-check's error estimate (SURE) read {self.error_to_noise:.2f} noise variances, below zero, which the "
            "true noise level cannot give: the noise level (or its correlation) taken is probably too high, and the result may "
            "be smoother than it should be; give --noise-sigma (and --noise-correlation white) if you know better"
        ]

    def to_summary(self) -> dict[str, object]:
        ratio = None if self.error_to_noise is None else round(self.error_to_noise, 4)
        gain = self.estimated_gain_db
        return {"error_to_noise": ratio, "estimated_gain_db": None if gain is None else round(gain, 2), "passed": self.passed}


def check_error_estimate(
    denoise: Callable[[np.ndarray], np.ndarray],
    noisy: np.ndarray,
    sigma: float,
    output: Optional[np.ndarray] = None,
    seed: int = 0,
    colour: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    region: Optional[np.ndarray] = None,
) -> ErrorEstimate:
    """SURE of ``denoise`` on ``noisy`` (in a domain where the noise is Gaussian with standard
    deviation ``sigma``), relative to ``sigma**2``: the check passes below 1. ``output``:
    ``denoise(noisy)`` when it is already at hand. ``colour``: for spatially correlated noise, what
    gives white noise its correlation (unit variance); the divergence is then probed with such noise,
    which makes it the trace of the Jacobian times the noise covariance, as SURE needs. ``region``:
    the voxels SURE sums over (the probe still perturbs every voxel; each voxel's term estimates its
    own error), None for all."""
    if not sigma > 0:
        return ErrorEstimate(None, True)
    noisy = np.asarray(noisy, dtype=np.float32)
    probe = np.random.default_rng(seed).standard_normal(noisy.shape).astype(np.float32)
    if colour is not None:
        probe = np.asarray(colour(probe), dtype=np.float32)
    step = np.float32(DIVERGENCE_STEP * sigma)
    output = np.asarray(denoise(noisy) if output is None else output, dtype=np.float64)
    perturbed = np.asarray(denoise(noisy + step * probe), dtype=np.float64)
    where = np.ones(noisy.shape, dtype=bool) if region is None else np.asarray(region, dtype=bool)
    divergence = float(np.mean((probe * (perturbed - output))[where])) / float(step)
    fidelity = float(np.mean(((noisy.astype(np.float64) - output) ** 2)[where]))
    sure = fidelity - sigma**2 + 2.0 * sigma**2 * divergence
    ratio = sure / sigma**2
    return ErrorEstimate(ratio, bool(ratio < 1.0))
