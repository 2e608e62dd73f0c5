"""A synthetic block-design fMRI series: a static phantom "brain", a small region whose signal rises
by a few per cent during the on-blocks, and independent Gaussian noise in every frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from Testing.support.phantoms import smooth_phantom


@dataclass
class BlockDesignSeries:
    clean: np.ndarray  # [t, k, j, i]
    noisy: np.ndarray  # [t, k, j, i]
    design: np.ndarray  # [t], 0 (off) or 1 (on)
    region: np.ndarray  # [k, j, i], where the signal changes
    brain: np.ndarray  # [k, j, i], where temporal SNR is measured


def block_design_series(
    frames: int = 40, size: int = 24, block: int = 5, change: float = 0.03, sigma: float = 0.03, seed: int = 0
) -> BlockDesignSeries:
    """``frames`` volumes of ``size``³ voxels: blocks of ``block`` frames off then on; in a 4x4x4
    region the signal is ``1 + change`` times the baseline while on."""
    base = smooth_phantom((size, size, size), seed)
    design = np.tile(np.r_[np.zeros(block), np.ones(block)], frames // (2 * block) + 1)[:frames]
    region = np.zeros(base.shape, dtype=bool)
    centre = size // 2
    region[centre - 2 : centre + 2, centre - 2 : centre + 2, centre : centre + 4] = True
    clean = np.repeat(base[None], frames, axis=0) * (1.0 + change * design[:, None, None, None] * region[None])
    noisy = clean + sigma * np.random.default_rng(seed + 1).standard_normal(clean.shape)
    return BlockDesignSeries(clean.astype(np.float32), noisy.astype(np.float32), design, region, base > 0.2)


def design_correlation(series: np.ndarray, data: BlockDesignSeries) -> float:
    """Pearson correlation of the region's mean time course with the design."""
    return float(np.corrcoef(series[:, data.region].mean(axis=1), data.design)[0, 1])


def temporal_snr(series: np.ndarray, data: BlockDesignSeries) -> float:
    """Median over the brain of each voxel's temporal mean over its temporal standard deviation."""
    mean, std = series.mean(axis=0), series.std(axis=0)
    return float(np.median(mean[data.brain] / std[data.brain]))


def activation_amplitude(series: np.ndarray, data: BlockDesignSeries) -> float:
    """The region's mean signal during on-blocks minus during off-blocks."""
    course = series[:, data.region].mean(axis=1)
    return float(course[data.design == 1].mean() - course[data.design == 0].mean())
