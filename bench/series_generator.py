"""Synthetic fMRI-like series with a known truth, for the 4D benchmark (benchmark_series.py) and its tests.

A static anatomy (any 3D volume, scaled so that tissue is about ``tissue_level``) is multiplied by
``1 + changes``, where the changes are: three BOLD regions (a block design convolved with a
haemodynamic response, a slow sinusoid, and random events convolved with it), a slow quadratic drift,
optionally ``components`` smooth physiological-like fluctuations (spatially smoothed random maps with
AR(1) time courses, so that the signal is no longer low rank), and a single-frame event in a small
region (a change that lasts exactly one frame). Noise is Gaussian or Rician (magnitude of complex
Gaussian noise), with one sigma for the whole series.

Every random choice comes from ``seed``, so a series is the same on every machine.

The measures compare a result with the truth: PSNR over the brain in every frame (data range 1, the
tissue being about 0.7), the correlation of each voxel's demeaned time course with the truth's (mean
over a region), the share of the single-frame event's amplitude a result keeps, and temporal SNR
(which rewards averaging frames, so it is never read alone).

>>> truth = make_series(anatomy, frames=40, components=30, noise_model="rician", seed=1)
>>> series_psnr(denoised, truth), time_course_correlation(denoised, truth, truth.bold_regions)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

#: Frames of the block design's on and off blocks, and the sinusoid's period, in frames.
BLOCK_FRAMES = 10
SINE_PERIOD_FRAMES = 23.0
REGION_RADIUS_VOXELS = 2.5


@dataclass
class SyntheticSeries:
    """A noisy series ``[t, k, j, i]``, its truth, and where its signals are."""

    clean: np.ndarray
    noisy: np.ndarray
    brain: np.ndarray
    bold_regions: np.ndarray
    event_region: np.ndarray
    event_frame: int
    sigma: float
    noise_model: str


def haemodynamic_response(frames: int = 15) -> np.ndarray:
    """A double-gamma response sampled every frame (peak near frame 3 at a 2 s repetition time), summing to 1."""
    t = np.arange(frames, dtype=np.float64) * 2.0
    response = t**5 * np.exp(-t) / math.gamma(6) - t**15 * np.exp(-t) / math.gamma(16) / 6.0
    return response / response.sum()


def _sphere(shape: tuple[int, ...], centre: np.ndarray, radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    return sum((grid[axis] - centre[axis]) ** 2 for axis in range(3)) <= radius**2


def _convolved(course: np.ndarray) -> np.ndarray:
    result = np.convolve(course, haemodynamic_response())[: course.size]
    peak = np.abs(result).max()
    return result / peak if peak > 0 else result


def make_series(
    anatomy: np.ndarray,
    frames: int = 80,
    sigma: float = 0.025,
    noise_model: str = "gaussian",
    components: int = 0,
    component_change: float = 0.01,
    bold_change: float = 0.03,
    event_change: float = 0.05,
    drift: float = 0.01,
    tissue_level: float = 0.7,
    seed: int = 0,
) -> SyntheticSeries:
    """A series of ``frames`` volumes on ``anatomy``'s grid (see the module docstring)."""
    if noise_model not in ("gaussian", "rician"):
        raise ValueError(f"noise_model must be gaussian or rician, not {noise_model!r}")
    if frames < 4:
        raise ValueError("a series needs at least 4 frames")
    rng = np.random.default_rng(seed)
    anatomy = np.asarray(anatomy, dtype=np.float32)
    brain = ndimage.binary_fill_holes(anatomy > 0.15 * anatomy.max())
    base = anatomy / np.percentile(anatomy[brain], 75) * tissue_level
    shape = base.shape
    inner = np.argwhere(ndimage.binary_erosion(brain, iterations=3))
    if len(inner) < 4:
        raise ValueError("the anatomy has too little brain to place the signal regions in")
    centres = inner[rng.choice(len(inner), 4, replace=False)]
    block_region, sine_region, events_region, event_region = (_sphere(shape, c, REGION_RADIUS_VOXELS) & brain for c in centres)

    t = np.arange(frames)
    block = _convolved(((t // BLOCK_FRAMES) % 2 == 1).astype(np.float64))
    sine = 0.5 * (1.0 + np.sin(2.0 * np.pi * t / SINE_PERIOD_FRAMES))
    events = _convolved((rng.random(frames) < 0.1).astype(np.float64))
    change = np.zeros((frames,) + shape, dtype=np.float32)
    for region, course in ((block_region, block), (sine_region, sine), (events_region, events)):
        change[:, region] += np.float32(bold_change) * course[:, None].astype(np.float32)
    event_frame = int(rng.integers(frames // 4, 3 * frames // 4))
    change[event_frame, event_region] += np.float32(event_change)
    change += (drift * np.linspace(-1.0, 1.0, frames) ** 2).astype(np.float32)[:, None, None, None]
    for _ in range(components):
        spatial = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
        spatial = spatial / np.abs(spatial).max() * brain
        innovations = rng.standard_normal(frames)
        course = np.zeros(frames)
        for frame in range(frames):
            course[frame] = (0.9 * course[frame - 1] if frame else 0.0) + innovations[frame]
        course /= course.std()
        change += (component_change * course[:, None, None, None] * spatial[None]).astype(np.float32)

    clean = (base[None] * (1.0 + change)).astype(np.float32)
    real = clean + np.float32(sigma) * rng.standard_normal(clean.shape, dtype=np.float32)
    if noise_model == "rician":
        imaginary = np.float32(sigma) * rng.standard_normal(clean.shape, dtype=np.float32)
        noisy = np.sqrt(real**2 + imaginary**2)
    else:
        noisy = real
    return SyntheticSeries(
        clean=clean,
        noisy=noisy.astype(np.float32),
        brain=brain,
        bold_regions=block_region | sine_region | events_region,
        event_region=event_region,
        event_frame=event_frame,
        sigma=float(sigma),
        noise_model=noise_model,
    )


def series_psnr(series: np.ndarray, truth: SyntheticSeries) -> float:
    """PSNR (data range 1) over every frame's brain voxels."""
    error = (series - truth.clean)[:, truth.brain]
    return float(10.0 * np.log10(1.0 / np.mean(error.astype(np.float64) ** 2)))


def changes_psnr(series: np.ndarray, truth: SyntheticSeries) -> Optional[float]:
    """PSNR (data range 1) of the changes over time alone: each voxel's time course minus its temporal
    mean, against the truth's, over every frame's brain voxels; None where they are exact (above 120 dB)."""
    error = ((series - series.mean(axis=0)) - (truth.clean - truth.clean.mean(axis=0)))[:, truth.brain]
    mse = float(np.mean(error.astype(np.float64) ** 2))
    return float(10.0 * np.log10(1.0 / mse)) if mse > 1e-12 else None  # float32 rounding: about 1e-14


def time_course_correlation(series: np.ndarray, truth: SyntheticSeries, region: np.ndarray) -> float:
    """Mean over ``region``'s voxels of the correlation between each voxel's demeaned time course
    and the truth's."""
    estimate = series[:, region].astype(np.float64)
    reference = truth.clean[:, region].astype(np.float64)
    estimate -= estimate.mean(axis=0)
    reference -= reference.mean(axis=0)
    denominator = np.sqrt((estimate**2).sum(axis=0) * (reference**2).sum(axis=0))
    return float(np.mean((estimate * reference).sum(axis=0) / np.maximum(denominator, 1e-12)))


def temporal_snr(series: np.ndarray, brain: np.ndarray) -> float:
    """Median over the brain of each voxel's temporal mean over its temporal standard deviation."""
    mean, spread = series.mean(axis=0), series.std(axis=0)
    return float(np.median(mean[brain] / np.maximum(spread[brain], 1e-12)))


def event_kept(series: np.ndarray, truth: SyntheticSeries) -> float:
    """The share of the single-frame event's amplitude a result keeps, over its region: the event
    frame minus the mean of its two neighbours, in the result over the same in the truth (1: all of
    it; 0: smoothed away; noise makes the noisy input's value scatter around 1)."""
    frame = truth.event_frame

    def jump(values: np.ndarray) -> float:
        region = values[:, truth.event_region].astype(np.float64)
        return float(np.mean(region[frame] - 0.5 * (region[frame - 1] + region[frame + 1])))

    return jump(series) / jump(truth.clean)
