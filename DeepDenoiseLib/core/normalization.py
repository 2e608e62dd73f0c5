"""Percentile intensity normalisation, fitted on a volume and inverted exactly after prediction.

The network trains and predicts on values where the ``low`` percentile maps to 0 and the ``high``
percentile to 1, whatever the scanner's units; :meth:`PercentileNormalizer.inverse` brings the
denoised result back to the original units. The two numbers are saved with the model
(:meth:`PercentileNormalizer.to_dict`) so that a model reapplied later scales its input the same way.

Values outside the percentiles are *not* clipped: clipping would flatten the brightest and darkest
structures (bone, contrast agent, air) into one value, destroying information the user wants
denoised, and would make the mapping non-invertible, so the output could no longer be returned to
the original intensities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import numpy as np

from DeepDenoiseLib.core.settings import Section, setting


@dataclass
class PercentileNormalizer:
    """The affine map ``x -> (x - low) / (high - low)`` and its exact inverse.

    A constant image (``high == low``) uses scale 1, so it never divides by zero.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        self.low = float(self.low)
        self.high = float(self.high)
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"normalisation bounds must be finite; got low={self.low}, high={self.high}")
        if self.high < self.low:
            raise ValueError(f"normalisation high ({self.high}) must not be below low ({self.low})")

    @property
    def scale(self) -> float:
        """The divisor: ``high - low``, or 1 for a constant image."""
        return self.high - self.low if self.high > self.low else 1.0

    @classmethod
    def fit(
        cls,
        array: np.ndarray,
        low_percentile: float,
        high_percentile: float,
        mask: Optional[np.ndarray] = None,
    ) -> PercentileNormalizer:
        """Fit on ``array`` (only where ``mask`` is true, if given), in float64 so that large integer
        intensities are not rounded before the percentiles are taken."""
        if not 0.0 <= low_percentile < high_percentile <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100; got {low_percentile}, {high_percentile}")
        array = np.asarray(array)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != array.shape:
                raise ValueError(f"mask shape {mask.shape} does not match the array shape {array.shape}")
            values = array[mask]
        else:
            values = array.ravel()
        if values.size == 0:
            raise ValueError("cannot fit normalisation on an empty selection of voxels")
        # np.array always copies here, so partitioning in place never touches the caller's data.
        values = np.array(values, dtype=np.float64)
        low, high = np.percentile(values, [low_percentile, high_percentile], overwrite_input=True)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError("cannot fit normalisation: the image holds NaN or infinite values")
        _check_outliers(values, float(low), float(high), low_percentile, high_percentile)
        return cls(low=float(low), high=float(high))

    def forward(self, array: np.ndarray) -> np.ndarray:
        """Normalised float32 copy of ``array`` (computed in float64, rounded once at the end)."""
        out = np.subtract(array, self.low, dtype=np.float64)
        out /= self.scale
        return out.astype(np.float32)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """Back to the original units as float32; ``inverse(forward(x))`` equals ``x`` up to float32
        rounding because both directions are computed in float64."""
        out = np.multiply(array, self.scale, dtype=np.float64)
        out += self.low
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored next to a trained model."""
        return {"low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PercentileNormalizer:
        missing = {"low", "high"} - set(data)
        if missing:
            raise ValueError(f"normalisation data lacks {', '.join(sorted(missing))}")
        unknown = set(data) - {"low", "high"}
        if unknown:
            raise ValueError(f"unknown normalisation field(s) {', '.join(sorted(unknown))}")
        return cls(low=float(data["low"]), high=float(data["high"]))


#: Voxels further beyond the percentile range than this many times its width are refused: the
#: network's arithmetic in float32 overflows on them (a value of 1e30 made every voxel NaN).
OUTLIER_RANGES = 1e6


def _check_outliers(values: np.ndarray, low: float, high: float, low_percentile: float, high_percentile: float) -> None:
    """Refuses values so far outside ``[low, high]`` that they can only be broken voxels (a hot pixel,
    an export that wrote garbage), before the network turns them into NaN."""
    spread = high - low
    if not spread > 0:
        return
    limit = OUTLIER_RANGES * spread
    lowest, highest = float(values.min()), float(values.max())
    if highest - high <= limit and low - lowest <= limit:
        return
    from DeepDenoiseLib.core.validation import InputError

    count = int(np.count_nonzero((values > high + limit) | (values < low - limit)))
    extreme = highest if highest - high > low - lowest else lowest
    raise InputError(
        f"{count:,} voxel(s) lie more than a million times the intensity range beyond it (the {low_percentile:g} "
        f"to {high_percentile:g} percentiles span {low:.4g} to {high:.4g}; the most extreme is {extreme:.4g}): "
        "broken voxels, such as a hot pixel or a faulty export. Replace them first (e.g. clip the volume to its "
        "percentile range)"
    )


@dataclass
class NormalizationConfig(Section):
    """Percentile normalisation: the ``low``/``high`` percentiles map to 0/1 (inverted exactly after);
    a section of both the denoising and the super-resolution configuration."""

    SECTION: ClassVar[str] = "normalization"

    low_percentile: float = setting(0.5, low=0.0, high=50.0)
    high_percentile: float = setting(99.5, low=50.0, high=100.0)

    def check_rules(self) -> None:
        if self.high_percentile <= self.low_percentile:
            raise ValueError("normalization.high_percentile must exceed low_percentile")
