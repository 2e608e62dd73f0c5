"""Where Recorrupted-to-Recorrupted training may learn: the voxels whose noise is at the level sigma.

R2R's target ``y - sigma * z / alpha`` is unbiased only where the volume's own noise has the level
``sigma`` it is told. Two physical models break that over large regions, and the loss then teaches
the network the wrong thing there:

- photon counts (``poisson``) have no noise where nothing was counted (air of exactly zero counts),
  and less than unit noise after the Anscombe transform where almost nothing was;
- a magnitude image's air (``rician``) holds Rayleigh noise, of standard deviation 0.66 sigma.

In both the recorrupted input and target are anti-correlated, so the loss rewards a network that
answers noise with anti-noise. Those voxels read a local spread (the standard deviation over a
5x5x5 block) well under sigma, while noise at sigma, or tissue, never does (over 125 voxels the
spread of pure noise at sigma falls under 0.8 sigma less than once in a thousand). They are left out of
the loss, and patches are drawn in proportion to how much of them is left in, so steps are not spent
on empty air (measured in bench/README.md, "Where R2R learns").
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

#: The block over which the local spread is read: wide enough that pure noise at sigma almost
#: never reads under :data:`MIN_SPREAD`, narrow enough to follow the edge of the air.
SPREAD_BLOCK = 5
#: A voxel is learnt from when its local spread is at least this share of sigma: between a Rayleigh
#: air (0.66) and noise at sigma (1.0).
MIN_SPREAD = 0.8
#: Below this share of the volume the rule is not trusted (the sigma taken would be far too high for
#: almost every voxel): every voxel is learnt from, as before.
MIN_RECORRUPTIBLE = 0.05
#: Above this share the rule would leave out almost nothing: it is not applied.
MAX_RECORRUPTIBLE = 0.99


def local_spread(volume: np.ndarray) -> np.ndarray:
    """The standard deviation over each voxel's :data:`SPREAD_BLOCK` cube (mirrored at the edges); a
    series ``[t, k, j, i]`` is read frame by frame (one frame's float64 copies at a time)."""
    if volume.ndim == 4:
        return np.stack([local_spread(frame) for frame in volume])
    values = np.asarray(volume, dtype=np.float64)
    mean = ndimage.uniform_filter(values, size=SPREAD_BLOCK, mode="mirror")
    mean_square = ndimage.uniform_filter(values * values, size=SPREAD_BLOCK, mode="mirror")
    return np.sqrt(np.maximum(mean_square - mean * mean, 0.0)).astype(np.float32)


def recorruptible_voxels(volume: np.ndarray, sigma: float) -> Optional[np.ndarray]:
    """The voxels of ``volume`` (a volume or a series, in the units of ``sigma``) that R2R may learn
    from, as float32 ones and zeros; None when every voxel may (the rule leaves out almost nothing,
    or would leave out almost everything, which says more about ``sigma`` than about the volume)."""
    if not sigma > 0:
        raise ValueError(f"the noise sigma must be positive; got {sigma!r}")
    learnable = local_spread(volume) >= MIN_SPREAD * sigma
    share = float(learnable.mean())
    if share < MIN_RECORRUPTIBLE or share > MAX_RECORRUPTIBLE:
        return None
    return learnable.astype(np.float32)
