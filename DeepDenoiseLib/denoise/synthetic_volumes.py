"""Procedural "anatomy-like" volumes for pretraining the noise-conditioned prior (prior_training.py).

No real image goes into the prior: every training volume is drawn here, from seeded random numbers.
Each is a mix of what medical volumes are made of: a partition into tissue classes of random
intensity with smooth random boundaries, thin folded sheets (cortex-like ribbons), ellipsoids
(lesions, organs, vessels in cross-section), tubes along random walks (vessels), sometimes an empty
background, then partial-volume blur, optional fine texture and a smooth multiplicative bias field.
The result is rescaled so that its 0.5th and 99.5th percentiles map to 0 and 1, like the volumes the
denoiser sees after percentile normalisation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], scale: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), scale, mode="wrap")
    return field / (field.std() + 1e-6)


def _tube(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """A tube of random radius along a smooth random walk, wrapped around the volume's edges."""
    position = rng.uniform(0, shape[0], 3)
    direction = rng.standard_normal(3)
    points = []
    for _ in range(200):
        direction = direction / np.linalg.norm(direction) + 0.3 * rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        position = position + direction
        points.append(position.copy())
    centre_line = np.zeros(shape, dtype=bool)
    centre_line[tuple((np.array(points).astype(int) % np.array(shape)).T)] = True
    return ndimage.distance_transform_edt(~centre_line) <= rng.uniform(0.7, 2.5)


def synthetic_volume(rng: np.random.Generator, shape: tuple[int, int, int] = (64, 64, 64)) -> np.ndarray:
    """One clean volume of ``shape``, float32, its 0.5th/99.5th percentiles at 0 and 1."""
    classes = int(rng.integers(3, 7))
    scale = float(rng.uniform(3, 10))
    fields = np.stack([_smooth_field(rng, shape, scale * float(rng.uniform(0.6, 1.4))) for _ in range(classes)])
    volume = rng.uniform(0, 1, classes).astype(np.float32)[fields.argmax(0)]
    for _ in range(int(rng.integers(0, 3))):
        sheet = np.abs(_smooth_field(rng, shape, float(rng.uniform(2, 6)))) < float(rng.uniform(0.05, 0.3))
        volume = np.where(sheet, np.float32(rng.uniform(0, 1)), volume)
    grid = np.indices(shape, dtype=np.float32)
    for _ in range(int(rng.integers(0, 6))):
        centre, radii = rng.uniform(0, shape[0], 3), rng.uniform(2, 14, 3)
        inside = sum(((grid[axis] - centre[axis]) / radii[axis]) ** 2 for axis in range(3)) <= 1
        volume = np.where(inside, np.float32(rng.uniform(0, 1)), volume)
    for _ in range(int(rng.integers(0, 4))):
        volume = np.where(_tube(rng, shape), np.float32(rng.uniform(0, 1)), volume)
    if rng.random() < 0.4:
        outline = _smooth_field(rng, shape, 12.0)
        outside = outline <= np.quantile(outline, rng.uniform(0.1, 0.5))
        volume = np.where(outside, np.float32(rng.uniform(0, 0.05)), volume)
    volume = ndimage.gaussian_filter(volume, float(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.5:
        volume = volume + float(rng.uniform(0, 0.03)) * _smooth_field(rng, shape, float(rng.uniform(0.7, 2.0)))
    bias = 1.0 + float(rng.uniform(0, 0.15)) * _smooth_field(rng, shape, 20.0)
    volume = volume * np.clip(bias, 0.6, 1.4)
    low, high = np.percentile(volume, [0.5, 99.5])
    return ((volume - low) / max(float(high - low), 1e-6)).astype(np.float32)
